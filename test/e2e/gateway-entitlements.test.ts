import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  type CallToolResult,
  LoggingMessageNotificationSchema,
  McpError,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { parseAgentKey } from '@portcullis/contracts';
import { waitFor } from '@portcullis/testing';
import { readBundle } from '../../packages/policy-engine/src/index.ts';
import { rawInitialize } from '../support/agent.ts';
import { MutableUpstream } from '../support/mutable-upstream.ts';
import { bundlePath, TestStack } from '../support/stack.ts';

// Entitlements as the gateway applies them (issue 4, points 2 and 4), through a real broker with
// two apps registered through the decision service: an agent's aggregate endpoint shows only the
// apps it is entitled to and only the tools its grants cover; granting and revoking an app
// through the decision API announces tools/list_changed on the session's stream and changes the
// listing; refusals are machine-readable and distinct from "not found"; a suspension applies to
// the very next request of an established session.

const AGENT = 'ent-agent';
const OWNER = 'olga@example.com';
const LEAKED_KEY = ['AKIA', 'IOSFODNN7EXAMPLE'].join('');
const ACCESS_HINT = 'Ask the agent owner to request an entitlement for this app and action class.';

let stack: TestStack;
let notes: MutableUpstream;
let wiki: MutableUpstream;
let brokerUrl = '';
let key = '';
let policyRevision = '';
let agent: Client;
let transport: StreamableHTTPClientTransport;
const listChanged: number[] = [];

async function ok(response: Response, status = 200): Promise<unknown> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  return text ? (JSON.parse(text) as unknown) : undefined;
}

const grant = async (app: string, actions: string[]) => {
  await ok(await stack.api('PUT', `/v1/agents/${AGENT}/entitlements/${app}`, { grants: [{ actions }] }), 204);
};

async function connect(
  path: string,
  credential = key,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const client = new Client({ name: 'entitlements-agent', version: '1.0.0' });
  const clientTransport = new StreamableHTTPClientTransport(new URL(`${brokerUrl}${path}`), {
    requestInit: { headers: { Authorization: `Bearer ${credential}` } },
  });
  await client.connect(clientTransport);
  return { client, transport: clientTransport };
}

const toolNames = async (client = agent) => (await client.listTools()).tools.map((tool) => tool.name).sort();

/** The JSON-RPC error a request ends with. */
async function rpcError(request: Promise<unknown>): Promise<McpError> {
  const error = await request.then(
    (result) => assert.fail(`expected an error, got ${JSON.stringify(result)}`),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof McpError, String(error));
  return error;
}

/** Waits for a tools/list_changed that arrives after `since` notifications. */
const notified = (since: number) =>
  waitFor('a tools/list_changed notification', async () => listChanged.length > since);

before(async () => {
  stack = await TestStack.create();
  await stack.startDecision();
  [notes, wiki] = await Promise.all([
    MutableUpstream.start([
      {
        name: 'read_note',
        description: 'Reads a note.',
        annotations: { readOnlyHint: true },
        // A secret in a log message sent while the tool runs: relayed messages pass DLP too.
        log: `opening the notes store with ${LEAKED_KEY}`,
      },
      { name: 'write_note', description: 'Writes a note.', annotations: { destructiveHint: false } },
      { name: 'purge_notes', description: 'Deletes every note.', annotations: { destructiveHint: true } },
    ]),
    MutableUpstream.start([
      { name: 'search_wiki', description: 'Searches the wiki.', annotations: { readOnlyHint: true } },
      {
        name: 'edit_wiki',
        description: 'Edits a wiki page.',
        annotations: { readOnlyHint: false, destructiveHint: false },
      },
      // Says nothing about itself: by the MCP schema's defaults it may be destructive (delete).
      { name: 'tidy_wiki', description: 'Tidies the wiki.' },
    ]),
  ]);
  for (const [id, upstream] of [
    ['notes', notes],
    ['wiki', wiki],
  ] as const)
    await ok(
      await stack.api('PUT', `/v1/apps/${id}/connection`, {
        name: id,
        transport: { type: 'http', url: upstream.url },
      }),
    );
  await ok(await stack.api('PUT', `/v1/agents/${AGENT}`, { owner: OWNER }));
  await grant('notes', ['read']);
  key = ((await ok(await stack.api('POST', `/v1/agents/${AGENT}/keys`), 201)) as { key: string }).key;
  await stack.directoryPublished();
  brokerUrl = (await stack.startBroker({ UPSTREAM_URL: '', UPSTREAM_APP_ID: '' })).url;
  policyRevision = (await readBundle(await readFile(bundlePath))).revision;

  ({ client: agent, transport } = await connect('/mcp'));
  agent.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    listChanged.push(Date.now());
  });
});

