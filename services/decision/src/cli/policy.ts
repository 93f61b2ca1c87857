import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import type { ReasonCode } from '@portcullis/contracts';
import { opaWasmBuildArgs, PolicyEngine, REASON_DESCRIPTIONS, readBundle } from '@portcullis/policy-engine';

const run = promisify(execFile);

const usage = `usage: portcullis policy <command> [options]

local (need the opa binary: PORTCULLIS_OPA_BIN or opa on PATH):
  fmt [dir] [--write]              check formatting (opa fmt); --write rewrites the files
  check [dir]                      compile strictly (opa check --strict)
  test [dir] [--threshold N]       run the policy's tests with coverage (default threshold 90%)
  build [dir] [-o file]            build the Wasm bundle with the decision entrypoint
  eval --input file [--directory file] [--bundle file | dir]
                                   decide one input locally and explain the result

against the decision service (PORTCULLIS_API_URL, PORTCULLIS_API_TOKEN):
  push [dir] | push --built file   upload sources (validated: compile, tests, smoke) or a built bundle
  bundles                          list stored bundles and which one is active
  simulate <id> [--last N | --since ISO --until ISO]
                                   replay recorded calls through bundle <id>; list changed decisions
  activate <id> [--no-simulate]    show what it changes (simulate --last 1000), then make bundle <id>
                                   the active policy on every broker
  rollback                         re-activate the bundle that was active before

dir defaults to ./rego.`;

const opa = () => process.env.PORTCULLIS_OPA_BIN || 'opa';

/** Runs opa with inherited output; returns its exit code. */
function opaInteractive(args: string[]): number {
  const result = spawnSync(opa(), args, { stdio: 'inherit' });
  if (result.error) throw new Error(`could not run ${opa()}: ${result.error.message}`);
  return result.status ?? 1;
}

async function buildBundle(dir: string, out: string): Promise<void> {
  await run(opa(), opaWasmBuildArgs({ source: dir, out })).catch(
    (error: { stderr?: string; message: string }) => {
      throw new Error(`opa build failed:\n${error.stderr || error.message}`);
    },
  );
}

