/**
 * The gateway benchmark (`pnpm bench:gateway`): `tools/call` on an established session, directly
 * against an upstream MCP server and through a broker replica, in the same run, side by side.
 *
 * The upstream is a minimal raw node:http MCP server (JSON responses, one echo tool), so the
 * figures are the gateway's own cost: authentication, session lookup in Redis, the in-process
 * Wasm policy, the rate limit in Redis, the request/decision audit event acknowledged by Kafka
 * (acks=all), DLP on the result, and the upstream hop. The load generator (raw-client.ts) is a
 * minimal keep-alive HTTP client, the same for both paths. Closed-loop runs at several concurrencies give throughput; an
 * open-loop run at a fixed rate (500 calls/s by default) gives the latency the goal is stated in.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  closedLoop,
  freePort,
  mainThreadCpuMs,
  processCpuMs,
  startProcess,
  waitFor,
} from '@portcullis/testing';
import { SECONDS_BUCKETS } from '../../services/broker/src/gateway-metrics.ts';
import { type Scrape, scrapeMetrics } from '../support/metrics.ts';
import { TestStack } from '../support/stack.ts';
import { RawClient } from './raw-client.ts';

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000);
const RATE = Number(process.env.BENCH_RATE ?? 500);
const CONCURRENCY = (process.env.BENCH_CONCURRENCY ?? '1,4,16').split(',').map(Number);
/** Open-loop rounds, each running every path once in turn; the figures are their medians. */
const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 3));
const fmt = (n: number, digits = 2) => n.toLocaleString('en-US', { maximumFractionDigits: digits });
/** A difference in ms with its sign: the relay's p99 can come out below the direct path's. */
const signed = (n: number) => `${n >= 0 ? '+' : ''}${fmt(n, 3)}`;

/**
 * The raw upstream runs in a process of its own, as a real upstream would: "direct" is then one
 * process hop (client → upstream) and "gateway" two (client → broker → upstream), so the added
 * figure is the gateway's own cost, not the cost of leaving the benchmark's process. The bare
 * relay (raw-relay.ts) makes the second hop and nothing else: the floor under the added figure.
 */
async function startRawServer(
  script: string,
  args: string[],
): Promise<{ url: string; pid: number; close: () => void }> {
  const port = await freePort();
  const process = await startProcess({
    name: script.replace(/\.ts$/, ''),
    script: fileURLToPath(new URL(`./${script}`, import.meta.url)),
    args: [String(port), ...args],
    env: {},
  });
  const url = `http://127.0.0.1:${port}/mcp`;
  await waitFor(`the ${script} server`, async () => {
    try {
      return (await fetch(url)).status === 405;
    } catch {
      return false;
    }
  });
  return { url, pid: process.child.pid ?? 0, close: () => void process.stop('SIGTERM') };
}

/**
 * Where the broker's time went during its open-loop rounds, from its own histograms in /metrics
 * (docs/operations.md): the mean of each step, as the difference of two scrapes' sums and counts.
 */
function brokerSteps(before: Scrape, after: Scrape): string {
  const mean = (name: string, labels: Record<string, string>) => {
    const count = after(`${name}_count`, labels) - before(`${name}_count`, labels);
    const sum = after(`${name}_sum`, labels) - before(`${name}_sum`, labels);
    return count > 0 ? fmt((sum / count) * 1000, 3) : '–';
  };
  // The median as Prometheus's histogram_quantile estimates it: linear within the bucket that holds
  // it (the buckets are coarse, 0.25 / 0.5 / 1 / 2.5 ms, so this says where the middle lies, not
  // its exact value). The mean alone is pulled up by the tail.
  const median = (name: string, labels: Record<string, string>) => {
    const below = (le: number) =>
      after(`${name}_bucket`, { ...labels, le: String(le) }) -
      before(`${name}_bucket`, { ...labels, le: String(le) });
    const total = after(`${name}_count`, labels) - before(`${name}_count`, labels);
    if (total === 0) return '–';
    let lower = 0;
    let countBelow = 0;
    for (const le of SECONDS_BUCKETS) {
      const count = below(le);
      if (count >= total / 2) {
        const share = count === countBelow ? 0 : (total / 2 - countBelow) / (count - countBelow);
        return fmt((lower + (le - lower) * share) * 1000, 3);
      }
      lower = le;
      countBelow = count;
    }
    return `over ${fmt(lower * 1000, 0)}`;
  };
  const step = (name: string) => {
    const labels = { step: name };
    const metric = 'portcullis_gateway_step_duration_seconds';
    return `${mean(metric, labels)} (median ≈ ${median(metric, labels)}) ms`;
  };
  return `in the broker, means (and medians) over its open-loop rounds (its /metrics): policy ${step('policy')}, audit event built and durable ${step('audit')}, upstream ${step('upstream')}; decision to outcome ${mean('portcullis_gateway_call_duration_seconds', { outcome: 'succeeded' })} ms`;
}