after(async () => {
  await agent?.close().catch(() => undefined);
  await Promise.all([notes?.stop(), wiki?.stop()]);
  await stack?.stop();
});

describe('listings follow entitlements (point 2)', () => {
  test('the aggregate shows only entitled apps, and only the tools the grants cover', async () => {
    // A read grant covers read_note; write_note (additive: write) and purge_notes
    // (destructive: delete) need grants the agent does not hold; wiki is not entitled at all.
    assert.deepEqual(await toolNames(), ['notes__read_note']);
    const { resources } = await agent.listResources();
    assert.deepEqual(
      resources.map((resource) => resource.uri),
      ['notes+note://welcome'],
    );
    // Listings pass DLP like any upstream message: the address in the description does not.
    assert.equal(resources[0]?.description, 'A welcome note from [REDACTED:email]');
    assert.deepEqual(
      (await agent.listPrompts()).prompts.map((prompt) => prompt.name),
      ['notes__summarize'],
    );
  });

  test('granting an app through the decision API: list_changed arrives and its tools appear', async () => {
    const since = listChanged.length;
    await grant('wiki', ['read', 'write']);
    await notified(since);
    await waitFor('the wiki tools listed', async () => (await toolNames()).includes('wiki__edit_wiki'));
    // Not tidy_wiki: a tool that does not declare itself additive needs a delete grant (ADR 0046)...
    assert.deepEqual(await toolNames(), ['notes__read_note', 'wiki__edit_wiki', 'wiki__search_wiki']);
    // ...which shows it.
    await grant('wiki', ['read', 'write', 'delete']);
    await waitFor('tidy_wiki listed', async () => (await toolNames()).includes('wiki__tidy_wiki'));
    await grant('wiki', ['read', 'write']);
    await waitFor('tidy_wiki hidden', async () => !(await toolNames()).includes('wiki__tidy_wiki'));
    const result = (await agent.callTool({
      name: 'wiki__search_wiki',
      arguments: { text: 'gates' },
    })) as CallToolResult;
    assert.deepEqual(result.content, [{ type: 'text', text: 'search_wiki: gates' }]);
    // The session's stream now follows the new app's upstream too: what it announces arrives.
    const announced = listChanged.length;
    wiki.setTool({ name: 'wiki_draft', description: 'A tool added upstream (unpinned, so hidden).' });
    await notified(announced);
  });

  test('narrowing a grant to read hides the write tool again', async () => {
    const since = listChanged.length;
    await grant('wiki', ['read']);
    await notified(since);
    await waitFor('edit_wiki hidden', async () => !(await toolNames()).includes('wiki__edit_wiki'));
    assert.deepEqual(await toolNames(), ['notes__read_note', 'wiki__search_wiki']);
  });

  test('revoking the app: list_changed arrives, its tools disappear, and a call is a policy denial', async () => {
    const since = listChanged.length;
    await ok(await stack.api('DELETE', `/v1/agents/${AGENT}/entitlements/wiki`), 204);
    await notified(since);
    await waitFor('the wiki tools gone', async () =>
      (await toolNames()).every((name) => !name.startsWith('wiki__')),
    );
    assert.deepEqual(await toolNames(), ['notes__read_note']);
    // The app still exists: the policy answers, with reasons and how to ask for access, and the
    // upstream is never touched.
    const refused = (await agent.callTool({ name: 'wiki__search_wiki', arguments: { text: 'x' } })) as {
      isError?: boolean;
      _meta?: { 'portcullis/decision'?: { reasons: string[]; howToRequestAccess: string } };
    };
    assert.equal(refused.isError, true);
    assert.deepEqual(refused._meta?.['portcullis/decision']?.reasons, ['no_entitlement']);
    assert.equal(refused._meta?.['portcullis/decision']?.howToRequestAccess, ACCESS_HINT);
    assert.equal(wiki.calls.includes('search_wiki: x'), false);
    // Nor does the revoked app's upstream reach the agent on the session's stream any more.
    const quiet = listChanged.length;
    wiki.setTool({ name: 'wiki_other', description: 'Another tool added upstream.' });
    await new Promise((resolve) => setTimeout(resolve, 1500));
    assert.equal(listChanged.length, quiet, 'a revoked app still reached the agent');
  });

  test("an app's own endpoint shows an agent without entitlement nothing", async () => {
    const { client } = await connect('/mcp/apps/wiki');
    try {
      assert.deepEqual(await toolNames(client), []);
      assert.deepEqual((await client.listResources()).resources, []);
      assert.deepEqual((await client.listPrompts()).prompts, []);
    } finally {
      await client.close();
    }
  });
});

