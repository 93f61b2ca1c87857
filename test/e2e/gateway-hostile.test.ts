import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { LoggingMessageNotificationSchema, type McpError } from '@modelcontextprotocol/sdk/types.js';
import { waitFor } from '@portcullis/testing';
import pg from 'pg';
import { capableClient } from '../support/everything.ts';
import { scrapeMetrics } from '../support/metrics.ts';
import { MutableUpstream } from '../support/mutable-upstream.ts';
import { TestStack } from '../support/stack.ts';

// Hostile input at the gateway: each is refused with a clear JSON-RPC error and changes nothing —
// no upstream call, no ledger row. A legitimate call at the end proves the ledger check can see rows.

const APP = 'everything';
const HOSTILE_APP = 'hostile-upstream';
let hostileUpstream: MutableUpstream;
const MAX_BYTES = 64 * 1024;
let stack: TestStack;
let ledger: pg.Pool;
let brokerUrl = '';
let key = '';
let otherKey = '';
let hoarderKey = '';
let sessionId = '';
let otherSessionId = '';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: {
    jsonrpc?: string;
    id?: unknown;
    error?: { code: number; message: string; data?: { code?: string } };
  };
}

/** One raw POST to the gateway, with bytes exactly as given. */
function post(body: Buffer | string, headers: Record<string, string> = {}, path = '/mcp'): Promise<Answer> {
  const url = new URL(path, brokerUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
          ...headers,
        },
      },
      async (res) => {
        const chunks: Buffer[] = [];
        for await (const chunk of res) chunks.push(chunk as Buffer);
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: text ? (JSON.parse(text) as Answer['body']) : {},
        });
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

const call = (name: string, args: unknown = {}) =>
  JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name, arguments: args } });

/** Far deeper than DLP inspects (256), and deep enough to overflow any recursive walk over it. */
const TOO_DEEP = 4000;
const deeplyNested = () => {
  let value: unknown = 'sk_live_hidden-in-the-depths';
  for (let level = 0; level < TOO_DEEP; level++) value = [value];
  return value;
};

before(async () => {
  stack = await TestStack.create();
  stack.upstreamUrl = await stack.startEverythingHttp();
  hostileUpstream = await MutableUpstream.start([
    {
      name: 'nested_log',
      description: 'Logs a deeply nested value while it runs',
      annotations: { readOnlyHint: true },
      log: deeplyNested(),
    },
    { name: 'plain', description: 'Answers plainly', annotations: { readOnlyHint: true } },
    {
      name: 'slow',
      description: 'Answers after ten seconds',
      annotations: { readOnlyHint: true },
      delayMs: 10_000,
    },
  ]);
  await stack.startCoreServices();
  await stack.seed({
    apps: [
      { id: APP, name: 'server-everything' },
      { id: 'payroll', name: 'Payroll' },
      {
        id: HOSTILE_APP,
        name: 'An upstream that sends what it should not',
        connection: { transport: { type: 'http', url: hostileUpstream.url } },
      },
    ],
    agents: [
      {
        name: 'hostile-agent',
        owner: 'owner@example.com',
        entitlements: { [APP]: ['read', 'write'], [HOSTILE_APP]: ['read'] },
      },
      { name: 'bystander', owner: 'owner@example.com', entitlements: { [APP]: ['read'] } },
      { name: 'session-hoarder', owner: 'owner@example.com', entitlements: { [APP]: ['read'] } },
    ],
  });
  key = await stack.issueKey('hostile-agent');
  otherKey = await stack.issueKey('bystander');
  hoarderKey = await stack.issueKey('session-hoarder');
  brokerUrl = (await stack.startBroker({ UPSTREAM_APP_ID: APP, MAX_REQUEST_BYTES: String(MAX_BYTES) })).url;
  const mine = await capableClient(`${brokerUrl}/mcp`, { Authorization: `Bearer ${key}` });
  sessionId = (mine.client.transport as { sessionId?: string }).sessionId!;
  const theirs = await capableClient(`${brokerUrl}/mcp`, { Authorization: `Bearer ${otherKey}` });
  otherSessionId = (theirs.client.transport as { sessionId?: string }).sessionId!;
  ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
});

