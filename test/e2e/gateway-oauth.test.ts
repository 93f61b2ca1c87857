import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { freePort } from '@portcullis/testing';
import { LocalIdp, type LocalIdpClient } from '../../services/broker/src/auth/testing/local-idp.ts';
import { connectAgent, rawInitialize } from '../support/agent.ts';
import { MutableUpstream } from '../support/mutable-upstream.ts';
import { TestStack } from '../support/stack.ts';

// OAuth 2.1 at the gateway (issue 4, point 1), through a real broker and a real authorization
// server (oidc-provider): an unmodified SDK client with the SDK's client-credentials provider is
// challenged with 401, follows resource_metadata to the IdP, gets a token bound to the gateway's
// audience and calls a tool. A token for another audience is refused with a challenge. The upstream
// records every header it receives: the agent's credential never reaches it.

const APP = 'records';
const AGENT = 'oauth-agent';
const registered: LocalIdpClient = { clientId: 'oauth-agent-client', clientSecret: 'k'.repeat(48) };
const stranger: LocalIdpClient = { clientId: 'unregistered-client', clientSecret: 'm'.repeat(48) };

let stack: TestStack;
let idp: LocalIdp;
let upstream: MutableUpstream;
let brokerUrl = '';
let audience = '';
let agentKey = '';
/** Every credential presented to the gateway in this suite; none may ever reach the upstream. */
const presented: string[] = [];

async function ok(response: Response, status = 200): Promise<unknown> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  return text ? (JSON.parse(text) as unknown) : undefined;
}

/** A raw initialize with a bearer token, as any client's first request. */
const initializeWith = (token: string) => rawInitialize(brokerUrl, token);

before(async () => {
  stack = await TestStack.create();
  [idp, upstream] = await Promise.all([
    LocalIdp.start([registered, stranger]),
    MutableUpstream.start([{ name: 'whoami', description: 'Echoes.', annotations: { readOnlyHint: true } }]),
    stack.startDecision(),
  ]);
  await ok(
    await stack.api('PUT', `/v1/apps/${APP}/connection`, {
      name: 'Records',
      transport: { type: 'http', url: upstream.url },
    }),
  );
  await ok(await stack.api('PUT', `/v1/agents/${AGENT}`, { owner: 'oscar@example.com' }));
  await ok(
    await stack.api('PUT', `/v1/agents/${AGENT}/entitlements/${APP}`, { grants: [{ actions: ['read'] }] }),
    204,
  );
  await ok(await stack.api('PUT', `/v1/agents/${AGENT}/oauth-clients`, { clientIds: [registered.clientId] }));
  agentKey = ((await ok(await stack.api('POST', `/v1/agents/${AGENT}/keys`), 201)) as { key: string }).key;
  presented.push(agentKey);
  await stack.directoryPublished();

  // The audience is the gateway's own URL, so the port is chosen before the broker starts.
  const port = await freePort();
  audience = `http://127.0.0.1:${port}/mcp`;
  brokerUrl = (
    await stack.startBroker({
      UPSTREAM_URL: '',
      UPSTREAM_APP_ID: '',
      HTTP_PORT: String(port),
      OAUTH_ISSUER: idp.issuer,
      OAUTH_AUDIENCE: audience,
      // The IdP runs on this machine's clock; no skew to allow for (the expiry test relies on it).
      OAUTH_CLOCK_TOLERANCE_SECONDS: '0',
    })
  ).url;
  assert.equal(`${brokerUrl}/mcp`, audience);
});

after(async () => {
  await upstream?.stop();
  await idp?.stop();
  await stack?.stop();
});

test('an unmodified SDK client discovers the IdP from the 401, gets a token and calls a tool', async () => {
  const provider = new ClientCredentialsProvider({
    clientId: registered.clientId,
    clientSecret: registered.clientSecret,
    expectedIssuer: idp.issuer,
  });
  const client = new Client({ name: 'oauth-e2e', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(audience), { authProvider: provider }));
  try {
    const token = provider.tokens()?.access_token ?? '';
    presented.push(token);
    const claims = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as {
      aud: string;
      iss: string;
    };
    assert.equal(claims.aud, audience, 'the client asked for the resource the metadata names');
    assert.equal(claims.iss, idp.issuer);
    assert.deepEqual(
      (await client.listTools()).tools.map((tool) => tool.name),
      [`${APP}__whoami`],
    );
    const result = (await client.callTool({
      name: `${APP}__whoami`,
      arguments: { text: 'via oauth' },
    })) as CallToolResult;
    assert.deepEqual(result.content, [{ type: 'text', text: 'whoami: via oauth' }]);
    assert.deepEqual(upstream.calls, ['whoami: via oauth']);
  } finally {
    await client.close();
  }
});