test('a log message an upstream sends while a tool runs reaches the agent redacted', async () => {
  const logs: unknown[] = [];
  agent.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
    logs.push(notification.params.data);
  });
  await agent.callTool({ name: 'notes__read_note', arguments: { text: 'n-1' } });
  await waitFor('the log message', async () => logs.length > 0);
  const seen = JSON.stringify(logs);
  assert.equal(seen.includes(LEAKED_KEY), false, 'the secret reached the agent');
  assert.match(seen, /\[REDACTED:aws_access_key\]/);
});

test("an app's own endpoint without entitlement: a call is a policy denial, the upstream untouched", async () => {
  const before = wiki.seen.length;
  const { client } = await connect('/mcp/apps/wiki');
  try {
    const refused = (await client.callTool({
      name: 'search_wiki',
      arguments: { text: 'x' },
    })) as CallToolResult;
    assert.equal(refused.isError, true);
    const decision = (refused._meta as Record<string, { reasons: string[] }>)['portcullis/decision'];
    assert.deepEqual(decision?.reasons, ['no_entitlement']);
  } finally {
    await client.close();
  }
  assert.equal(
    wiki.seen.length,
    before,
    'the gateway contacted the upstream of an app the agent may not use',
  );
});

describe('refusals are machine-readable (point 4)', () => {
  const expectDenied = (error: McpError) => {
    assert.equal(error.code, -32010, error.message);
    const data = error.data as Record<string, unknown>;
    assert.equal(data.code, 'denied');
    assert.equal(data.decision, 'deny');
    assert.deepEqual(data.reasons, ['no_entitlement']);
    assert.equal(data.policyRevision, policyRevision);
    assert.equal(data.howToRequestAccess, ACCESS_HINT);
  };

  test('resources/read and prompts/get without a read entitlement: -32010 with reasons and revision', async () => {
    const { client } = await connect('/mcp/apps/wiki');
    try {
      expectDenied(await rpcError(client.readResource({ uri: 'note://welcome' })));
      expectDenied(await rpcError(client.getPrompt({ name: 'summarize', arguments: { topic: 'gates' } })));
    } finally {
      await client.close();
    }
    // On the aggregate, with a write-only grant: the app is there, reading it is not allowed.
    await grant('wiki', ['write']);
    await stack.directoryPublished();
    await waitFor('the write-only grant', async () => (await toolNames()).includes('wiki__edit_wiki'));
    expectDenied(await rpcError(agent.readResource({ uri: 'wiki+note://welcome' })));
    expectDenied(await rpcError(agent.getPrompt({ name: 'wiki__summarize', arguments: { topic: 'x' } })));
    // A resource of an app the agent holds read on is served.
    const read = await agent.readResource({ uri: 'notes+note://welcome' });
    assert.deepEqual(read.contents, [
      { uri: 'note://welcome', mimeType: 'text/plain', text: 'Welcome, reader.' },
    ]);
  });

  test('a resource URI goes to the app through DLP, as arguments do: a token in it does not', async () => {
    const token = ['ghp_', 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'].join('');
    // The template takes any name: a plain one reaches the upstream as it is.
    await agent.readResource({ uri: 'notes+note://plain-name' });
    assert.ok(notes.noteReads.includes('plain-name'));
    // A read's default redacts secrets in what goes upstream (the redacted URI is then no URI the
    // upstream can parse, and the read fails there: what matters is that the token never left).
    await agent.readResource({ uri: `notes+note://leak-${token}` }).catch(() => undefined);
    assert.deepEqual(
      notes.noteReads.filter((name) => name.includes(token.slice(4))),
      [],
      'the token reached the upstream in a resource URI',
    );
  });

  test('a tools/call denial is a tool result with reason codes and policy revision, unlike an unknown tool', async () => {
    const denied = (await agent.callTool({
      name: 'notes__purge_notes',
      arguments: { text: 'all' },
    })) as CallToolResult;
    assert.equal(denied.isError, true);
    const decision = denied._meta?.['portcullis/decision'] as Record<string, unknown>;
    assert.equal(decision.code, 'denied');
    assert.equal(decision.decision, 'deny');
    assert.deepEqual(decision.reasons, ['no_entitlement']);
    // What a grant must name to cover it: purge_notes declares itself destructive.
    assert.equal(decision.actionClass, 'delete');
    assert.equal(decision.policyRevision, policyRevision);
    assert.equal(decision.howToRequestAccess, ACCESS_HINT);
    assert.match(String(decision.callId), /^[0-9a-f-]{36}$/);
    assert.match((denied.content[0] as { text: string }).text, /Denied by policy \(no_entitlement\)/);
    assert.deepEqual(
      notes.calls.filter((call) => call.startsWith('purge_notes')),
      [],
      'the denied call never reached the upstream',
    );

    const unknown = await rpcError(agent.callTool({ name: 'notes__no_such_tool', arguments: {} }));
    assert.equal(unknown.code, -32602);
    assert.equal((unknown.data as { code: string }).code, 'unknown_tool');
  });
});

test("revoking the key that opened a stream ends that stream; the agent's other key goes on", async () => {
  const spareKey = ((await ok(await stack.api('POST', `/v1/agents/${AGENT}/keys`), 201)) as { key: string })
    .key;
  const { client: spare } = await waitFor('the new key to reach the broker', () =>
    connect('/mcp', spareKey).catch(() => undefined),
  );
  const spareChanged: number[] = [];
  spare.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
    spareChanged.push(Date.now());
  });
  // The spare session's stream carries what the upstream announces. (Its own stream to
  // the upstream opens in the background: announce until it has heard one.)
  let announced = 0;
  await waitFor("the spare key's stream to carry an announcement", async () => {
    notes.setTool({ name: `tag_note_${announced++}`, description: 'Tags a note.' });
    await new Promise((resolve) => setTimeout(resolve, 200));
    return spareChanged.length > 0;
  });

  const keyId = parseAgentKey(spareKey)?.keyId;
  await ok(await stack.api('DELETE', `/v1/agents/${AGENT}/keys/${keyId}`), 204);
  await waitFor('the revocation to apply', () =>
    spare.ping().then(
      () => false,
      () => true,
    ),
  );
  // ...until the key that opened one is revoked: that stream ends (its reconnection is refused,
  // 401), while the stream opened with the agent's other key goes on.
  const before = listChanged.length;
  const spareBefore = spareChanged.length;
  notes.setTool({ name: 'pin_note', description: 'Pins a note.' });
  await notified(before);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(spareChanged.length, spareBefore, "the revoked key's stream still carried a notification");
  await spare.close().catch(() => undefined);
});