after(async () => {
  await ledger?.end();
  await stack?.stop();
  await hostileUpstream?.stop();
});

describe('hostile input is refused cleanly', () => {
  it('huge arguments: 413 before the body is read to the end', async () => {
    const answer = await post(call(`${APP}__echo`, { message: 'x'.repeat(MAX_BYTES * 4) }));
    assert.equal(answer.status, 413);
    assert.equal(answer.body.error?.code, -32600);
    assert.match(answer.body.error?.message ?? '', /too large/);
  });

  it('deeply nested JSON: 400 parse error, no stack overflow', async () => {
    const depth = 5_000; // 25 KB: under the size limit, far over the depth limit
    const nested = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
    const answer = await post(call(`${APP}__echo`, 'PLACEHOLDER').replace('"PLACEHOLDER"', nested));
    assert.equal(answer.status, 400);
    assert.equal(answer.body.error?.code, -32700);
    assert.match(answer.body.error?.message ?? '', /nested deeper/);
  });

  it('invalid UTF-8: 400 parse error, never a lossy decode', async () => {
    const bytes = Buffer.concat([
      Buffer.from(
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"',
      ),
      Buffer.from([0xc3, 0x28, 0xff, 0xfe]),
      Buffer.from('"}}}'),
    ]);
    const answer = await post(bytes);
    assert.equal(answer.status, 400);
    assert.equal(answer.body.error?.code, -32700);
    assert.match(answer.body.error?.message ?? '', /UTF-8/);
  });

  for (const name of [
    'echo',
    '../everything__echo',
    'everything__../echo',
    'everything/../payroll__run',
    'payroll__run',
    'EVERYTHING__echo',
    'everything__echo\u0000',
    'everything__echo ',
    'everything____echo',
    'everything__ech\u043e',
    `everything__${'e'.repeat(300)}`,
  ])
    it(`a tool name with namespace or path tricks is an unknown tool: ${JSON.stringify(name).slice(0, 40)}`, async () => {
      const answer = await post(call(name));
      assert.equal(answer.status, 200);
      assert.equal(answer.body.error?.code, -32602);
      assert.equal(answer.body.error?.data?.code, 'unknown_tool');
    });

  it('a forged session id: 404 session not found', async () => {
    for (const forged of [
      '0'.repeat(32),
      'not-a-session',
      // The real id with its last character changed (to one it is not: ids end in 'x' one time in 64).
      `${sessionId.slice(0, -1)}${sessionId.endsWith('x') ? 'y' : 'x'}`,
      '../../etc/passwd',
    ]) {
      const answer = await post(call(`${APP}__echo`, { message: 'x' }), { 'mcp-session-id': forged });
      assert.equal(answer.status, 404, forged);
      assert.equal(answer.body.error?.code, -32001);
    }
  });

  it("another agent's session id: the same 404, as if it did not exist", async () => {
    const answer = await post(call(`${APP}__echo`, { message: 'x' }), { 'mcp-session-id': otherSessionId });
    assert.equal(answer.status, 404);
    assert.equal(answer.body.error?.code, -32001);
  });

  it('a session used on another endpoint: 404', async () => {
    const answer = await post(call('echo', { message: 'x' }), {}, `/mcp/apps/${APP}`);
    assert.equal(answer.status, 404);
  });

  it('malformed JSON-RPC: batches, wrong types, bad ids', async () => {
    for (const body of [
      '[{"jsonrpc":"2.0","id":1,"method":"ping"}]',
      '{"jsonrpc":"1.0","id":1,"method":"ping"}',
      '{"jsonrpc":"2.0","id":{"x":1},"method":"ping"}',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1,2]}',
      'not json at all',
    ]) {
      const answer = await post(body);
      assert.equal(answer.status, 400, body);
      assert.ok(answer.body.error && answer.body.error.code <= -32600, body);
    }
  });

  it('arguments that are not an object: invalid params', async () => {
    const answer = await post(call(`${APP}__echo`, ['an', 'array']));
    assert.equal(answer.body.error?.code, -32602);
  });

  it('an unsupported protocol version header: 400', async () => {
    const answer = await post(JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }), {
      'mcp-protocol-version': '1999-01-01',
    });
    assert.equal(answer.status, 400);
  });

  it('none of it reached the ledger; a legitimate call does', async () => {
    const rows = async () =>
      (
        await ledger.query<{ count: string }>(
          "SELECT count(*) FROM audit.ledger_events WHERE event_type = 'tool_call.requested'",
        )
      ).rows[0]!.count;
    assert.equal(await rows(), '0');
    const answer = await post(call(`${APP}__echo`, { message: 'legitimate' }));
    assert.match(JSON.stringify(answer.body), /legitimate/);
    await waitFor('the legitimate call in the ledger', async () => (await rows()) === '1');
  });
});