async function api(
  method: string,
  path: string,
  body?: Uint8Array | string,
  contentType = 'application/json',
): Promise<unknown> {
  const base = process.env.PORTCULLIS_API_URL;
  const token = process.env.PORTCULLIS_API_TOKEN;
  if (!base || !token) throw new Error('set PORTCULLIS_API_URL and PORTCULLIS_API_TOKEN for this command');
  const response = await fetch(new URL(path, base), {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': contentType },
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : {};
  if (!response.ok) throw new Error(`${response.status} ${parsed.title ?? text}`);
  return parsed;
}

async function sourceArchive(dir: string): Promise<Buffer> {
  const tmp = await mkdtemp(join(tmpdir(), 'portcullis-push-'));
  try {
    await run('tar', ['czf', join(tmp, 'source.tar.gz'), '--exclude', './build', '-C', dir, '.']);
    return await readFile(join(tmp, 'source.tar.gz'));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function evaluate(values: Record<string, string | boolean | undefined>, dir: string): Promise<number> {
  if (typeof values.input !== 'string') throw new Error('eval needs --input <file.json>');
  const input = JSON.parse(await readFile(values.input, 'utf8')) as Record<string, unknown>;
  const directory =
    typeof values.directory === 'string'
      ? JSON.parse(await readFile(values.directory, 'utf8'))
      : { agents: {}, apps: {}, entitlements: {} };
  let bytes: Buffer;
  if (typeof values.bundle === 'string') bytes = await readFile(values.bundle);
  else {
    const tmp = await mkdtemp(join(tmpdir(), 'portcullis-eval-'));
    try {
      await buildBundle(dir, join(tmp, 'bundle.tar.gz'));
      bytes = await readFile(join(tmp, 'bundle.tar.gz'));
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }
  const engine = new PolicyEngine();
  await engine.loadBundle(await readBundle(bytes));
  engine.setDirectory(directory.directory ?? directory);
  const decision = engine.decide(input);
  console.log(
    `decision: ${decision.outcome}   (policy revision ${decision.policyRevision}, judged as ${decision.actionClass})`,
  );
  for (const reason of decision.reasons)
    console.log(`  ${reason}: ${REASON_DESCRIPTIONS[reason as ReasonCode]}`);
  if (decision.approvers?.length) console.log(`approvers: ${decision.approvers.join(', ')}`);
  if (decision.obligations) {
    console.log(
      `obligations: rate-limit class ${decision.obligations.rateLimitClass}; redact ${decision.obligations.redact.join(', ') || 'nothing'}`,
    );
    const dlp = decision.obligations.dlp;
    if (dlp)
      console.log(
        `dlp: arguments secrets ${dlp.arguments.secrets}, personal ${dlp.arguments.personal}; results secrets ${dlp.results.secrets}, personal ${dlp.results.personal}`,
      );
  }
  console.log(`listed in tools/list: ${decision.visible ? 'yes' : 'no'}`);
  if (!input.time)
    console.log('note: the input has no time; the current time was used (time windows, expiry).');
  return decision.outcome === 'allow' ? 0 : 3;
}

/** Prints the what-if report of a stored bundle against recorded calls. */
async function printSimulation(id: string, scope: Record<string, unknown>): Promise<void> {
  const report = (await api('POST', `/v1/bundles/${id}/simulate`, JSON.stringify(scope))) as {
    evaluated: number;
    changed: {
      callId: string;
      tool: string;
      agentId: string;
      recorded: { outcome: string; reasons: string[] };
      candidate: { outcome: string; reasons: string[] };
    }[];
    caveats: string[];
  };
  console.log(`${report.evaluated} recorded calls replayed; ${report.changed.length} would change`);
  for (const change of report.changed)
    console.log(
      `  ${change.callId} ${change.agentId} ${change.tool}: ${change.recorded.outcome} (${change.recorded.reasons.join(',')}) -> ${change.candidate.outcome} (${change.candidate.reasons.join(',')})`,
    );
  for (const caveat of report.caveats) console.log(`note: ${caveat}`);
}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      write: { type: 'boolean' },
      threshold: { type: 'string', default: '90' },
      output: { type: 'string', short: 'o' },
      input: { type: 'string' },
      directory: { type: 'string' },
      bundle: { type: 'string' },
      built: { type: 'string' },
      last: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      'no-simulate': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, argument] = positionals;
  if (values.help || !command) {
    console.log(usage);
    return command || values.help ? 0 : 2;
  }
  const dir = resolve(argument ?? 'rego');
  switch (command) {
    case 'fmt':
      return opaInteractive(values.write ? ['fmt', '-w', dir] : ['fmt', '--fail', '--list', dir]);
    case 'check':
      return opaInteractive(['check', '--strict', '--ignore', 'build', dir]);
    case 'test':
      return (
        opaInteractive([
          'test',
          '--ignore',
          'build',
          '--coverage',
          '--threshold',
          values.threshold ?? '90',
          '--format',
          'pretty',
          dir,
        ]) || opaInteractive(['test', '--ignore', 'build', dir])
      );
    case 'build': {
      const out = resolve(values.output ?? 'bundle.tar.gz');
      await buildBundle(dir, out);
      const bundle = await readBundle(await readFile(out));
      console.log(`built ${out} (revision ${bundle.revision}, sha256 ${bundle.digest})`);
      return 0;
    }
    case 'eval':
      return evaluate(values, dir);
    case 'push': {
      const stored = values.built
        ? await api('POST', '/v1/bundles?kind=built', await readFile(values.built), 'application/gzip')
        : await api('POST', '/v1/bundles?kind=source', await sourceArchive(dir), 'application/gzip');
      console.log(JSON.stringify(stored, null, 2));
      return 0;
    }
    case 'bundles':
      console.log(JSON.stringify(await api('GET', '/v1/bundles'), null, 2));
      return 0;
    case 'simulate': {
      if (!argument) throw new Error('simulate needs a bundle id');
      const scope = values.since
        ? { since: values.since, until: values.until ?? new Date().toISOString() }
        : { last: Number(values.last ?? 1000) };
      await printSimulation(argument, scope);
      return 0;
    }
    case 'activate':
      if (!argument) throw new Error('activate needs a bundle id');
      // What-if first: the author sees what the activation changes before it happens.
      if (!values['no-simulate']) await printSimulation(argument, { last: Number(values.last ?? 1000) });
      reportActivation(await api('POST', `/v1/bundles/${argument}/activate`));
      return 0;
    case 'rollback':
      reportActivation(await api('POST', '/v1/policy/rollback'));
      return 0;
    default:
      console.error(`portcullis policy: unknown command ${command}\n\n${usage}`);
      return 2;
  }
}

/** Prints an activation's outcome; says so when the brokers do not have it yet. */
function reportActivation(outcome: unknown): void {
  console.log(JSON.stringify(outcome));
  if ((outcome as { published?: boolean }).published === false)
    console.error(
      'portcullis policy: recorded as active, but Kafka has not acknowledged it yet: the brokers get it once it does (the decision service retries)',
    );
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  console.error(`portcullis policy: ${(error as Error).message}`);
  process.exitCode = 1;
}
