import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createKafka } from '@portcullis/kafka';
import { createLogger } from '@portcullis/runtime';
import { waitFor } from '@portcullis/testing';
import { PolicyEngine } from '../../packages/policy-engine/src/index.ts';
import { createAuthenticator } from '../../services/broker/src/auth/authenticator.ts';
import { LocalIdp, type LocalIdpClient } from '../../services/broker/src/auth/testing/local-idp.ts';
import { DirectoryFeed } from '../../services/broker/src/directory.ts';
import { TestStack } from '../support/stack.ts';

// OAuth clients registered on agents, end to end: the decision service API and CLI write them,
// the directory topic carries them, a broker's DirectoryFeed maps a client id to its agent, and
// the authenticator turns a real IdP's access token into that agent (or refuses it).

const RESOURCE = 'http://127.0.0.1:18090/mcp';
const buildBot: LocalIdpClient = { clientId: 'build-bot-client', clientSecret: 'g'.repeat(48) };
const reviewBot: LocalIdpClient = { clientId: 'review-bot-client', clientSecret: 'h'.repeat(48) };

let stack: TestStack;
let idp: LocalIdp;
let feed: DirectoryFeed;
const logger = createLogger({ service: 'oauth-clients-test', level: 'warn' });

before(async () => {
  stack = await TestStack.create();
  await stack.startDecision();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo records' }],
    agents: [
      { name: 'build-bot', owner: 'alice@example.com', entitlements: { demo: ['read'] } },
      { name: 'review-bot', owner: 'bob@example.com', entitlements: { demo: ['read'] } },
    ],
  });
  idp = await LocalIdp.start([buildBot, reviewBot]);
  feed = new DirectoryFeed(new PolicyEngine(), stack.prefix, logger);
  await feed.start(createKafka({ clientId: 'oauth-clients-test', brokers: [stack.kafkaBrokers], logger }));
});

after(async () => {
  await feed?.stop();
  await idp?.stop();
  await stack?.stop();
});

const put = (agent: string, clientIds: unknown) =>
  stack.api('PUT', `/v1/agents/${agent}/oauth-clients`, { clientIds });

async function problem(response: Response, status: number, code: string): Promise<void> {
  assert.equal(response.status, status, await response.clone().text());
  assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/);
  assert.equal(((await response.json()) as { code: string }).code, code);
}

test('an admin registers OAuth clients on an agent; the list is published and listed', async () => {
  const response = await put('build-bot', [buildBot.clientId, 'build-bot-service-account']);
  assert.equal(response.status, 200, await response.clone().text());
  assert.deepEqual(await response.json(), {
    agent: 'build-bot',
    oauthClients: ['build-bot-client', 'build-bot-service-account'],
  });
  const listed = (await (await stack.api('GET', '/v1/agents')).json()) as {
    agents: { name: string; oauthClients: string[] }[];
  };
  assert.deepEqual(listed.agents.find((agent) => agent.name === 'build-bot')?.oauthClients, [
    'build-bot-client',
    'build-bot-service-account',
  ]);
  await stack.directoryPublished();
  await waitFor(
    'the broker feed to map the client',
    async () => feed.agentByOAuthClient(buildBot.clientId) !== undefined,
  );
  assert.equal(feed.agentByOAuthClient(buildBot.clientId)?.name, 'build-bot');
  assert.equal(feed.agentByOAuthClient('build-bot-service-account')?.name, 'build-bot');
});

test('bad requests change nothing: taken id 409, invalid ids 400, unknown agent 404, viewer 403', async () => {
  await problem(await put('review-bot', [buildBot.clientId]), 409, 'oauth_client_taken');
  await problem(await put('review-bot', ['has space']), 400, 'invalid_request');
  await problem(await put('review-bot', ['dup', 'dup']), 400, 'invalid_request');
  await problem(await put('review-bot', 'not-a-list'), 400, 'invalid_request');
  await problem(await put('nobody', ['x']), 404, 'agent_not_found');
  const asViewer = await fetch(`${stack.decisionUrl}/v1/agents/review-bot/oauth-clients`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${stack.viewerToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ clientIds: ['x'] }),
  });
  await problem(asViewer, 403, 'forbidden');
  const listed = (await (await stack.api('GET', '/v1/agents')).json()) as {
    agents: { name: string; oauthClients: string[] }[];
  };
  assert.deepEqual(listed.agents.find((agent) => agent.name === 'review-bot')?.oauthClients, []);
});

test('the CLI sets an agent’s OAuth clients, and refuses an id another agent holds', async () => {
  const { stdout } = await stack.directoryCli(['oauth-clients', 'review-bot', reviewBot.clientId]);
  assert.match(stdout, /review-bot: OAuth clients review-bot-client/);
  await assert.rejects(
    stack.directoryCli(['oauth-clients', 'review-bot', buildBot.clientId]),
    /already registered on agent build-bot/,
  );
  await waitFor(
    'the broker feed to map review-bot',
    async () => feed.agentByOAuthClient(reviewBot.clientId) !== undefined,
  );
});

test('a real token authenticates through the broker feed; suspension and removal apply at once', async () => {
  const auth = createAuthenticator({ directory: feed, oauth: { issuer: idp.issuer, audience: RESOURCE } });
  const token = await idp.clientCredentialsToken(buildBot, RESOURCE);
  const outcome = await auth.authenticate({ authorization: `Bearer ${token}` });
  assert.ok(outcome.ok, JSON.stringify(outcome));
  assert.equal(outcome.agent.name, 'build-bot');

  await stack.directoryCli(['suspend', 'build-bot']);
  await waitFor('the suspension to reach the feed', async () => {
    const next = await auth.authenticate({ authorization: `Bearer ${token}` });
    return !next.ok && next.code === 'agent_suspended';
  });
  await stack.directoryCli(['activate', 'build-bot']);

  // The client moves to review-bot: the same token now proves review-bot, never build-bot.
  assert.equal((await put('build-bot', ['build-bot-service-account'])).status, 200);
  assert.equal((await put('review-bot', [reviewBot.clientId, buildBot.clientId])).status, 200);
  await stack.directoryPublished();
  await waitFor(
    'the move to reach the feed',
    async () => feed.agentByOAuthClient(buildBot.clientId)?.name === 'review-bot',
  );
  const moved = await auth.authenticate({ authorization: `Bearer ${token}` });
  assert.ok(moved.ok);
  assert.equal(moved.agent.name, 'review-bot');

  assert.equal((await put('review-bot', [])).status, 200);
  await stack.directoryPublished();
  await waitFor(
    'the removal to reach the feed',
    async () => feed.agentByOAuthClient(buildBot.clientId) === undefined,
  );
  const removed = await auth.authenticate({ authorization: `Bearer ${token}` });
  assert.equal(!removed.ok && removed.code, 'unknown_client');
});
