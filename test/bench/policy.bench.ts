/**
 * The policy benchmark (`pnpm bench:policy`): the same bundle and directory, decided in-process by
 * the Wasm engine and by `opa run --server` over loopback REST (the sidecar pattern), side by side.
 *
 * Directory: 10,000 agents, 100,000 grants (30% with conditions), 50 apps, 200 users with
 * delegations. Inputs: 10,000 generated calls, cycled. Latency is measured per decision; the
 * in-process throughput is one thread, i.e. one core. The REST client is sequential over one
 * keep-alive connection, so its figures are per connection; OPA's server may use more than one core.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, waitFor } from '@portcullis/testing';
import { generateDirectory, generateInputs } from '../../packages/policy-engine/src/generate.ts';
import { PolicyEngine, readBundle } from '../../packages/policy-engine/src/index.ts';

const opa = process.env.PORTCULLIS_OPA_BIN || 'opa';
const root = fileURLToPath(new URL('../../', import.meta.url));
const IN_PROCESS_CALLS = Number(process.env.BENCH_CALLS ?? 200_000);
const REST_CALLS = Number(process.env.BENCH_REST_CALLS ?? 10_000);

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summarize(samplesUs: Float64Array, wallMs: number) {
  const sorted = samplesUs.slice().sort();
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    perSecond: (samplesUs.length / wallMs) * 1000,
  };
}

const fmt = (n: number, digits = 1) => n.toLocaleString('en-US', { maximumFractionDigits: digits });

async function main(): Promise<void> {
  console.log('policy benchmark: generating 10,000 agents and 100,000 entitlements…');
  const generated = generateDirectory(42, {
    agents: 10_000,
    apps: 50,
    entitlements: 100_000,
    users: 200,
    conditionalShare: 0.3,
  });
  const inputs = generateInputs(43, generated, 10_000);
  const bundle = await readBundle(readFileSync(join(root, 'rego/build/bundle.tar.gz')));

  // --- in-process ------------------------------------------------------------------------------
  const engine = new PolicyEngine();
  await engine.loadBundle(bundle);
  let t = performance.now();
  engine.setDirectory(generated.directory);
  const fullLoadMs = performance.now() - t;
  t = performance.now();
  const patches = 1000;
  for (let i = 0; i < patches; i++)
    engine.applyDirectoryChanges([
      { path: ['entitlements', generated.agentIds[i]!, 'app-0'], value: [{ actions: ['read', 'write'] }] },
    ]);
  const patchUs = ((performance.now() - t) * 1000) / patches;

  for (let i = 0; i < 20_000; i++) engine.decide(inputs[i % inputs.length]!); // warm-up
  const local = new Float64Array(IN_PROCESS_CALLS);
  const localStart = performance.now();
  for (let i = 0; i < IN_PROCESS_CALLS; i++) {
    const input = inputs[i % inputs.length]!;
    const start = process.hrtime.bigint();
    engine.decide(input);
    local[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  const localStats = summarize(local, performance.now() - localStart);

  // --- OPA REST sidecar --------------------------------------------------------------------------
  const dir = await mkdtemp(join(tmpdir(), 'policy-bench-'));
  const port = await freePort();
  await writeFile(join(dir, 'data.json'), JSON.stringify({ ...bundle.data, directory: engine.directory }));
  const opaProcess = spawn(
    opa,
    [
      'run',
      '--server',
      '--addr',
      `127.0.0.1:${port}`,
      '--log-level',
      'error',
      join(root, 'rego/portcullis/authz/decision.rego'),
      join(root, 'rego/portcullis/authz/time_window.rego'),
      join(dir, 'data.json'),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  let restStats: ReturnType<typeof summarize>;
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (body: string) =>
      new Promise<string>((resolve, reject) => {
        const request = http.request(
          {
            host: '127.0.0.1',
            port,
            path: '/v1/data/portcullis/authz/decision',
            method: 'POST',
            agent,
            headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
          },
          (response) => {
            let text = '';
            response.setEncoding('utf8');
            response.on('data', (chunk) => {
              text += chunk;
            });
            response.on('end', () => (response.statusCode === 200 ? resolve(text) : reject(new Error(text))));
          },
        );
        request.on('error', reject);
        request.end(body);
      });
    const bodies = inputs.map((input) => JSON.stringify({ input }));
    await waitFor(
      'opa server ready',
      async () => {
        try {
          return JSON.parse(await post(bodies[0]!)).result !== undefined;
        } catch {
          return false;
        }
      },
      { timeoutMs: 60_000 },
    );
    // The same decision both ways, or the comparison would be meaningless.
    for (let i = 0; i < 50; i++) {
      const viaRest = JSON.parse(await post(bodies[i]!)).result;
      const inProcess = engine.evaluateRaw(inputs[i]!);
      if (JSON.stringify(sortKeys(viaRest)) !== JSON.stringify(sortKeys(inProcess)))
        throw new Error(`decision ${i} differs between OPA REST and in-process`);
    }
    for (let i = 0; i < 1000; i++) await post(bodies[i % bodies.length]!); // warm-up
    const rest = new Float64Array(REST_CALLS);
    const restStart = performance.now();
    for (let i = 0; i < REST_CALLS; i++) {
      const start = process.hrtime.bigint();
      await post(bodies[i % bodies.length]!);
      rest[i] = Number(process.hrtime.bigint() - start) / 1000;
    }
    restStats = summarize(rest, performance.now() - restStart);
    agent.destroy();
  } finally {
    opaProcess.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  }

  const opaVersion = (await promisify(execFile)(opa, ['version'])).stdout.split('\n')[0];
  console.log(`
directory: 10,000 agents, 100,000 grants; full load into Wasm ${fmt(fullLoadMs)} ms; one in-place change ${fmt(patchUs)} µs
${opaVersion}; node ${process.version}; ${cpus().length} cores, load average ${loadavg()[0]!.toFixed(2)} at the end; ${IN_PROCESS_CALLS.toLocaleString('en-US')} in-process and ${REST_CALLS.toLocaleString('en-US')} REST decisions

| path                              | p50 (µs) | p99 (µs) | decisions/s (one core / one connection) |
|-----------------------------------|---------:|---------:|----------------------------------------:|
| in-process Wasm (PolicyEngine)    | ${fmt(localStats.p50).padStart(8)} | ${fmt(localStats.p99).padStart(8)} | ${fmt(localStats.perSecond, 0).padStart(39)} |
| opa run --server, loopback REST   | ${fmt(restStats.p50).padStart(8)} | ${fmt(restStats.p99).padStart(8)} | ${fmt(restStats.perSecond, 0).padStart(39)} |
| ratio (REST / in-process)         | ${fmt(restStats.p50 / localStats.p50).padStart(7)}× | ${fmt(restStats.p99 / localStats.p99).padStart(7)}× | ${fmt(localStats.perSecond / restStats.perSecond).padStart(38)}× |

goal: in-process p99 < 50 µs (${localStats.p99 < 50 ? 'met' : 'NOT met'}); ≥ 20× faster than REST at p50 (${restStats.p50 / localStats.p50 >= 20 ? 'met' : 'NOT met'})`);
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortKeys((value as Record<string, unknown>)[key])]),
    );
  return value;
}

await main();
