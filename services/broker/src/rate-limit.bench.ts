import { stackEnv, uniqueName } from '@portcullis/testing';
import { Redis } from 'ioredis';
import { RateLimiter } from './rate-limit.ts';

// Rate-limit benchmark: what one call's check costs (one Lua script over two keys) beside its
// anchor, a plain Redis PING round trip on the same connection, at several concurrency levels.
// Needs the local stack's Redis (PORTCULLIS_REDIS_URL). Run: pnpm bench:rate-limit

const print = (...cells: string[]) => process.stdout.write(`${cells.join(' ')}\n`);
const DURATION_MS = 1500;
const redis = new Redis(stackEnv().redisUrl, { lazyConnect: true });
await redis.connect();
const prefix = `${uniqueName('rlbench')}:`;
// Limits high enough that every call is allowed: the cost measured is the check itself.
const huge = { limit: 1e9, periodMs: 1000, burst: 1e9 };
const limiter = new RateLimiter(redis, prefix, { default: { perAgent: huge, perTool: huge } });

async function drive(concurrency: number, op: (worker: number) => Promise<unknown>) {
  const latencies: number[] = [];
  const deadline = performance.now() + DURATION_MS;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < deadline) {
        const started = performance.now();
        await op(worker);
        latencies.push(performance.now() - started);
      }
    }),
  );
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!;
  return { perSecond: (latencies.length / DURATION_MS) * 1000, p50: at(0.5), p99: at(0.99) };
}

print(
  'concurrency',
  'checks/s'.padStart(10),
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
      limiter.consume(`agent-${worker % 8}`, `demo/tool-${worker}`),
    );
    const ping = await drive(concurrency, () => redis.ping());
    print(
      String(concurrency).padStart(11),
      check.perSecond.toFixed(0).padStart(10),
      check.p50.toFixed(3).padStart(8),
      check.p99.toFixed(3).padStart(8),
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
