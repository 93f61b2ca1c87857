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

// KEYS: the limited keys. ARGV: per key, its emission interval (period / limit) and its burst
// tolerance (interval * burst), both in microseconds. Returns 0 when allowed, else
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

interface GcraRedis {
  portcullisGcra(keyCount: number, ...keysAndArgs: (string | number)[]): Promise<0 | [number, number]>;
}

export class RateLimiter {
  readonly #redis: Redis & GcraRedis;
  readonly #prefix: string;
  readonly #classes: RateClasses;

  constructor(redis: Redis, prefix: string, classes: RateClasses) {
    if (!('portcullisGcra' in redis)) redis.defineCommand('portcullisGcra', { lua: GCRA_LUA });
    this.#redis = redis as Redis & GcraRedis;
    this.#prefix = prefix;
    this.#classes = RateClasses.parse(classes);
  }

  /**
   * Takes one call from the agent's and the agent+tool's allowance under `rateClass`, or takes
   * nothing and says which limit refused and when to retry. Throws when Redis cannot answer: the
   * caller must then refuse the call (fail closed).
   */
  async consume(agentId: string, tool: string, rateClass = 'standard'): Promise<RateVerdict> {
    const limits = this.#classes[rateClass];
    if (!limits) throw new UnknownRateClassError(rateClass);
    // One hash tag per agent keeps both keys in one cluster slot, as a multi-key script needs.
    const base = `${this.#prefix}portcullis:rate:{${agentId}}:${rateClass}`;
    const keys = [`${base}:agent`, `${base}:tool:${tool}`];
    const args = [limits.perAgent, limits.perTool].flatMap((l) => {
      const interval = Math.ceil((l.periodMs * 1000) / l.limit);
      return [interval, interval * l.burst];
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
