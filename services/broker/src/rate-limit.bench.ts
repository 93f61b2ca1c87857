import { closedLoop, stackEnv, uniqueName } from '@portcullis/testing';
import { Redis } from 'ioredis';
import { RateLimiter } from './rate-limit.ts';

// Rate-limit benchmark: what one call's check costs — in Redis every time (one Lua script over two
// keys), and with leases (cells taken from Redis several at a time, spent locally) — beside its
// anchor, a plain Redis PING round trip on the same connection, at several concurrency levels.
// Needs the local stack's Redis (PORTCULLIS_REDIS_URL). Run: pnpm bench:rate-limit

const print = (...cells: string[]) => process.stdout.write(`${cells.join(' ')}\n`);
const DURATION_MS = 1500;
const redis = new Redis(stackEnv().redisUrl, { lazyConnect: true });
await redis.connect();
const prefix = `${uniqueName('rlbench')}:`;
// Limits high enough that every call is allowed: the cost measured is the check itself.
const huge = { limit: 1e9, periodMs: 1000, burst: 1e9 };
const classes = { standard: { perAgent: huge, perTool: huge } };
const unleased = new RateLimiter(redis, prefix, classes, { leases: false });
const leased = new RateLimiter(redis, prefix, classes);

const drive = (concurrency: number, op: (worker: number) => Promise<unknown>) =>
  closedLoop(concurrency, DURATION_MS, op);

print(
  'concurrency',
  'checks/s'.padStart(10),
  'p50 ms'.padStart(8),
  'p99 ms'.padStart(8),
  '|',
  'leased/s'.padStart(10),
  'p50 ms'.padStart(8),
  'p99 ms'.padStart(8),
  '|',
  'PINGs/s'.padStart(10),
  'p50 ms'.padStart(8),
  'p99 ms'.padStart(8),
  'p50 ratio'.padStart(10),
);
try {
  for (const concurrency of [1, 16, 64]) {
    const check = await drive(concurrency, (worker) =>
      unleased.consume(`agent-${worker % 8}`, `demo/tool-${worker}`),
    );
    const lease = await drive(concurrency, (worker) =>
      leased.consume(`agent-${worker % 8}`, `demo/tool-${worker}`),
    );
    const ping = await drive(concurrency, () => redis.ping());
    print(
      String(concurrency).padStart(11),
      check.perSecond.toFixed(0).padStart(10),
      check.p50.toFixed(3).padStart(8),
      check.p99.toFixed(3).padStart(8),
      '|',
      lease.perSecond.toFixed(0).padStart(10),
      lease.p50.toFixed(3).padStart(8),
      lease.p99.toFixed(3).padStart(8),
      '|',
      ping.perSecond.toFixed(0).padStart(10),
      ping.p50.toFixed(3).padStart(8),
      ping.p99.toFixed(3).padStart(8),
      `${(check.p50 / ping.p50).toFixed(1)}x`.padStart(10),
    );
  }
} finally {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  await redis.quit();
}