describe('hostile session creation', () => {
  const initialize = (capabilities: unknown, headers: Record<string, string>) =>
    post(
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: '2025-06-18', capabilities, clientInfo: { name: 'flood', version: '1' } },
      }),
      { 'mcp-session-id': '', ...headers },
    );

  it('capabilities too large to keep for a session: 400, no session', async () => {
    const answer = await initialize({ experimental: { padding: 'x'.repeat(20_000) } }, {});
    assert.equal(answer.status, 400);
    assert.equal(answer.body.error?.code, -32602);
  });

  it('a flood of new sessions is rate-limited per agent (429, retryable)', async () => {
    const refusals = async () =>
      (await scrapeMetrics(brokerUrl))('portcullis_gateway_rate_limit_refusals_total', {
        reason: 'new_sessions',
      });
    const refusedBefore = await refusals();
    const answers = await Promise.all(
      Array.from({ length: 60 }, () => initialize({}, { authorization: `Bearer ${otherKey}` })),
    );
    const refused = answers.filter((answer) => answer.status === 429);
    assert.ok(refused.length > 0, 'no session creation was refused');
    assert.equal(refused[0]!.body.error?.data?.code, 'rate_limited');
    const { retryAfterMs } = (refused[0]!.body.error?.data ?? {}) as { retryAfterMs?: number };
    assert.ok(typeof retryAfterMs === 'number' && retryAfterMs > 0, 'the refusal says how long to wait');
    assert.equal(refused[0]!.headers['retry-after'], String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
    assert.equal((await refusals()) - refusedBefore, refused.length, 'each refusal is counted in /metrics');
    assert.ok(
      answers.some((answer) => answer.status === 200),
      'the first sessions were created',
    );
  });

  it("an agent's sessions are bounded: one beyond MAX_SESSIONS_PER_AGENT ends its least recently used", async () => {
    const capped = `${(await stack.startBroker({ UPSTREAM_APP_ID: APP, MAX_SESSIONS_PER_AGENT: '2' })).url}/mcp`;
    const open = async (credential: string) => {
      const answer = await post(
        JSON.stringify({
          jsonrpc: '2.0',
          id: 1,
          method: 'initialize',
          params: {
            protocolVersion: '2025-06-18',
            capabilities: {},
            clientInfo: { name: 'hoard', version: '1' },
          },
        }),
        { authorization: `Bearer ${credential}`, 'mcp-session-id': '' },
        capped,
      );
      assert.equal(answer.status, 200);
      return String(answer.headers['mcp-session-id']);
    };
    const ping = (session: string, credential = hoarderKey) =>
      post(
        JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }),
        { authorization: `Bearer ${credential}`, 'mcp-session-id': session },
        capped,
      );

    // Another agent (not the flood test's, whose new-session budget that test spent).
    const bystander = await open(key);
    const first = await open(hoarderKey);
    const second = await open(hoarderKey);
    const third = await open(hoarderKey); // the bound is 2: the first, least recently used, ends
    // The replica held the first session in memory: the end reaches it (the replica bus, or its
    // next look in Redis), and the agent is told to initialize again. (Which session counts as
    // least recently used when they were used in between: session-store.test.ts.)
    await waitFor('the oldest session ended', async () => (await ping(first)).status === 404);
    const gone = await ping(first);
    assert.equal(gone.body.error?.data?.code, 'session_not_found');
    for (const kept of [second, third]) assert.equal((await ping(kept)).status, 200);
    // Another agent's session on the same replica does not count and is untouched.
    assert.equal((await ping(bystander, key)).status, 200);
  });
});