test('a request whose body arrives after its key was revoked is refused, and reaches no upstream', async () => {
  const slowKey = ((await ok(await stack.api('POST', `/v1/agents/${AGENT}/keys`), 201)) as { key: string })
    .key;
  const headers = {
    authorization: `Bearer ${slowKey}`,
    'content-type': 'application/json',
    accept: 'application/json, text/event-stream',
  };
  const post = (body: object, sessionId?: string) =>
    fetch(`${brokerUrl}/mcp`, {
      method: 'POST',
      headers: { ...headers, ...(sessionId ? { 'mcp-session-id': sessionId } : {}) },
      body: JSON.stringify(body),
    });
  const opened = await waitFor('the new key to reach the broker', async () => {
    const response = await rawInitialize(brokerUrl, slowKey);
    return response.status === 200 ? response : undefined;
  });
  const sessionId = opened.headers.get('mcp-session-id') ?? '';
  await opened.body?.cancel();

  // Headers (with the key) now, the body's second half after the revocation: a slow client.
  let releaseBody = () => {};
  const body = JSON.stringify({
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: 'notes__read_note', arguments: { text: 'sent after the revocation' } },
  });
  const held = new Promise<{ status: number; text: string; challenge: string | undefined }>(
    (resolve, reject) => {
      const request = httpRequest(
        `${brokerUrl}/mcp`,
        {
          method: 'POST',
          headers: { ...headers, 'mcp-session-id': sessionId, 'content-length': Buffer.byteLength(body) },
        },
        (response) => {
          let text = '';
          response.on('data', (chunk) => {
            text += chunk;
          });
          response.on('end', () =>
            resolve({
              status: response.statusCode ?? 0,
              text,
              challenge: response.headers['www-authenticate'],
            }),
          );
        },
      );
      request.on('error', reject);
      request.write(body.slice(0, 20));
      releaseBody = () => request.end(body.slice(20));
    },
  );
  await new Promise((resolve) => setTimeout(resolve, 200));
  const callsBefore = notes.calls.length;

  const keyId = parseAgentKey(slowKey)?.keyId;
  await ok(await stack.api('DELETE', `/v1/agents/${AGENT}/keys/${keyId}`), 204);
  await waitFor('the revocation to apply', async () => {
    const response = await post({ jsonrpc: '2.0', id: 2, method: 'ping' }, sessionId);
    await response.body?.cancel();
    return response.status === 401;
  });
  releaseBody();
  const answer = await held;
  assert.equal(answer.status, 401, answer.text);
  assert.equal((JSON.parse(answer.text) as { code: string }).code, 'credentials_no_longer_valid');
  // A 401 carries its challenge (RFC 9110 §15.5.2), so the client knows to authenticate again.
  assert.match(answer.challenge ?? '', /^Bearer realm="portcullis".*error="invalid_token"/);
  assert.equal(notes.calls.length, callsBefore, 'the call reached the upstream after the revocation');
});

