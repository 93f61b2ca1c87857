import type { Redis } from 'ioredis';
import { z } from 'zod';
import { RpcCode, RpcError } from './gateway/json-rpc.ts';

/**
 * Rate limits per agent and per agent+tool, shared by every broker replica through Redis.
 *
 * Algorithm: GCRA (the generic cell rate algorithm, a token bucket stated in time). Each key holds
 * one number, the "theoretical arrival time"; a call is allowed when it is not earlier than that
 * time minus the burst allowance. Unlike fixed windows there is no double burst at a window edge,
 * and unlike a sliding log it stores O(1) per key. Both keys of a call are checked and updated in
 * one Lua script, so concurrent replicas cannot both take the last token, and a call refused by
 * one limit consumes nothing from the other. Time comes from Redis (TIME), not from the replicas,
 * so clock skew between replicas cannot widen a limit.
 *
 * Leases: a replica that sees many calls on one key takes several cells at once (a lease) and
 * spends them locally for up to LEASE_MS, so a busy agent costs one Redis round trip per lease
 * rather than per call. A lease grows (doubling) while the previous one ran out early and shrinks
 * when cells were left over; it never exceeds what the tighter limit accrues in LEASE_MS nor a
 * tenth of its burst, so the common classes (a few calls a second) never lease more than one
 * cell. Cells are taken from Redis before they are spent, so over time no replica lets through
 * more than the rate allows; but a leased cell may be spent up to LEASE_MS after it was charged,
 * when the bucket has refilled meanwhile, so at one instant the burst may be exceeded by what the
 * replicas' leases still hold (at most a tenth of the burst each). One refill runs at a time per
 * key, and a refused lease falls back to single cells, so a client at its limit still gets the
 * cells left in Redis one at a time, at one round trip per call. What a lease can cost: cells left
 * when it expires are lost (at most one lease per replica and key, when traffic stops), and cells
 * leased for one tool are not available to the agent's other tools until spent or expired.
 */

/** One limit: `limit` calls per `periodMs`, with up to `burst` calls at once. */
export const Limit = z.object({
  limit: z.number().int().positive(),
  periodMs: z.number().int().positive(),
  burst: z.number().int().positive(),
});
export type Limit = z.infer<typeof Limit>;

/** A named class (standard, strict, bulk…): one limit per agent, one per agent and tool. */
export const RateClass = z.object({ perAgent: Limit, perTool: Limit });
export type RateClass = z.infer<typeof RateClass>;
export const RateClasses = z
  .record(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/), RateClass)
  .refine((classes) => 'standard' in classes, 'a "standard" class is required');
export type RateClasses = z.infer<typeof RateClasses>;

/** The classes a broker has when configuration names none. */
export const DEFAULT_RATE_CLASSES: RateClasses = {
  // The policy's own default obligation (rego: rate_limit_class := "standard").
  standard: {
    perAgent: { limit: 600, periodMs: 60_000, burst: 60 },
    perTool: { limit: 300, periodMs: 60_000, burst: 30 },
  },
  strict: {
    perAgent: { limit: 60, periodMs: 60_000, burst: 10 },
    perTool: { limit: 20, periodMs: 60_000, burst: 5 },
  },
  bulk: {
    perAgent: { limit: 6000, periodMs: 60_000, burst: 600 },
    perTool: { limit: 3000, periodMs: 60_000, burst: 300 },
  },
};

export type RateVerdict =
  | { allowed: true }
  | { allowed: false; scope: 'agent' | 'tool'; retryAfterMs: number; rateClass: string };

/** The named class is not configured: a policy or configuration error, never silently "standard". */
export class UnknownRateClassError extends Error {
  constructor(name: string) {
    super(`unknown rate-limit class: ${name}`);
    this.name = 'UnknownRateClassError';
  }
}

