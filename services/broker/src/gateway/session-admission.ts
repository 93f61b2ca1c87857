import type { RateLimitRefusal } from '../gateway-metrics.ts';
import type { RateLimiter } from '../rate-limit.ts';
import { RpcCode, RpcError } from './json-rpc.ts';

/** A new session refused: the answer to give (HTTP status and JSON-RPC error) and why, for /metrics. */
export interface SessionRefusal {
  status: number;
  error: RpcError;
  /** Also sent as `Retry-After` (whole seconds, rounded up). */
  retryAfterMs: number;
  reason: Extract<RateLimitRefusal, 'new_sessions' | 'limiter_unavailable'>;
}

/** How long an agent is told to wait when the limiter could not answer (Redis away). */
const UNAVAILABLE_RETRY_MS = 1000;

/**
 * Whether an agent may open another MCP session now; undefined when it may. New sessions are
 * rate-limited per agent in the standard class, in a bucket of their own (the agent's id plus
 * `#sessions`), so that opening sessions never uses up the agent's calls and an agent cannot flood
 * Redis with session records. A limiter that cannot answer refuses (fail closed), with its own
 * code: the agent did nothing wrong and may retry shortly.
 */
export async function admitSession(
  limiter: Pick<RateLimiter, 'consume'>,
  agentId: string,
): Promise<SessionRefusal | undefined> {
  let verdict: Awaited<ReturnType<RateLimiter['consume']>>;
  try {
    verdict = await limiter.consume(`${agentId}#sessions`, 'mcp/initialize', 'standard');
  } catch {
    return {
      status: 503,
      retryAfterMs: UNAVAILABLE_RETRY_MS,
      reason: 'limiter_unavailable',
      error: new RpcError(
        RpcCode.InternalError,
        'The session rate limit could not be checked: no session was created. Retry shortly.',
        { code: 'rate_limiter_unavailable', retryable: true, retryAfterMs: UNAVAILABLE_RETRY_MS },
      ),
    };
  }
  if (verdict.allowed) return undefined;
  const { retryAfterMs } = verdict;
  return {
    status: 429,
    retryAfterMs,
    reason: 'new_sessions',
    error: new RpcError(
      RpcCode.RateLimited,
      `Too many new sessions for this agent; reuse a session or retry after ${(retryAfterMs / 1000).toFixed(3)} s`,
      { code: 'rate_limited', retryable: true, retryAfterMs, scope: 'sessions' },
    ),
  };
}
