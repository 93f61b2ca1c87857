/** A named dependency check used by readiness; resolves when healthy, throws with a reason when not. */
export type ReadinessCheck = () => Promise<void>;

/**
 * Liveness is not readiness. Liveness only says the event loop runs. Readiness says "send me
 * traffic": false until start-up finished, false again the moment shutdown begins, and false while
 * any check fails.
 */
export class Health {
  #started = false;
  #shuttingDown = false;
  readonly #checks = new Map<string, ReadinessCheck>();

  addCheck(name: string, check: ReadinessCheck): void {
    this.#checks.set(name, check);
  }

  markStarted(): void {
    this.#started = true;
  }

  markShuttingDown(): void {
    this.#shuttingDown = true;
  }

  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  async readiness(): Promise<{ ready: boolean; status: string; checks: Record<string, string> }> {
    if (this.#shuttingDown) return { ready: false, status: 'shutting_down', checks: {} };
    if (!this.#started) return { ready: false, status: 'starting', checks: {} };
    const checks: Record<string, string> = {};
    let ready = true;
    await Promise.all(
      [...this.#checks].map(async ([name, check]) => {
        try {
          await withTimeout(check(), 2000);
          checks[name] = 'ok';
        } catch (error) {
          ready = false;
          checks[name] = error instanceof Error ? error.message : String(error);
        }
      }),
    );
    return { ready, status: ready ? 'ready' : 'degraded', checks };
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`check timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