test("a session displaced by its agent's bound is ended upstream too, as DELETE ends one", async () => {
  const name = 'bounded-agent';
  await ok(await stack.api('PUT', `/v1/agents/${name}`, { owner: OWNER }));
  await ok(
    await stack.api('PUT', `/v1/agents/${name}/entitlements/notes`, { grants: [{ actions: ['read'] }] }),
    204,
  );
  const boundedKey = ((await ok(await stack.api('POST', `/v1/agents/${name}/keys`), 201)) as { key: string })
    .key;
  const capped = (
    await stack.startBroker({ UPSTREAM_URL: '', UPSTREAM_APP_ID: '', MAX_SESSIONS_PER_AGENT: '1' })
  ).url;
  const open = async () => {
    const client = new Client({ name: 'bounded-agent', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${capped}/mcp/apps/notes`), {
        requestInit: { headers: { Authorization: `Bearer ${boundedKey}` } },
      }),
    );
    return client;
  };
  const first = await waitFor('the new agent to reach the broker', () => open().catch(() => undefined));
  await first.callTool({ name: 'read_note', arguments: { text: 'n-1' } });
  // The upstream session the broker opened for the first session carried that call.
  const upstreamSession = notes.seen.findLast((seen) => seen.method === 'POST')?.sessionId;
  assert.ok(upstreamSession);

  const second = await open(); // the bound is 1: the first session is displaced
  await waitFor('the displaced session ended upstream', async () =>
    notes.seen.some((seen) => seen.method === 'DELETE' && seen.sessionId === upstreamSession),
  );
  // Its next request is refused (404, session not found): the SDK client rejects.
  await assert.rejects(first.ping());
  const result = (await second.callTool({ name: 'read_note', arguments: { text: 'n-1' } })) as CallToolResult;
  assert.notEqual(result.isError, true, JSON.stringify(result));
  await Promise.all([first.close(), second.close()]).catch(() => undefined);
});

test('suspending the agent refuses its next request in the same session: 403 agent_suspended', async () => {
  const ping = () =>
    fetch(`${brokerUrl}/mcp`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${key}`,
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-session-id': transport.sessionId ?? '',
        'mcp-protocol-version': transport.protocolVersion ?? '2025-06-18',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 'suspension-probe', method: 'ping' }),
    });
  assert.equal((await ping()).status, 200, 'the session works before the suspension');
  // The session's standalone stream carries what the upstream announces...
  const before = listChanged.length;
  notes.setTool({ name: 'draft_note', description: 'Drafts a note.' });
  await notified(before);

  await ok(await stack.api('PUT', `/v1/agents/${AGENT}`, { owner: OWNER, state: 'suspended' }));
  const refused = await waitFor('the suspension to apply', async () => {
    const response = await ping();
    return response.status === 403 ? response : undefined;
  });
  assert.match(refused.headers.get('content-type') ?? '', /application\/problem\+json/);
  assert.equal(((await refused.json()) as { code: string }).code, 'agent_suspended');
  // The SDK client, in the same session, is refused too; nothing reaches the upstream.
  const callsBefore = notes.calls.length;
  await assert.rejects(agent.callTool({ name: 'notes__read_note', arguments: { text: 'x' } }), /403/);
  assert.equal(notes.calls.length, callsBefore);

  // ...and the stream opened before the suspension is ended: nothing more reaches the agent
  // (neither notifications nor server-initiated requests), and reopening it is refused.
  const after = listChanged.length;
  notes.setTool({ name: 'archive_note', description: 'Archives a note.' });
  await new Promise((resolve) => setTimeout(resolve, 1500));
  assert.equal(listChanged.length, after, 'a suspended agent still received a notification');
  const reopened = await fetch(`${brokerUrl}/mcp`, {
    headers: {
      authorization: `Bearer ${key}`,
      accept: 'text/event-stream',
      'mcp-session-id': transport.sessionId ?? '',
    },
  });
  assert.equal(reopened.status, 403);
});

