import { type ChildProcess, spawn } from 'node:child_process';
import { freePort } from './infrastructure.ts';
import { waitFor } from './wait.ts';

export interface ServiceProcess {
  name: string;
  child: ChildProcess;
  /** Everything the process printed so far (stdout and stderr). */
  output: () => string;
  /** Resolves with the exit code (or the signal name) when the process ends. */
  exited: Promise<number | string>;
  /** Sends a signal and waits for the exit. */
  stop: (signal?: NodeJS.Signals) => Promise<number | string>;
}

export interface StartOptions {
  name: string;
  /** The entry script, run with the current Node (which strips TypeScript types). */
  script: string;
  args?: string[];
  env: Record<string, string>;
  /** Polled until it answers 200; start fails with the process output if it never does. */
  readyUrl?: string;
  readyTimeoutMs?: number;
}

/** Starts a service as a real process, as production runs it, and waits until it is ready. */
export async function startProcess(options: StartOptions): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [options.script, ...(options.args ?? [])], {
    env: { PATH: process.env.PATH ?? '', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString('utf8');
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  let ended = false;
  void exited.then(() => {
    ended = true;
  });
  const service: ServiceProcess = {
    name: options.name,
    child,
    output: () => output,
    exited,
    stop: async (signal = 'SIGTERM') => {
      if (!ended) child.kill(signal);
      return exited;
    },
  };
  if (options.readyUrl) {
    const url = options.readyUrl;
    try {
      await waitFor(
        `${options.name} to become ready at ${url}`,
        async () => {
          if (ended) throw new Error(`${options.name} exited early`);
          const response = await fetch(url);
          return response.status === 200;
        },
        { timeoutMs: options.readyTimeoutMs ?? 30000, intervalMs: 150 },
      );
    } catch (error) {
      await service.stop('SIGKILL');
      throw new Error(`${(error as Error).message}\n--- ${options.name} output ---\n${output.slice(-4000)}`);
    }
  }
  return service;
}

/**
 * Starts `@modelcontextprotocol/server-everything` over Streamable HTTP on a free port (its PORT
 * variable) from its entry script (`dist/index.js`, resolved by the caller's package, which
 * depends on it); returns its /mcp URL once it listens.
 */
export async function startEverythingHttp(entry: string): Promise<{ url: string; process: ServiceProcess }> {
  const port = await freePort();
  const process = await startProcess({
    name: 'server-everything',
    script: entry,
    args: ['streamableHttp'],
    env: { PORT: String(port) },
  });
  await waitFor('server-everything to listen', () => process.output().includes('listening on port'), {
    timeoutMs: 20_000,
  });
  return { url: `http://127.0.0.1:${port}/mcp`, process };
}