describe('what an agent relays outside tool calls', () => {
  it('a completion request reaches the upstream redacted by DLP', async () => {
    const agent = await capableClient(`${brokerUrl}/mcp/apps/${HOSTILE_APP}`, {
      Authorization: `Bearer ${key}`,
    });
    try {
      const reversed = (text: string) => [...text].reverse().join('');
      const { completion } = await agent.client.complete({
        ref: { type: 'ref/prompt', name: 'summarize' },
        argument: { name: 'topic', value: 'mail alice@example.com' },
      });
      // The upstream answers with what it received, reversed.
      assert.deepEqual(completion.values.map(reversed), ['mail [REDACTED:email]']);
    } finally {
      await agent.client.close();
    }
  });
});

describe('a hostile upstream', () => {
  it('a message nested too deep to inspect is not relayed, and the broker stays up', async () => {
    const agent = await capableClient(`${brokerUrl}/mcp/apps/${HOSTILE_APP}`, {
      Authorization: `Bearer ${key}`,
    });
    const logged: unknown[] = [];
    agent.client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
      logged.push(notification.params.data);
    });
    try {
      await agent.client.setLoggingLevel('debug');
      const answer = await agent.client.callTool({ name: 'nested_log', arguments: { text: 'deep' } });
      assert.deepEqual(answer.content, [{ type: 'text', text: 'nested_log: deep' }]);
      assert.deepEqual(logged, [], 'the uninspectable log message never reached the agent');
      // The replica that relayed it still serves calls.
      const after = await agent.client.callTool({ name: 'plain', arguments: { text: 'still here' } });
      assert.deepEqual(after.content, [{ type: 'text', text: 'plain: still here' }]);
    } finally {
      await agent.client.close();
    }
  });
});

// Last in the file: it suspends the agent the tests above use.
describe('a suspension mid-call', () => {
  it("ends the agent's calls in flight: cancelled upstream, answered at once with agent_suspended", async () => {
    const agent = await capableClient(`${brokerUrl}/mcp/apps/${HOSTILE_APP}`, {
      Authorization: `Bearer ${key}`,
    });
    try {
      const started = performance.now();
      const call = agent.client.callTool({ name: 'slow', arguments: { text: 'long' } }).then(
        (result) => ({ result }),
        (error: Error) => ({ error }),
      );
      await waitFor('the call to run upstream', () => hostileUpstream.calls.includes('slow: long'));
      const suspended = await stack.api('PUT', '/v1/agents/hostile-agent', {
        owner: 'owner@example.com',
        state: 'suspended',
      });
      assert.equal(suspended.status, 200);
      const outcome = await call;
      assert.ok(performance.now() - started < 8000, 'answered before the tool would have finished');
      assert.ok('error' in outcome, `the call ended with an error, got ${JSON.stringify(outcome)}`);
      // Told why, not merely "cancelled": not retryable.
      const error = outcome.error as McpError;
      assert.equal(error.code, -32016);
      assert.deepEqual(error.data, { code: 'agent_suspended', retryable: false });
      await waitFor('the upstream to hear of the cancellation', () =>
        hostileUpstream.cancelled.includes('slow: long'),
      );
    } finally {
      await agent.client.close().catch(() => undefined);
    }
  });
});
