import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort, isolatedRedis, stackEnv } from '@portcullis/testing';
import { Redis } from 'ioredis';
import { RateLimiter, UnknownRateClassError } from './rate-limit.ts';

// Against the real Redis of the test run, under a key prefix of this test's own.

let redis: Redis;
let prefix: string;
let drop: () => Promise<void>;

before(async () => {
  ({ redis, prefix, drop } = await isolatedRedis('rl'));
});

after(() => drop());

const classes = {
  standard: {
    perAgent: { limit: 10, periodMs: 1000, burst: 5 },
    perTool: { limit: 4, periodMs: 1000, burst: 3 },
  },
  strict: {
    perAgent: { limit: 1, periodMs: 60_000, burst: 1 },
    perTool: { limit: 1, periodMs: 60_000, burst: 1 },
  },
};

test('a burst is allowed up to its size, then the call is refused with a retry-after', async () => {
  const limiter = new RateLimiter(redis, prefix, classes);
  const verdicts = [];
  for (let i = 0; i < 4; i++) verdicts.push(await limiter.consume('agent-a', 'demo/read_record'));
  assert.deepEqual(
    verdicts.slice(0, 3).map((v) => v.allowed),
    [true, true, true],
  );
  const refused = verdicts[3]!;
  assert.equal(refused.allowed, false);
  if (refused.allowed) return;
  assert.equal(refused.scope, 'tool');
  assert.equal(refused.rateClass, 'standard');
  // One call per 250 ms for this tool: the next one is due within that.
  assert.ok(refused.retryAfterMs > 0 && refused.retryAfterMs <= 250, String(refused.retryAfterMs));
  await new Promise((resolve) => setTimeout(resolve, refused.retryAfterMs + 20));
  assert.equal((await limiter.consume('agent-a', 'demo/read_record')).allowed, true);
});

test('the per-agent limit spans tools; a refused call consumes nothing', async () => {
  const limiter = new RateLimiter(redis, prefix, classes);
  const results: boolean[] = [];
  for (let i = 0; i < 6; i++) results.push((await limiter.consume('agent-b', `demo/tool_${i}`)).allowed);
  // Five calls burst per agent, whatever the tool; the sixth is refused by the agent limit.
  assert.deepEqual(results, [true, true, true, true, true, false]);
  const verdict = await limiter.consume('agent-b', 'demo/tool_9');
  assert.equal(verdict.allowed, false);
  if (!verdict.allowed) assert.equal(verdict.scope, 'agent');
  // The refused calls did not spend the tool allowance of tool_9: it has never been charged.
  const toolKeys = await redis.keys(`${prefix}portcullis:rate:{agent-b}:standard:tool:demo/tool_9`);
  assert.deepEqual(toolKeys, []);
});

test('agents do not share allowances', async () => {
  const limiter = new RateLimiter(redis, prefix, classes);
  assert.equal((await limiter.consume('agent-c', 'demo/x', 'strict')).allowed, true);
  assert.equal((await limiter.consume('agent-c', 'demo/x', 'strict')).allowed, false);
  assert.equal((await limiter.consume('agent-d', 'demo/x', 'strict')).allowed, true);
});

test('classes are separate budgets, and an unknown class is an error, never the standard one', async () => {
  const limiter = new RateLimiter(redis, prefix, classes);
  assert.equal((await limiter.consume('agent-e', 'demo/x', 'strict')).allowed, true);
  assert.equal((await limiter.consume('agent-e', 'demo/x', 'strict')).allowed, false);
  assert.equal((await limiter.consume('agent-e', 'demo/x')).allowed, true);
  await assert.rejects(limiter.consume('agent-e', 'demo/x', 'bulk'), UnknownRateClassError);
});

test('concurrent callers (two clients, as two replicas) never exceed the burst', async () => {
  const other = new Redis(stackEnv().redisUrl, { lazyConnect: true });
  await other.connect();
  try {
    const a = new RateLimiter(redis, prefix, classes);
    const b = new RateLimiter(other, prefix, classes);
    const verdicts = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).consume('agent-f', 'demo/hot')),
    );
    assert.equal(verdicts.filter((v) => v.allowed).length, 3);
  } finally {
    await other.quit();
  }
});

test('keys expire once their allowance is whole again: nothing piles up in Redis', async () => {
  const limiter = new RateLimiter(redis, prefix, classes);
  await limiter.consume('agent-g', 'demo/x');
  const ttl = await redis.pttl(`${prefix}portcullis:rate:{agent-g}:standard:agent`);
  assert.ok(ttl > 0 && ttl <= 1000, String(ttl));
});

const generous = {
  standard: {
    perAgent: { limit: 100_000, periodMs: 1000, burst: 10_000 },
    perTool: { limit: 100_000, periodMs: 1000, burst: 10_000 },
  },
};