test("the same discovery works on an app's own endpoint, below the gateway's resource", async () => {
  const provider = new ClientCredentialsProvider({
    clientId: registered.clientId,
    clientSecret: registered.clientSecret,
    expectedIssuer: idp.issuer,
  });
  const client = new Client({ name: 'oauth-e2e-app', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${brokerUrl}/mcp/apps/${APP}`), { authProvider: provider }),
  );
  try {
    presented.push(provider.tokens()?.access_token ?? '');
    const result = (await client.callTool({
      name: 'whoami',
      arguments: { text: 'per app' },
    })) as CallToolResult;
    assert.deepEqual(result.content, [{ type: 'text', text: 'whoami: per app' }]);
  } finally {
    await client.close();
  }
});

test('a standalone stream opened with an access token ends when the token expires', async () => {
  // Long enough for the token request, the initialize and the GET on a slow machine.
  idp.accessTokenTtlSeconds = 5;
  const token = await idp.clientCredentialsToken(registered, audience).finally(() => {
    idp.accessTokenTtlSeconds = 300;
  });
  presented.push(token);
  const initialized = await initializeWith(token);
  assert.equal(initialized.status, 200, await initialized.text());
  const stream = await fetch(`${brokerUrl}/mcp`, {
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'text/event-stream',
      'mcp-session-id': initialized.headers.get('mcp-session-id') ?? '',
      'mcp-protocol-version': '2025-06-18',
    },
    // Without the expiry the stream would stay open (keep-alive comments) until this aborts it.
    signal: AbortSignal.timeout(20_000),
  });
  assert.equal(stream.status, 200);
  await stream.text(); // resolves when the gateway ends the stream
  const expiresAtMs =
    (JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString()) as { exp: number }).exp *
    1000;
  assert.ok(Date.now() >= expiresAtMs - 100, 'the stream ended before the token expired');
  // A reconnection with the expired token is refused.
  const again = await fetch(`${brokerUrl}/mcp`, {
    headers: {
      authorization: `Bearer ${token}`,
      accept: 'text/event-stream',
      'mcp-session-id': initialized.headers.get('mcp-session-id') ?? '',
    },
  });
  assert.equal(again.status, 401);
  assert.equal(((await again.json()) as { code: string }).code, 'token_expired');
});

test('the protected-resource metadata names this gateway and its IdP', async () => {
  const metadata = await ok(
    await fetch(`${new URL(brokerUrl).origin}/.well-known/oauth-protected-resource/mcp`),
  );
  assert.deepEqual(metadata, {
    resource: audience,
    authorization_servers: [idp.issuer],
    bearer_methods_supported: ['header'],
    resource_name: 'Portcullis MCP gateway',
  });
});

test('a token for another audience is refused 401 with a challenge naming resource_metadata', async () => {
  const elsewhere = await idp.clientCredentialsToken(registered, 'http://127.0.0.1:9/other/mcp');
  presented.push(elsewhere);
  const response = await initializeWith(elsewhere);
  assert.equal(response.status, 401);
  const challenge = response.headers.get('www-authenticate') ?? '';
  assert.match(challenge, /^Bearer /);
  assert.ok(
    challenge.includes(
      `resource_metadata="${new URL(brokerUrl).origin}/.well-known/oauth-protected-resource/mcp"`,
    ),
    challenge,
  );
  assert.match(challenge, /error="invalid_token"/);
  assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/);
  assert.equal(((await response.json()) as { code: string }).code, 'wrong_audience');

  // Without any credential: the bare challenge, which is what starts the SDK's discovery.
  const bare = await fetch(`${brokerUrl}/mcp`, { method: 'POST', body: '{}' });
  assert.equal(bare.status, 401);
  assert.match(bare.headers.get('www-authenticate') ?? '', /resource_metadata="/);
});

test('a token of the right audience from a client registered on no agent is refused', async () => {
  const token = await idp.clientCredentialsToken(stranger, audience);
  presented.push(token);
  const response = await initializeWith(token);
  assert.equal(response.status, 401);
  assert.equal(((await response.json()) as { code: string }).code, 'unknown_client');
});

test('neither the access token nor the agent key is ever sent upstream', async () => {
  // An agent-key session too, so both kinds of credential have crossed the gateway.
  const client = await connectAgent(brokerUrl, agentKey, 'key-agent', '/mcp');
  try {
    const result = (await client.callTool({
      name: `${APP}__whoami`,
      arguments: { text: 'via key' },
    })) as CallToolResult;
    assert.deepEqual(result.content, [{ type: 'text', text: 'whoami: via key' }]);
  } finally {
    await client.close();
  }
  assert.deepEqual(upstream.calls, ['whoami: via oauth', 'whoami: per app', 'whoami: via key']);
  assert.ok(upstream.seen.length > 0);
  const withAuthorization = upstream.seen.filter((request) => request.authorization !== undefined);
  assert.deepEqual(withAuthorization, [], 'the upstream received an Authorization header');
  const everything = JSON.stringify(upstream.seen);
  for (const credential of presented) {
    assert.ok(credential.length > 20);
    assert.equal(everything.includes(credential), false, 'a credential reached the upstream');
  }
});
