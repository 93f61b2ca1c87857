import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose';

/** The identity provider's keys cannot be had: the request is refused as retryable (503), not as a bad token. */
export class IdpUnavailable extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'IdpUnavailable';
  }
}

export interface IssuerKeysOptions {
  /** Longest wait for one fetch of the key set. */
  timeoutMs: number;
  /** After a successful fetch, how long a token naming an unknown kid waits before the next one. */
  cooldownMs: number;
  /** Age after which the key set is fetched again before use. */
  maxAgeMs?: number;
  /** How long the last good key set is used while fetches fail (the provider down). */
  maxStaleMs?: number;
  /** The wait after a failed fetch, doubling per failure up to `maxBackoffMs`. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** The clock (tests move it). */
  now?: () => number;
}

/**
 * The issuer's JSON Web Key Set, fetched by this class and handed to jose as a local key set
 * (`createLocalJWKSet`), because jose's remote key set lacks two things a gateway in front of
 * agents needs (ADR 0040, amended):
 * - *Every fetch attempt is throttled, failed ones too.* jose's cooldown runs from the last
 *   successful fetch only: while the key-set endpoint fails (or before it ever answered), each
 *   token naming an unknown kid — anyone can forge one, no secret needed — is one more fetch. Here
 *   a failure backs off (5 s, doubling to 60 s) and an unknown kid refetches at most once per
 *   cooldown after a success.
 * - *The last good key set outlives a failed refresh* (up to `maxStaleMs`, 24 h): an identity
 *   provider that is down does not make valid tokens fail once the cache is ten minutes old.
 * Concurrent callers share one fetch. Redirects are refused (the URL was checked by its owner).
 */
export class IssuerKeys {
  readonly #url: string;
  readonly #options: Required<Omit<IssuerKeysOptions, 'now'>>;
  readonly #now: () => number;
  #keys: { getKey: JWTVerifyGetKey; fetchedAt: number } | undefined;
  #fetching: Promise<void> | undefined;
  #failures = 0;
  #nextAttemptAt = 0;
  /** Why the last fetch failed: the cause of the IdpUnavailable that follows it. */
  #lastError: unknown;

  constructor(url: string, options: IssuerKeysOptions) {
    this.#url = url;
    this.#options = {
      maxAgeMs: 10 * 60_000,
      maxStaleMs: 24 * 3600_000,
      backoffMs: 5000,
      maxBackoffMs: 60_000,
      ...options,
    };
    // A monotonic clock: a wall-clock jump must neither stall refreshes nor stretch a backoff.
    this.#now = options.now ?? (() => performance.now());
  }

  /** jose's key lookup: the key the token's header names, from a key set fetched as above. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const now = this.#now();
    if (!this.#keys || now - this.#keys.fetchedAt >= this.#options.maxAgeMs) await this.#refresh();
    const keys = this.#usable();
    try {
      return await keys.getKey(header, token);
    } catch (error) {
      // A kid the set does not hold: a key rotation, or a forged token. One refetch per cooldown.
      if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
      if (now - keys.fetchedAt < this.#options.cooldownMs || now < this.#nextAttemptAt) throw error;
      await this.#refresh();
      return this.#usable().getKey(header, token);
    }
  };

  /** The key set to verify with: the current one, or the last good one within maxStaleMs. */
  #usable(): { getKey: JWTVerifyGetKey; fetchedAt: number } {
    const keys = this.#keys;
    const cause = { cause: this.#lastError };
    if (!keys) throw new IdpUnavailable('the identity provider key set could not be fetched', cause);
    if (this.#now() - keys.fetchedAt >= this.#options.maxStaleMs)
      throw new IdpUnavailable('the identity provider key set could not be refreshed for too long', cause);
    return keys;
  }

  /** Fetches the key set unless a failure's backoff is still running; never throws. */
  async #refresh(): Promise<void> {
    if (this.#now() < this.#nextAttemptAt) return;
    this.#fetching ??= this.#fetch().finally(() => {
      this.#fetching = undefined;
    });
    await this.#fetching;
  }

  async #fetch(): Promise<void> {
    try {
      const response = await fetch(this.#url, {
        signal: AbortSignal.timeout(this.#options.timeoutMs),
        redirect: 'error',
        headers: { accept: 'application/jwk-set+json, application/json' },
      });
      if (!response.ok) throw new Error(`the key set endpoint answered ${response.status}`);
      const jwks = (await response.json()) as JSONWebKeySet;
      // Validates the set's shape (throws JWKSInvalid); keys are imported when first used.
      const getKey = createLocalJWKSet(jwks);
      this.#keys = { getKey, fetchedAt: this.#now() };
      this.#failures = 0;
      this.#nextAttemptAt = 0;
    } catch (error) {
      this.#failures++;
      const backoff = Math.min(
        this.#options.maxBackoffMs,
        this.#options.backoffMs * 2 ** (this.#failures - 1),
      );
      this.#nextAttemptAt = this.#now() + backoff;
      this.#lastError = error;
    }
  }
}