/** Sends calls at a fixed rate regardless of answers (open loop); latency of each call. */
async function openLoop(rate: number, durationMs: number, op: () => Promise<void>) {
  const latencies: number[] = [];
  const interval = 1000 / rate;
  const started = performance.now();
  const pending: Promise<void>[] = [];
  let errors = 0;
  for (let n = 0; ; n++) {
    const due = started + n * interval;
    if (due - started >= durationMs) break;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const sent = performance.now();
    pending.push(
      op().then(
        () => void latencies.push(performance.now() - sent),
        () => void errors++,
      ),
    );
  }
  await Promise.all(pending);
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return {
    perSecond: (latencies.length / (performance.now() - started)) * 1000,
    p50: at(0.5),
    p99: at(0.99),
    errors,
  };
}

type OpenResult = Awaited<ReturnType<typeof openLoop>>;

/** One open-loop round: every path at the same rate, one after the other. */
interface OpenRound {
  direct: OpenResult & Run;
  gateway: OpenResult & Run;
  relay: OpenResult & Run;
  durableRelay: OpenResult & Run;
}

interface Run {
  p50: number;
  p99: number;
  perSecond: number;
  /** CPU the measured server process (upstream or broker) used per call, in microseconds. */
  cpuPerCallUs: number;
  /** The same for the process's main thread alone (its event loop, where calls queue). */
  mainThreadCpuPerCallUs: number;
}

