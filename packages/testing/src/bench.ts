import { readFile } from 'node:fs/promises';
import type pg from 'pg';

/**
 * Drives `op` in a closed loop from `concurrency` workers for `durationMs`; returns operations per
 * second and the latency p50/p99 in milliseconds. The shared loop of the micro-benchmarks.
 */
export async function closedLoop(
  concurrency: number,
  durationMs: number,
  op: (worker: number) => Promise<unknown>,
): Promise<{ perSecond: number; p50: number; p99: number }> {
  const latencies: number[] = [];
  const deadline = performance.now() + durationMs;
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
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { perSecond: (latencies.length / durationMs) * 1000, p50: at(0.5), p99: at(0.99) };
}

const CLOCK_TICKS_PER_S = 100; // Linux USER_HZ, the unit of utime and stime in /proc/<pid>/stat

/**
 * CPU time (user + system, ms) a process on this machine has used so far, from /proc. On a shared,
 * noisy machine, CPU per operation of the process under test is a steadier figure than its rate.
 * Returns 0 when the process is gone or /proc is not there.
 */
export async function processCpuMs(pid: number): Promise<number> {
  return statCpuMs(`/proc/${pid}/stat`);
}

/**
 * CPU time (ms) of a process's main thread alone (its JavaScript event loop in Node), without its
 * worker, GC and libuv threads. Returns 0 when the process is gone or /proc is not there.
 */
export async function mainThreadCpuMs(pid: number): Promise<number> {
  return statCpuMs(`/proc/${pid}/task/${pid}/stat`);
}

async function statCpuMs(path: string): Promise<number> {
  const stat = await readFile(path, 'utf8').catch(() => '');
  // After the command name (in parentheses, may hold spaces): utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) * 1000) / CLOCK_TICKS_PER_S;
}

/**
 * CPU (ms) used so far by the server processes of every session on the pool's database (Postgres
 * runs on this machine). Background writers shared by all databases are not counted.
 */
export async function databaseBackendsCpuMs(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ pid: number }>(
    'SELECT pid FROM pg_stat_activity WHERE datname = current_database()',
  );
  let total = 0;
  for (const { pid } of rows) total += await processCpuMs(pid);
  return total;
}
