import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '@portcullis/testing';
import { repoRoot } from './stack.ts';

const run = promisify(execFile);

/**
 * A Postgres + Redis + Kafka of a test's own, started by infra/local/up.sh with its own state dir
 * and ports, for tests that stop and restart infrastructure. The shared stack is never touched:
 * every process here is found through this state dir's pid files.
 */
export class PrivateStack {
  readonly stateDir: string;
  readonly env: Record<string, string>;
  readonly #infraDir: string;

  private constructor(stateDir: string, env: Record<string, string>, infraDir: string) {
    this.stateDir = stateDir;
    this.env = env;
    this.#infraDir = infraDir;
  }

  /** The infra scripts: infra/local of this repo, or PORTCULLIS_INFRA_DIR when set. */
  static infraDir(): string {
    const dir = process.env.PORTCULLIS_INFRA_DIR ?? join(repoRoot, 'infra/local');
    if (!existsSync(join(dir, 'up.sh'))) {
      throw new Error(`no infra scripts at ${dir}: set PORTCULLIS_INFRA_DIR to a checkout's infra/local`);
    }
    return dir;
  }

  static async start(): Promise<PrivateStack> {
    const infraDir = PrivateStack.infraDir();
    // Under /tmp: the postgres OS user must reach the state dir.
    const stateDir = await mkdtemp('/tmp/portcullis-private-');
    const ports = {
      PORTCULLIS_PG_PORT: String(await freePort()),
      PORTCULLIS_REDIS_PORT: String(await freePort()),
      PORTCULLIS_KAFKA_PORT: String(await freePort()),
      PORTCULLIS_KAFKA_CONTROLLER_PORT: String(await freePort()),
    };
    const stack = new PrivateStack(stateDir, { PORTCULLIS_STATE_DIR: stateDir, ...ports }, infraDir);
    await stack.up();
    const text = await readFile(join(stateDir, 'stack.env'), 'utf8');
    for (const line of text.split('\n')) {
      const match = /^export (\w+)='(.*)'$/.exec(line.trim());
      if (match) stack.env[match[1]!] = match[2]!;
    }
    return stack;
  }

  get databaseUrl(): string {
    return this.env.PORTCULLIS_DATABASE_URL!;
  }

  get kafkaBrokers(): string {
    return this.env.PORTCULLIS_KAFKA_BROKERS!;
  }

  /** Starts whatever of this stack is not running, and waits until all of it answers. */
  async up(): Promise<void> {
    await this.#script('up.sh');
  }

  /** Stops this stack's Kafka (SIGTERM, as an orchestrator would) and waits for it to exit. */
  async stopKafka(): Promise<void> {
    const pid = Number((await readFile(join(this.stateDir, 'kafka/kafka.pid'), 'utf8')).trim());
    process.kill(pid, 'SIGTERM');
    await waitExit(pid, 60000);
  }

  /** Stops this stack's Postgres with pg_ctl (fast mode: open transactions roll back). */
  async stopPostgres(): Promise<void> {
    await run(
      'bash',
      [
        '-c',
        `. "${this.#infraDir}/lib.sh" && as_postgres "$(pg_bin_dir)/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 -s stop`,
      ],
      { env: { ...process.env, ...this.env } },
    );
  }

  async destroy(): Promise<void> {
    await this.#script('down.sh', ['--purge']);
  }

  async #script(name: string, args: string[] = []): Promise<void> {
    await run('bash', [join(this.#infraDir, name), ...args], {
      env: { ...process.env, ...this.env },
      maxBuffer: 16 * 1024 * 1024,
    });
  }
}

async function waitExit(pid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`process ${pid} did not exit within ${timeoutMs} ms`);
}
