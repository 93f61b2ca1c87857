import { type ChildProcess, spawn } from 'node:child_process';
import { freePort, waitFor } from '@portcullis/testing';
import { Redis } from 'ioredis';

/**
 * A redis-server of a test's own (no persistence), for tests that make Redis stall: `freeze`
 * stops the process (SIGSTOP), so its connections stay open and every command goes unanswered —
 * what a Redis stuck in a long command, a fork or a swap storm looks like to its clients.
 * The shared stack's Redis is never touched.
 */
export class PrivateRedis {
  readonly url: string;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;

  private constructor(child: ChildProcess, port: number) {
    this.#child = child;
    this.url = `redis://127.0.0.1:${port}`;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  static async start(): Promise<PrivateRedis> {
    const port = await freePort();
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: 'ignore' },
    );
    const redis = new PrivateRedis(child, port);
    const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    probe.on('error', () => undefined);
    try {
      await waitFor('the private redis-server', async () => {
        if (probe.status !== 'ready') await probe.connect().catch(() => undefined);
        return (await probe.ping().catch(() => undefined)) === 'PONG';
      });
    } finally {
      probe.disconnect();
    }
    return redis;
  }

  /** Stops the process: connections stay open, nothing is answered. */
  freeze(): void {
    this.#child.kill('SIGSTOP');
  }

  thaw(): void {
    this.#child.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    this.#child.kill('SIGCONT');
    this.#child.kill('SIGTERM');
    await this.#exited;
  }
}