/** Counts the limiter's round trips to Redis (the GCRA script) on this client. */
function countScripts(client: Redis): () => number {
  const limited = client as Redis & { portcullisGcra: (...args: unknown[]) => Promise<unknown> };
  const original = limited.portcullisGcra.bind(client);
  let calls = 0;
  limited.portcullisGcra = (...args: unknown[]) => {
    calls++;
    return original(...args);
  };
  return () => calls;
}

test('a busy agent on a generous class takes cells in leases: far fewer Redis round trips than calls', async () => {
  const client = new Redis(stackEnv().redisUrl, { maxRetriesPerRequest: 2 });
  try {
    const limiter = new RateLimiter(client, prefix, generous);
    const scripts = countScripts(client);
    for (let i = 0; i < 2000; i++)
      assert.equal((await limiter.consume('agent-busy', 'demo/read')).allowed, true);
    assert.ok(scripts() < 100, `2,000 calls took ${scripts()} round trips`);
    // Concurrent calls share one refill rather than each taking a lease.
    const before = scripts();
    const verdicts = await Promise.all(
      Array.from({ length: 50 }, () => limiter.consume('agent-burst', 'demo/read')),
    );
    assert.ok(verdicts.every((verdict) => verdict.allowed));
    assert.ok(scripts() - before <= 10, `50 concurrent calls took ${scripts() - before} round trips`);
    // The standard classes (a few calls a second) never lease: one round trip per call, as before.
    const strictScripts = countScripts(redis);
    const exact = new RateLimiter(redis, prefix, classes);
    for (let i = 0; i < 3; i++) await exact.consume('agent-exact', 'demo/read');
    assert.equal(strictScripts(), 3);
  } finally {
    client.disconnect();
  }
});

test('leases never let more through than the limit, even from two replicas at once', async () => {
  // 1,000 calls/s, burst 100: leases of up to 10 cells.
  const tight = {
    standard: {
      perAgent: { limit: 1000, periodMs: 1000, burst: 100 },
      perTool: { limit: 1000, periodMs: 1000, burst: 100 },
    },
  };
  const clients = [0, 1].map(() => new Redis(stackEnv().redisUrl, { maxRetriesPerRequest: 2 }));
  try {
    const limiters = clients.map((client) => new RateLimiter(client, prefix, tight));
    const started = performance.now();
    const allowed = await Promise.all(
      limiters.flatMap((limiter) =>
        Array.from({ length: 8 }, async () => {
          let count = 0;
          while (performance.now() - started < 500)
            if ((await limiter.consume('agent-tight', 'demo/write')).allowed) count++;
          return count;
        }),
      ),
    );
    const total = allowed.reduce((a, b) => a + b, 0);
    const elapsedMs = performance.now() - started;
    const due = 100 + (1000 * elapsedMs) / 1000; // the burst plus what accrued meanwhile
    assert.ok(total <= due + 1, `${total} calls allowed, at most ${Math.floor(due)} due`);
    // A client at its limit still gets (nearly) every cell it is due: refused leases fall back to one cell.
    assert.ok(total >= 0.8 * due, `${total} calls allowed of ${Math.floor(due)} due`);
  } finally {
    for (const client of clients) client.disconnect();
  }
});

test('a leasing class with Redis away fails the call closed and does not crash the process', async () => {
  const unheard: unknown[] = [];
  const listen = (reason: unknown) => void unheard.push(reason);
  process.on('unhandledRejection', listen);
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
    const limiter = new RateLimiter(unreachable, prefix, generous);
    await assert.rejects(limiter.consume('agent-away', 'demo/read'));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual(unheard, [], 'a rejection nobody handled (the broker would exit)');
  } finally {
    process.off('unhandledRejection', listen);
    unreachable.disconnect();
  }
});

test('at the limit, a leasing class costs one round trip per refused call', async () => {
  // Leases of up to 2 cells (a tenth of the burst, and what accrues in 100 ms), refilled slowly.
  const tight = {
    standard: classes.standard,
    tight: {
      perAgent: { limit: 20, periodMs: 1000, burst: 40 },
      perTool: { limit: 20, periodMs: 1000, burst: 40 },
    },
  };
  const limiter = new RateLimiter(redis, prefix, tight);
  let allowed = 0;
  for (let i = 0; i < 60 && (await limiter.consume('agent-tight', 'demo/read', 'tight')).allowed; i++)
    allowed++;
  assert.ok(allowed >= 38 && allowed <= 42, `${allowed} allowed from a burst of 40`);
  const scripts = countScripts(redis);
  for (let i = 0; i < 10; i++) await limiter.consume('agent-tight', 'demo/read', 'tight');
  assert.ok(scripts() <= 12, `10 calls at the limit took ${scripts()} round trips`);
});
