import type { Logger } from 'pino';
import type { Health } from './health.ts';

/**
 * The order every service stops in. Intake stops before in-flight work is awaited, and producers
 * are flushed before the pools they may still need are closed, so nothing accepted is lost.
 */
export const SHUTDOWN_PHASES = ['stop-intake', 'drain', 'flush', 'close'] as const;
export type ShutdownPhase = (typeof SHUTDOWN_PHASES)[number];

interface Step {
  phase: ShutdownPhase;
  name: string;
  run: () => Promise<void>;
}

export interface ShutdownOptions {
  logger: Logger;
  health: Health;
  /** How long readiness reports 503 before intake stops, so load balancers move away first. */
  drainDelayMs: number;
  /** Hard limit for the whole shutdown; past it the process exits with code 1. */
  timeoutMs: number;
  /** Called with the exit code when shutdown is over; tests replace it. */
  exit?: (code: number) => void;
}

/** One idempotent shutdown path for SIGTERM, SIGINT and fatal start-up errors. */
export class ShutdownManager {
  readonly #options: ShutdownOptions;
  readonly #steps: Step[] = [];
  #running: Promise<number> | undefined;

  constructor(options: ShutdownOptions) {
    this.#options = options;
  }

  /** Registers a step; steps run phase by phase, in registration order within a phase. */
  add(phase: ShutdownPhase, name: string, run: () => Promise<void> | void): void {
    this.#steps.push({ phase, name, run: async () => run() });
  }

  /** Routes SIGTERM and SIGINT to the same shutdown; a second signal does not start another. */
  installSignalHandlers(): void {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      process.on(signal, () => void this.shutdown(signal));
    }
  }

  /** Runs the shutdown once; later calls return the same promise. Resolves with the exit code. */
  shutdown(
    reason: string,
    { exitCode = 0, drain = true }: { exitCode?: number; drain?: boolean } = {},
  ): Promise<number> {
    this.#running ??= this.#run(reason, exitCode, drain ? this.#options.drainDelayMs : 0);
    return this.#running;
  }

  async #run(reason: string, requestedExitCode: number, drainDelayMs: number): Promise<number> {
    const { logger, health, timeoutMs } = this.#options;
    const exit = this.#options.exit ?? ((code: number) => process.exit(code));
    logger.info({ reason, drainDelayMs }, 'shutdown started: readiness now reports 503');
    health.markShuttingDown();
    const deadline = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown timed out; exiting');
      exit(1);
    }, timeoutMs);
    deadline.unref();

    let exitCode = requestedExitCode;
    await sleep(drainDelayMs);
    for (const phase of SHUTDOWN_PHASES) {
      for (const step of this.#steps.filter((s) => s.phase === phase)) {
        try {
          await step.run();
          logger.info({ phase, step: step.name }, 'shutdown step done');
        } catch (error) {
          exitCode = 1;
          logger.error({ phase, step: step.name, err: error }, 'shutdown step failed; continuing');
        }
      }
    }
    clearTimeout(deadline);
    logger.info({ exitCode }, 'shutdown complete');
    logger.flush?.();
    exit(exitCode);
    return exitCode;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