test('subscriptions and completions are allowed exactly when the read would be, conditions and all', async () => {
  const name = 'narrow-reader';
  await ok(await stack.api('PUT', `/v1/agents/${name}`, { owner: OWNER }));
  // Reads of one resource only: the grant's argument constraint names its URI.
  await ok(
    await stack.api('PUT', `/v1/agents/${name}/entitlements/notes`, {
      grants: [{ actions: ['read'], arguments: { uri: ['note://welcome'] } }],
    }),
    204,
  );
  const narrowKey = ((await ok(await stack.api('POST', `/v1/agents/${name}/keys`), 201)) as { key: string })
    .key;
  const { client } = await waitFor('the new agent to reach the broker', () =>
    connect('/mcp/apps/notes', narrowKey).catch(() => undefined),
  );
  try {
    // The allowed URI goes to the upstream (which does not do subscriptions: its own -32601).
    assert.equal((await rpcError(client.subscribeResource({ uri: 'note://welcome' }))).code, -32601);
    // Any other URI of the app would be a denied read: no subscription to it either (listings
    // only say the app is readable at all, which is what used to decide).
    const refused = await rpcError(client.subscribeResource({ uri: 'note://payroll' }));
    assert.equal((refused.data as { code: string }).code, 'unknown_resource');
    // Nor completions of a prompt whose get the grant does not cover (its uri constraint).
    const completion = await rpcError(
      client.complete({
        ref: { type: 'ref/prompt', name: 'summarize' },
        argument: { name: 'topic', value: 'x' },
      }),
    );
    assert.equal((completion.data as { code: string }).code, 'unknown_reference');
  } finally {
    await client.close().catch(() => undefined);
  }
});
