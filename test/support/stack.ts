import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  createTestDatabase,
  deleteTopicsWithPrefix,
  freePort,
  type ServiceProcess,
  stackEnv,
  startEverythingHttp,
  startProcess,
  uniqueName,
  waitFor,
} from '@portcullis/testing';
import pg from 'pg';

const run = promisify(execFile);
const process_ = process;
export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const script = (path: string) => join(repoRoot, path);
export const bundlePath = script('rego/build/bundle.tar.gz');

/** The entry script of @modelcontextprotocol/server-everything (`node <it> stdio|streamableHttp`). */
export const everythingEntry = join(
  dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist/index.js',
);

/** How the gateway reaches an app, as the decision service takes it (AppConnection). */
export type SeedConnection =
  | { transport: { type: 'http'; url: string }; auth?: { scheme: 'none' } }
  | {
      transport: {
        type: 'stdio';
        command: string;
        args?: string[];
        env?: Record<string, string>;
        cwd?: string;
      };
      auth?: { scheme: 'none' };
    };

/** A directory seed, as `portcullis directory seed` takes it. */
export interface Seed {
  apps: { id: string; name: string; connection?: SeedConnection }[];
  agents: {
    name: string;
    owner: string;
    state?: 'active' | 'suspended';
    entitlements: Record<string, string[]>;
  }[];
}

/**
 * One isolated Portcullis stack for a suite: its own database, topic prefix, Redis key prefix and
 * ports, on the shared Postgres, Kafka and Redis of the test run.
 */
export class TestStack {
  readonly databaseUrl: string;
  readonly prefix: string;
  readonly processes: ServiceProcess[] = [];
  /** Temporary directories (audit spools) removed by stop(). */
  readonly #scratch: string[] = [];
  readonly #dropDatabase: () => Promise<void>;
  /** The Kafka this stack's services use: the shared one unless the suite brings its own. */
  readonly kafkaBrokers: string;
  upstreamUrl = '';
  /** Base URL of the decision service's API, once started. */
  decisionUrl = '';
  /** An admin API token for the decision service (its hash is what the service is given). */
  readonly apiToken = `tok_${randomBytes(24).toString('hex')}`;
  /** A viewer API token: may read and ask the Data API, may change nothing. */
  readonly viewerToken = `tok_${randomBytes(24).toString('hex')}`;

  private constructor(databaseUrl: string, prefix: string, drop: () => Promise<void>, kafkaBrokers: string) {
    this.databaseUrl = databaseUrl;
    this.prefix = prefix;
    this.#dropDatabase = drop;
    this.kafkaBrokers = kafkaBrokers;
  }

  static async create(options: { kafkaBrokers?: string } = {}): Promise<TestStack> {
    const database = await createTestDatabase();
    return new TestStack(
      database.url,
      uniqueName('t'),
      database.drop,
      options.kafkaBrokers ?? stackEnv().kafkaBrokers,
    );
  }

  /** The environment every service of this stack shares. */
  commonEnv(): Record<string, string> {
    return {
      DATABASE_URL: this.databaseUrl,
      KAFKA_BROKERS: this.kafkaBrokers,
      KAFKA_TOPIC_PREFIX: this.prefix,
      LOG_LEVEL: 'info',
      SHUTDOWN_DRAIN_MS: '0',
    };
  }

  /** Starts the demo upstream MCP server (it has no readiness route; a GET answers 405 once up). */
  async startUpstream(): Promise<string> {
    const port = await freePort();
    const upstream = await startProcess({
      name: 'demo-upstream',
      script: script('examples/demo-upstream/src/main.ts'),
      args: ['--port', String(port)],
      env: {},
    });
    this.processes.push(upstream);
    this.upstreamUrl = `http://127.0.0.1:${port}/mcp`;
    await waitFor('the demo upstream', async () => (await fetch(this.upstreamUrl)).status === 405);
    return this.upstreamUrl;
  }

  /** Starts server-everything over Streamable HTTP on a free port; returns its MCP URL. */
  async startEverythingHttp(): Promise<string> {
    const { url, process } = await startEverythingHttp(everythingEntry);
    this.processes.push(process);
    return url;
  }

  /** Starts decision, credential and audit (the decision service migrates the directory). */
  async startCoreServices(): Promise<void> {
    await Promise.all([
      this.startDecision(),
      this.#start('credential', 'services/credential/src/main.ts'),
      this.#start('audit', 'services/audit/src/main.ts'),
    ]);
  }

