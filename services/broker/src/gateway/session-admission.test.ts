import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort, isolatedRedis } from '@portcullis/testing';
import { Redis } from 'ioredis';
import { RateLimiter } from '../rate-limit.ts';
import { admitSession } from './session-admission.ts';

// Against the real Redis of the test run, under a key prefix of this test's own.

let redis: Redis;
let prefix: string;
let drop: () => Promise<void>;

before(async () => {
  ({ redis, prefix, drop } = await isolatedRedis('admit'));
});

after(() => drop());

const standard = {
  standard: {
    perAgent: { limit: 2, periodMs: 60_000, burst: 2 },
    perTool: { limit: 2, periodMs: 60_000, burst: 2 },
  },
};

test('sessions beyond the burst are refused with 429, a wait and the sessions scope', async () => {
  const limiter = new RateLimiter(redis, prefix, standard, { leases: false });
  assert.equal(await admitSession(limiter, 'agent-a'), undefined);
  assert.equal(await admitSession(limiter, 'agent-a'), undefined);
  const refused = await admitSession(limiter, 'agent-a');
  assert.ok(refused, 'the third session in a minute is refused');
  assert.equal(refused.status, 429);
  assert.equal(refused.reason, 'new_sessions');
  assert.ok(refused.retryAfterMs > 0 && refused.retryAfterMs <= 60_000, `waits ${refused.retryAfterMs} ms`);
  assert.deepEqual(refused.error.toObject().data, {
    code: 'rate_limited',
    retryable: true,
    retryAfterMs: refused.retryAfterMs,
    scope: 'sessions',
  });
  // Another agent has a bucket of its own, and so do the agent's calls.
  assert.equal(await admitSession(limiter, 'agent-b'), undefined);
  assert.equal((await limiter.consume('agent-a', 'demo/read_record')).allowed, true);
});

test('a limiter that cannot reach Redis refuses the session (503, rate_limiter_unavailable)', async () => {
  const unreachable = new Redis({
    host: '127.0.0.1',
    port: await freePort(),
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  unreachable.on('error', () => {});
  try {
    const limiter = new RateLimiter(unreachable, prefix, standard, { leases: false });
    const refused = await admitSession(limiter, 'agent-c');
    assert.ok(refused, 'fails closed');
    assert.equal(refused.status, 503);
    assert.equal(refused.reason, 'limiter_unavailable');
    assert.equal(refused.error.code, -32603);
    assert.deepEqual(refused.error.toObject().data, {
      code: 'rate_limiter_unavailable',
      retryable: true,
      retryAfterMs: 1000,
    });
  } finally {
    unreachable.disconnect();
  }
});
