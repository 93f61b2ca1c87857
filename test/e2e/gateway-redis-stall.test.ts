import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { rawInitialize } from '../support/agent.ts';
import { PrivateRedis } from '../support/private-redis.ts';
import { TestStack } from '../support/stack.ts';

// A Redis that stops answering (its process stopped: connections open, no replies) must not hang
// the gateway: what needs Redis fails within the command timeout with a clear, retryable error
// carrying the request's id, the replica reports itself unready, and all works again once Redis
// answers.

let stack: TestStack;
let redis: PrivateRedis;
let brokerUrl: string;
let key: string;

before(async () => {
  stack = await TestStack.create();
  await stack.startUpstream();
  await stack.startCoreServices();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo records' }],
    agents: [{ name: 'patient', owner: 'erin@example.com', entitlements: { demo: ['read'] } }],
  });
  key = await stack.issueKey('patient');
  redis = await PrivateRedis.start();
  brokerUrl = (await stack.startBroker({ REDIS_URL: redis.url, REDIS_COMMAND_TIMEOUT_MS: '500' })).url;
});

after(async () => {
  await stack?.stop();
  await redis?.stop();
});

/** Rejects, rather than letting the test hang, when the gateway does not answer in time. */
async function answered(request: Promise<Response>): Promise<{ response: Response; elapsedMs: number }> {
  const started = performance.now();
  const response = await Promise.race([
    request,
    sleep(15_000).then(() => Promise.reject(new Error('the gateway did not answer within 15 s'))),
  ]);
  return { response, elapsedMs: performance.now() - started };
}

function callTool(sessionId: string, id: number): Promise<Response> {
  return fetch(`${brokerUrl}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-session-id': sessionId,
      'mcp-protocol-version': '2025-06-18',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: { name: 'demo__list_records' },
    }),
  });
}

interface ErrorBody {
  id: number | null;
  error: { code: number; data: { code: string; retryable: boolean; retryAfterMs: number } };
}

test('a stalled Redis: requests that need it get a retryable 503 in time, not a hang', async () => {
  const initialized = await rawInitialize(brokerUrl, key);
  assert.equal(initialized.status, 200);
  const sessionId = initialized.headers.get('mcp-session-id')!;
  const working = await callTool(sessionId, 2);
  assert.equal(working.status, 200);
  assert.match(await working.text(), /"result"/);

  redis.freeze();
  try {
    // A new session needs Redis first for the new-session rate limit, then for the session itself.
    const fresh = await answered(rawInitialize(brokerUrl, key));
    assert.equal(fresh.response.status, 503);
    assert.equal(fresh.response.headers.get('retry-after'), '1');
    const refusal = (await fresh.response.json()) as ErrorBody;
    assert.equal(refusal.id, 1);
    assert.equal(refusal.error.code, -32603);
    assert.ok(
      ['rate_limiter_unavailable', 'session_store_unavailable'].includes(refusal.error.data.code),
      refusal.error.data.code,
    );
    assert.equal(refusal.error.data.retryable, true);
    // Loose: the command timeout is 500 ms; the bound only proves nobody waited for Redis.
    assert.ok(fresh.elapsedMs < 10_000, `answered after ${Math.round(fresh.elapsedMs)} ms`);

    // The replica re-reads a session it holds after 5 s (localRecheckMs): that read cannot answer.
    await sleep(5_500);
    const call = await answered(callTool(sessionId, 3));
    assert.equal(call.response.status, 503);
    assert.equal(call.response.headers.get('retry-after'), '1');
    const stalled = (await call.response.json()) as ErrorBody;
    assert.equal(stalled.id, 3, 'the refusal carries the request id, so the client can match it');
    assert.equal(stalled.error.data.code, 'session_store_unavailable');
    assert.equal(stalled.error.data.retryable, true);
    assert.equal(stalled.error.data.retryAfterMs, 1000);
    assert.ok(call.elapsedMs < 10_000, `answered after ${Math.round(call.elapsedMs)} ms`);

    const ready = await answered(fetch(`${brokerUrl}/readyz`));
    assert.equal(ready.response.status, 503);
    const readiness = (await ready.response.json()) as { checks: Record<string, string> };
    assert.notEqual(readiness.checks.redis, 'ok');
  } finally {
    redis.thaw();
  }

  // Redis answers again: the same session goes on, and new sessions open.
  const again = await answered(callTool(sessionId, 4));
  assert.equal(again.response.status, 200);
  assert.match(await again.response.text(), /"result"/);
  assert.equal((await answered(rawInitialize(brokerUrl, key))).response.status, 200);
});