// KEYS: the limited keys. ARGV: per key, the increment (its emission interval, period / limit,
// times the cells taken) and its burst tolerance (interval * burst), both in microseconds. Returns 0 when allowed, else
// {index of the first refusing key (1-based), retry after in microseconds}.
const GCRA_LUA = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local new_tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + interval
  local allow_at = new_tat - tolerance
  if allow_at > now then
    return {i, allow_at - now}
  end
  new_tats[i] = new_tat
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%d', new_tats[i]), 'PX', math.ceil((new_tats[i] - now) / 1000) + 1)
end
return 0
`;

/** How long leased cells may be spent locally. */
const LEASE_MS = 100;
/** Calls between two sweeps of idle leases. */
const SWEEP_EVERY = 10_000;

interface Lease {
  /** Cells taken from Redis and not yet spent. */
  remaining: number;
  /** performance.now() after which the remaining cells are dropped. */
  expiresAt: number;
  /** Cells the next lease asks for. */
  size: number;
  /** The refill in flight (resolves true if cells were granted), for calls that arrive meanwhile. */
  refill: Promise<boolean> | undefined;
}

/** Spends one leased cell if the lease has one and has not expired. */
function spend(lease: Lease): boolean {
  if (lease.remaining <= 0 || performance.now() >= lease.expiresAt) return false;
  lease.remaining--;
  return true;
}

interface GcraRedis {
  portcullisGcra(keyCount: number, ...keysAndArgs: (string | number)[]): Promise<0 | [number, number]>;
}

export class RateLimiter {
  readonly #redis: Redis & GcraRedis;
  readonly #prefix: string;
  readonly #classes: RateClasses;
  readonly #leases = new Map<string, Lease>();
  readonly #leasing: boolean;
  #sinceSweep = 0;

  /** `options.leases` (default true): false checks every call in Redis (the benchmark's anchor). */
  constructor(redis: Redis, prefix: string, classes: RateClasses, options: { leases?: boolean } = {}) {
    if (!('portcullisGcra' in redis)) redis.defineCommand('portcullisGcra', { lua: GCRA_LUA });
    this.#redis = redis as Redis & GcraRedis;
    this.#prefix = prefix;
    this.#classes = RateClasses.parse(classes);
    this.#leasing = options.leases ?? true;
  }

  /**
   * Takes one call from the agent's and the agent+tool's allowance under `rateClass`, or takes
   * nothing and says which limit refused and when to retry. Throws when Redis cannot answer: the
   * caller must then refuse the call (fail closed).
   */
  async consume(agentId: string, tool: string, rateClass = 'standard'): Promise<RateVerdict> {
    const limits = this.#classes[rateClass];
    if (!limits) throw new UnknownRateClassError(rateClass);
    const maxCells = this.#leasing ? maxLeaseSize(limits) : 1;
    if (maxCells === 1) return this.#take(agentId, tool, rateClass, limits, 1);
    if (++this.#sinceSweep >= SWEEP_EVERY) this.#sweep();
    const leaseKey = `${agentId}\u0000${rateClass}\u0000${tool}`;
    let lease = this.#leases.get(leaseKey);
    if (!lease) {
      lease = { remaining: 0, expiresAt: 0, size: 1, refill: undefined };
      this.#leases.set(leaseKey, lease);
    }
    // One refill at a time per key: calls arriving meanwhile wait for it and spend from it, so a
    // burst of concurrent calls takes one lease, not one each.
    while (lease.refill) {
      const refilled = await lease.refill;
      if (spend(lease)) return { allowed: true };
      // The refill was refused (the limit is reached): ask for this call's one cell, as without leases.
      if (!refilled) return this.#take(agentId, tool, rateClass, limits, 1);
    }
    if (spend(lease)) return { allowed: true };
    // This call refills. Ran out before it expired: demand outgrew the lease. Expired with cells
    // left: it was too big.
    const now = performance.now();
    lease.size = Math.min(
      maxCells,
      lease.remaining === 0 && now < lease.expiresAt ? lease.size * 2 : Math.ceil(lease.size / 2),
    );
    lease.remaining = 0;
    const refill = this.#refill(lease, agentId, tool, rateClass, limits);
    // For the calls that queue behind it. A failed refill (Redis away) counts as refused for them —
    // they then ask for their own cell, and fail closed there — and must not reject here, where
    // no one may be waiting: an unheard rejection would end the process.
    lease.refill = refill.then(
      (verdict) => verdict.allowed,
      () => false,
    );
    try {
      return await refill;
    } finally {
      lease.refill = undefined;
    }
  }

  /** Takes a lease's cells in Redis (one of them for the calling call); one cell if refused. */
  async #refill(
    lease: Lease,
    agentId: string,
    tool: string,
    rateClass: string,
    limits: RateClass,
  ): Promise<RateVerdict> {
    let cells = lease.size;
    let verdict = await this.#take(agentId, tool, rateClass, limits, cells);
    if (!verdict.allowed && cells > 1) {
      // At the limit: lease single cells from now on, so a client over its limit costs one round
      // trip per call, as without leases.
      lease.size = cells = 1;
      verdict = await this.#take(agentId, tool, rateClass, limits, cells);
    }
    if (verdict.allowed) lease.remaining = cells - 1;
    // A refused lease is no sign that demand outgrew it: it must not double at the next call
    // (which would cost two round trips, the large ask refused and then one cell).
    lease.expiresAt = verdict.allowed ? performance.now() + LEASE_MS : 0;
    return verdict;
  }

  /** Forgets leases idle for a while, so keys no longer called do not pile up in memory. */
  #sweep(): void {
    this.#sinceSweep = 0;
    const idleBefore = performance.now() - 10_000;
    for (const [key, lease] of this.#leases) if (lease.expiresAt < idleBefore) this.#leases.delete(key);
  }

  /** Takes `cells` cells from both limits in Redis, or nothing (see the script). */
  async #take(
    agentId: string,
    tool: string,
    rateClass: string,
    limits: RateClass,
    cells: number,
  ): Promise<RateVerdict> {
    // One hash tag per agent keeps both keys in one cluster slot, as a multi-key script needs.
    const base = `${this.#prefix}portcullis:rate:{${agentId}}:${rateClass}`;
    const keys = [`${base}:agent`, `${base}:tool:${tool}`];
    const args = [limits.perAgent, limits.perTool].flatMap((l) => {
      const interval = Math.ceil((l.periodMs * 1000) / l.limit);
      // Taking n cells at once moves the arrival time n intervals ahead, against the same tolerance.
      return [interval * cells, interval * l.burst];
    });
    const answer = await this.#redis.portcullisGcra(keys.length, ...keys, ...args);
    if (answer === 0) return { allowed: true };
    const [index, retryAfterMicros] = answer;
    return {
      allowed: false,
      scope: index === 1 ? 'agent' : 'tool',
      retryAfterMs: Math.max(1, Math.ceil(retryAfterMicros / 1000)),
      rateClass,
    };
  }
}

/** The most cells one lease may take: what the tighter limit accrues in LEASE_MS, a tenth of its burst. */
function maxLeaseSize({ perAgent, perTool }: RateClass): number {
  const accrued = Math.min(
    Math.floor((perAgent.limit * LEASE_MS) / perAgent.periodMs),
    Math.floor((perTool.limit * LEASE_MS) / perTool.periodMs),
  );
  const tenthOfBurst = Math.floor(Math.min(perAgent.burst, perTool.burst) / 10);
  return Math.max(1, Math.min(accrued, tenthOfBurst));
}

/** The error an agent receives over the limit: retryable, with when and which limit. */
export function rateLimitedError(verdict: Extract<RateVerdict, { allowed: false }>): RpcError {
  const seconds = (verdict.retryAfterMs / 1000).toFixed(3);
  return new RpcError(
    RpcCode.RateLimited,
    `Rate limit exceeded (${verdict.scope === 'agent' ? 'calls by this agent' : 'calls of this tool by this agent'}, class ${verdict.rateClass}); retry after ${seconds} s`,
    {
      code: 'rate_limited',
      retryable: true,
      retryAfterMs: verdict.retryAfterMs,
      scope: verdict.scope,
      rateClass: verdict.rateClass,
    },
  );
}
