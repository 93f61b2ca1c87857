import { PolicyEngine, type PolicyResult, policyTime, readBundle } from '@portcullis/policy-engine';
import { AppError } from '@portcullis/runtime';
import type pg from 'pg';
import { z } from 'zod';

/** Which recorded calls to replay: the last N, or a time range (both ends inclusive). */
export const SimulationScope = z.union([
  z.object({ last: z.coerce.number().int().min(1).max(100_000) }),
  z.object({ since: z.iso.datetime({ offset: true }), until: z.iso.datetime({ offset: true }) }),
]);
export type SimulationScope = z.infer<typeof SimulationScope>;

interface RecordedCall {
  call_id: string;
  requested_at: Date;
  agent_id: string;
  app_id: string;
  tool: string;
  action_class: string;
  decision: string;
  reason_codes: string[];
  policy_revision: string;
}

type Verdict = { outcome: string; reasons: string[] };

export interface SimulationReport {
  candidateRevision: string;
  activeRevision: string | null;
  evaluated: number;
  changed: {
    callId: string;
    requestedAt: string;
    agentId: string;
    appId: string;
    tool: string;
    actionClass: string;
    recorded: Verdict & { policyRevision: string };
    /** The active bundle replayed on the same input and directory: tells a policy change from directory drift. */
    active: Verdict | null;
    candidate: Verdict;
  }[];
  caveats: string[];
}

const CAVEATS = [
  'Arguments are recorded in the ledger only as a SHA-256 digest, so calls are replayed with empty arguments: grants with argument constraints evaluate as if the constrained arguments were missing.',
  'Calls are replayed against the directory as it is now, at the time each call was made (time windows and expiry as of then); the delegating user and client type are not in the ledger yet.',
];

/**
 * What-if simulation: replays recorded tool calls from the ledger (audit.tool_calls) through a
 * candidate bundle and reports every call whose decision would differ from the recorded one,
 * with the active bundle's replay beside it.
 */
export async function simulate(options: {
  ledger: pg.Pool;
  candidate: Uint8Array;
  active: Uint8Array | undefined;
  directory: Record<string, unknown>;
  scope: SimulationScope;
}): Promise<SimulationReport> {
  const engines = await Promise.all(
    [options.candidate, options.active].map(async (bytes) => {
      if (!bytes) return undefined;
      const engine = new PolicyEngine();
      await engine.loadBundle(await readBundle(bytes));
      engine.setDirectory(structuredClone(options.directory));
      return engine;
    }),
  );
  const [candidate, active] = engines as [PolicyEngine, PolicyEngine | undefined];
  let rows: RecordedCall[];
  try {
    const columns =
      'call_id, requested_at, agent_id, app_id, tool, action_class, decision, reason_codes, policy_revision';
    rows =
      'last' in options.scope
        ? (
            await options.ledger.query<RecordedCall>(
              `SELECT ${columns} FROM audit.tool_calls ORDER BY requested_at DESC LIMIT $1`,
              [options.scope.last],
            )
          ).rows
        : (
            await options.ledger.query<RecordedCall>(
              `SELECT ${columns} FROM audit.tool_calls WHERE requested_at BETWEEN $1 AND $2 ORDER BY requested_at LIMIT 100000`,
              [options.scope.since, options.scope.until],
            )
          ).rows;
  } catch (error) {
    throw new AppError('ledger_unavailable', `the ledger could not be read: ${(error as Error).message}`, {
      status: 503,
      retry: true,
      cause: error,
    });
  }
  const changed: SimulationReport['changed'] = [];
  for (const row of rows) {
    const input = {
      agent: { id: row.agent_id },
      app: { id: row.app_id },
      tool: { name: row.tool },
      action_class: row.action_class,
      arguments: {},
      time: policyTime(row.requested_at.getTime()),
    };
    const verdict = (engine: PolicyEngine): Verdict => {
      const result = engine.evaluateRaw(input) as PolicyResult | undefined;
      return result
        ? { outcome: result.outcome, reasons: result.reasons }
        : { outcome: 'deny', reasons: ['policy_error'] };
    };
    const next = verdict(candidate);
    const recorded = {
      outcome: row.decision,
      reasons: row.reason_codes,
      policyRevision: row.policy_revision,
    };
    if (next.outcome === recorded.outcome && sameReasons(next.reasons, recorded.reasons)) continue;
    changed.push({
      callId: row.call_id,
      requestedAt: row.requested_at.toISOString(),
      agentId: row.agent_id,
      appId: row.app_id,
      tool: row.tool,
      actionClass: row.action_class,
      recorded,
      active: active ? verdict(active) : null,
      candidate: next,
    });
  }
  return {
    candidateRevision: candidate.revision ?? 'unknown',
    activeRevision: active?.revision ?? null,
    evaluated: rows.length,
    changed,
    caveats: CAVEATS,
  };
}

function sameReasons(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().every((reason, i) => reason === [...b].sort()[i]);
}
