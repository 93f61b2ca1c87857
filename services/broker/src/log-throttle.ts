/**
 * At most one log line per key per interval, and how many were held back meanwhile. For events a
 * client can cause in a loop (its calls refused by the audit path, say): the metric counts each
 * one, the log says that it happens without growing with every attempt.
 */
export class LogThrottle {
  readonly #intervalMs: number;
  readonly #keys = new Map<string, { loggedAt: number; held: number }>();

  constructor(intervalMs = 10_000) {
    this.#intervalMs = intervalMs;
  }

  /**
   * Whether to log this occurrence of `key` now: undefined when it is held back, else how many
   * occurrences were held back since the last line logged for the key.
   */
  admit(key: string, now = performance.now()): number | undefined {
    const entry = this.#keys.get(key);
    if (entry && now - entry.loggedAt < this.#intervalMs) {
      entry.held++;
      return undefined;
    }
    const held = entry?.held ?? 0;
    this.#keys.set(key, { loggedAt: now, held: 0 });
    return held;
  }
}
