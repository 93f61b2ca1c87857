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