/** Runs one workload and adds the CPU per call of the server process `pid` (upstream or broker). */
async function withCpu<T extends Omit<Run, 'cpuPerCallUs' | 'mainThreadCpuPerCallUs'>>(
  pid: number,
  durationMs: number,
  workload: () => Promise<T>,
): Promise<T & Run> {
  const [before, mainBefore] = [await processCpuMs(pid), await mainThreadCpuMs(pid)];
  const result = await workload();
  const calls = (result.perSecond * durationMs) / 1000;
  const perCall = (usedMs: number) => (calls > 0 ? usedMs * (1000 / calls) : 0);
  return {
    ...result,
    cpuPerCallUs: perCall((await processCpuMs(pid)) - before),
    mainThreadCpuPerCallUs: perCall((await mainThreadCpuMs(pid)) - mainBefore),
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/** Each figure of several runs of one path: its median over the runs. */
function medianRun<T extends object>(runs: T[]): T {
  const keys = Object.keys(runs[0] as T) as (keyof T)[];
  return Object.fromEntries(keys.map((key) => [key, median(runs.map((run) => run[key] as number))])) as T;
}

interface Latency {
  p50: number;
  p99: number;
}

/** What `path` added to the direct path, round by round: the median of those paired differences. */
function addedOver<R extends { direct: Latency }>(
  rounds: R[],
  path: (round: R) => Latency,
): Latency & { each: string } {
  const p50 = rounds.map((round) => path(round).p50 - round.direct.p50);
  const p99 = rounds.map((round) => path(round).p99 - round.direct.p99);
  return {
    p50: median(p50),
    p99: median(p99),
    each: p50.map((value, i) => `${signed(value)} / ${signed(p99[i] as number)}`).join(', '),
  };
}

/** A process's CPU per call, and its main thread's (where its calls queue), in µs. */
const cpuOf = (run: Run) => `${fmt(run.cpuPerCallUs, 0)} (${fmt(run.mainThreadCpuPerCallUs, 0)})`;

function row(
  label: string,
  direct: Run,
  gateway: Run,
  added = { p50: gateway.p50 - direct.p50, p99: gateway.p99 - direct.p99 },
) {
  console.log(
    [
      label.padEnd(18),
      `${fmt(direct.p50, 3)} / ${fmt(direct.p99, 3)} ms`.padEnd(22),
      `${fmt(direct.perSecond, 0)}/s`.padEnd(10),
      `${fmt(gateway.p50, 3)} / ${fmt(gateway.p99, 3)} ms`.padEnd(22),
      `${fmt(gateway.perSecond, 0)}/s`.padEnd(10),
      `${signed(added.p50)} / ${signed(added.p99)} ms`.padEnd(24),
      `${fmt(gateway.p50 / direct.p50, 1)}× / ${fmt(gateway.p99 / direct.p99, 1)}×`.padEnd(18),
      `${fmt(direct.cpuPerCallUs, 0)} / ${cpuOf(gateway)} µs`,
    ].join(' '),
  );
}

async function main(): Promise<void> {
  console.log(
    `gateway benchmark: ${cpus().length} cores, load ${loadavg()
      .map((n) => n.toFixed(2))
      .join(' ')}`,
  );
  const upstream = await startRawServer('raw-upstream.ts', []);
  const relay = await startRawServer('raw-relay.ts', [upstream.url]);
  // The same relay with one O_DSYNC append per call, as the audit rule asks of the gateway.
  const durableDir = mkdtempSync(join(tmpdir(), 'portcullis-bench-relay-'));
  const durableRelay = await startRawServer('raw-relay.ts', [upstream.url, durableDir]);
  const stack = await TestStack.create();
  try {
    stack.upstreamUrl = upstream.url;
    await stack.startDecision();
    await stack.seed({
      apps: [{ id: 'bench', name: 'Benchmark echo' }],
      agents: [{ name: 'bench-agent', owner: 'owner@example.com', entitlements: { bench: ['read'] } }],
    });
    const key = await stack.issueKey('bench-agent');
    const generous = { limit: 10_000_000, periodMs: 1000, burst: 100_000 };
    const direct = new RawClient(upstream.url, {});
    await direct.initialize();
    const bare = new RawClient(relay.url, {});
    await bare.initialize();
    const bareDurable = new RawClient(durableRelay.url, {});
    await bareDurable.initialize();
    for (const acceptance of (process.env.BENCH_ACCEPTANCE ?? 'kafka,local-first').split(',')) {
      const broker = await stack.startBroker({
        UPSTREAM_APP_ID: 'bench',
        LOG_LEVEL: 'warn',
        AUDIT_ACCEPTANCE: acceptance,
        RATE_LIMIT_CLASSES: JSON.stringify({ standard: { perAgent: generous, perTool: generous } }),
        // e.g. BENCH_BROKER_NODE_OPTIONS=--cpu-prof to profile the broker under this load.
        ...(process.env.BENCH_BROKER_NODE_OPTIONS
          ? { NODE_OPTIONS: process.env.BENCH_BROKER_NODE_OPTIONS }
          : {}),
      });
      const gateway = new RawClient(`${broker.url}/mcp/apps/bench`, { authorization: `Bearer ${key}` });
      await gateway.initialize();
      // Warm-up: JIT, connection pools, the catalog and the upstream session.
      await closedLoop(4, 2000, () => direct.call('echo'));
      await closedLoop(4, 2000, () => gateway.call('echo'));
      await closedLoop(4, 1000, () => bare.call('echo'));
      await closedLoop(4, 1000, () => bareDurable.call('echo'));

      console.log(
        `\ntools/call, ${DURATION_MS / 1000} s per row; direct = raw upstream; gateway = broker with AUDIT_ACCEPTANCE=${acceptance} (policy, rate limit, audit, DLP) in front of it`,
      );
      console.log(
        `${'workload'.padEnd(18)} ${'direct p50 / p99'.padEnd(22)} ${'direct'.padEnd(10)} ${'gateway p50 / p99'.padEnd(22)} ${'gateway'.padEnd(10)} ${'added p50 / p99'.padEnd(24)} ${'ratio p50 / p99'.padEnd(18)} CPU/call upstream / broker (its main thread)`,
      );
      const brokerPid = broker.process.child.pid ?? 0;
      // The paths take turns, round after round, so that the machine's drift falls on all alike;
      // each figure is the median of the rounds, each added figure the median of the rounds' own.
      const stepsBefore = await scrapeMetrics(broker.url);
      const rounds: OpenRound[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        rounds.push({
          direct: await withCpu(upstream.pid, DURATION_MS, () =>
            openLoop(RATE, DURATION_MS, () => direct.call('echo')),
          ),
          gateway: await withCpu(brokerPid, DURATION_MS, () =>
            openLoop(RATE, DURATION_MS, () => gateway.call('echo')),
          ),
          relay: await withCpu(relay.pid, DURATION_MS, () =>
            openLoop(RATE, DURATION_MS, () => bare.call('echo')),
          ),
          durableRelay: await withCpu(durableRelay.pid, DURATION_MS, () =>
            openLoop(RATE, DURATION_MS, () => bareDurable.call('echo')),
          ),
        });
      }
      const stepsAfter = await scrapeMetrics(broker.url);
      const openDirect = medianRun(rounds.map((round) => round.direct));
      const openGateway = medianRun(rounds.map((round) => round.gateway));
      const openRelay = medianRun(rounds.map((round) => round.relay));
      const openDurableRelay = medianRun(rounds.map((round) => round.durableRelay));
      const added = addedOver(rounds, (round) => round.gateway);
      const relayAdded = addedOver(rounds, (round) => round.relay);
      const durableAdded = addedOver(rounds, (round) => round.durableRelay);
      row(`open ${RATE}/s`, openDirect, openGateway, added);
      if (ROUNDS > 1)
        console.log(
          `  ${ROUNDS} rounds of ${DURATION_MS / 1000} s, added p50 / p99 ms in each: ${added.each}`,
        );
      const errors = (path: keyof OpenRound) => rounds.reduce((sum, round) => sum + round[path].errors, 0);
      if (errors('direct') + errors('gateway') + errors('relay') + errors('durableRelay') > 0)
        console.log(
          `  errors: direct ${errors('direct')}, gateway ${errors('gateway')}, bare relay ${errors('relay')}, relay with the append ${errors('durableRelay')}`,
        );
      console.log(`  ${brokerSteps(stepsBefore, stepsAfter)}`);
      console.log(
        `  floor: a bare node:http relay in front of the same upstream, open ${RATE}/s: ${fmt(openRelay.p50, 3)} / ${fmt(openRelay.p99, 3)} ms, added ${signed(relayAdded.p50)} / ${signed(relayAdded.p99)} ms (one more process hop, no gateway work), CPU/call ${cpuOf(openRelay)} µs`,
      );
      console.log(
        `  floor with the audit rule: the same relay making one O_DSYNC append per call before forwarding it: ${fmt(openDurableRelay.p50, 3)} / ${fmt(openDurableRelay.p99, 3)} ms, added ${signed(durableAdded.p50)} / ${signed(durableAdded.p99)} ms, CPU/call ${cpuOf(openDurableRelay)} µs`,
      );
      for (const concurrency of CONCURRENCY) {
        const d = await withCpu(upstream.pid, DURATION_MS, () =>
          closedLoop(concurrency, DURATION_MS, () => direct.call('echo')),
        );
        const g = await withCpu(brokerPid, DURATION_MS, () =>
          closedLoop(concurrency, DURATION_MS, () => gateway.call('echo')),
        );
        row(`closed c=${concurrency}`, d, g);
      }
      console.log(
        `goal at ${RATE} calls/s (${acceptance}): added p50 < 1 ms (${fmt(added.p50, 3)} ms: ${added.p50 < 1 ? 'met' : 'NOT met'}), added p99 < 3 ms (${fmt(added.p99, 3)} ms: ${added.p99 < 3 ? 'met' : 'NOT met'})`,
      );
      gateway.close();
      await broker.process.stop('SIGTERM');
    }
    direct.close();
    bare.close();
    bareDurable.close();
  } finally {
    relay.close();
    durableRelay.close();
    rmSync(durableDir, { recursive: true, force: true });
    upstream.close();
    await stack.stop();
  }
}

await main();