  /** Starts the decision service with an admin API token; it migrates and publishes the directory. */
  async startDecision(extraEnv: Record<string, string> = {}): Promise<ServiceProcess> {
    const { port, process } = await this.#start('decision', 'services/decision/src/main.ts', {
      API_TOKENS: JSON.stringify([
        {
          name: 'test-admin',
          role: 'admin',
          sha256: createHash('sha256').update(this.apiToken).digest('hex'),
        },
        {
          name: 'test-viewer',
          role: 'viewer',
          sha256: createHash('sha256').update(this.viewerToken).digest('hex'),
        },
      ]),
      OPA_BIN: process_.env.PORTCULLIS_OPA_BIN || 'opa',
      DIRECTORY_PUBLISH_INTERVAL_MS: '100',
      ...extraEnv,
    });
    this.decisionUrl = `http://127.0.0.1:${port}`;
    return process;
  }

  /** Calls the decision service API as the test admin. */
  async api(
    method: string,
    path: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<Response> {
    return fetch(`${this.decisionUrl}${path}`, {
      method,
      headers: { Authorization: `Bearer ${this.apiToken}`, 'Content-Type': contentType },
      ...(body === undefined ? {} : { body: body instanceof Uint8Array ? body : JSON.stringify(body) }),
    });
  }

  /** Waits until the decision service has published the directory as it is in the database now. */
  async directoryPublished(): Promise<void> {
    if (!this.decisionUrl) return;
    const db = new pg.Client({ connectionString: this.databaseUrl });
    await db.connect();
    try {
      const { rows } = await db.query<{ value: string }>('SELECT value FROM directory.revision');
      const revision = Number(rows[0]?.value ?? 0);
      await waitFor(`directory revision ${revision} published`, async () => {
        const status = (await (await this.api('GET', '/v1/directory/status')).json()) as {
          publishedRevision: number;
        };
        return status.publishedRevision >= revision;
      });
    } finally {
      await db.end();
    }
  }

  /** Starts the audit service alone (it migrates the ledger schema). */
  async startAudit(): Promise<ServiceProcess> {
    return (await this.#start('audit', 'services/audit/src/main.ts')).process;
  }

  /** Starts a broker replica in front of the demo upstream; returns its base URL. */
  async startBroker(
    extraEnv: Record<string, string> = {},
  ): Promise<{ url: string; process: ServiceProcess }> {
    const infra = stackEnv();
    const { port, process } = await this.#start('broker', 'services/broker/src/main.ts', {
      REDIS_URL: infra.redisUrl,
      REDIS_KEY_PREFIX: `${this.prefix}:`,
      POLICY_BUNDLE_PATH: bundlePath,
      UPSTREAM_URL: this.upstreamUrl,
      UPSTREAM_APP_ID: 'demo',
      INSTANCE_ID: uniqueName('broker-'),
      AUDIT_SPOOL_DIR: await this.scratchDir('portcullis-spool-'),
      ...extraEnv,
    });
    return { url: `http://127.0.0.1:${port}`, process };
  }

  /** Applies a seed through the directory CLI. */
  async seed(seed: Seed): Promise<void> {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-seed-'));
    const file = join(dir, 'seed.json');
    await writeFile(file, JSON.stringify(seed));
    await this.directoryCli(['seed', file]);
  }

  /** Issues an agent key through the directory CLI and returns it. */
  async issueKey(agentName: string): Promise<string> {
    const { stdout } = await this.directoryCli(['issue-key', agentName, '--json']);
    return (JSON.parse(stdout) as { key: string }).key;
  }

  /** Runs the directory CLI; once it changed the directory, waits until that is published. */
  async directoryCli(args: string[]): Promise<{ stdout: string; stderr: string }> {
    const output = await run(process.execPath, [script('services/decision/src/cli.ts'), ...args], {
      env: {
        PATH: process.env.PATH ?? '',
        DATABASE_URL: this.databaseUrl,
        // For the `apps` commands, which go through the decision service's API.
        ...(this.decisionUrl
          ? { PORTCULLIS_API_URL: this.decisionUrl, PORTCULLIS_API_TOKEN: this.apiToken }
          : {}),
      },
    });
    await this.directoryPublished();
    return output;
  }

  /** A temporary directory that lives as long as this stack. */
  async scratchDir(prefix: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    this.#scratch.push(dir);
    return dir;
  }

  async stop(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.stop('SIGTERM')));
    // Its services are down, so none of them recreates a topic after this.
    await deleteTopicsWithPrefix(this.prefix, this.kafkaBrokers);
    await this.#dropDatabase();
    await Promise.all(this.#scratch.map((dir) => rm(dir, { recursive: true, force: true })));
  }

  async #start(
    name: string,
    entry: string,
    extraEnv: Record<string, string> = {},
  ): Promise<{ port: number; process: ServiceProcess }> {
    // A caller that must know the port before the service starts (an OAuth audience) passes HTTP_PORT.
    const port = extraEnv.HTTP_PORT ? Number(extraEnv.HTTP_PORT) : await freePort();
    const process = await startProcess({
      name,
      script: script(entry),
      env: { ...this.commonEnv(), HTTP_PORT: String(port), ...extraEnv },
      readyUrl: `http://127.0.0.1:${port}/readyz`,
    });
    this.processes.push(process);
    return { port, process };
  }
}
