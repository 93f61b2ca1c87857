import { createHash } from 'node:crypto';
import type { DecisionLogV1 } from '@portcullis/contracts';
import canonicalize from 'canonicalize';

/**
 * Input paths that are masked before a decision is logged. Tool arguments can carry anything an
 * agent sends, secrets included, so they leave the decision point only as a digest (the same
 * RFC 8785 SHA-256 the ledger records), never in clear.
 */
export const MASKED_INPUT_PATHS = ['/input/arguments'] as const;

/** Builds an OPA-shaped decision-log entry with the input masked. */
export function decisionLogEntry(options: {
  decisionId: string;
  path: string;
  input: Record<string, unknown>;
  result: unknown;
  revision: string;
  instanceId: string;
  service: string;
  durationNs: number;
  now?: Date;
}): DecisionLogV1 {
  const { arguments: args, ...rest } = options.input;
  const masked: string[] = [];
  const input: Record<string, unknown> = { ...rest };
  if (args !== undefined) {
    input.arguments = {
      sha256: createHash('sha256')
        .update(canonicalize(args) ?? 'null', 'utf8')
        .digest('hex'),
    };
    masked.push('/input/arguments');
  }
  return {
    type: 'decision.logged',
    version: 1,
    decision_id: options.decisionId,
    labels: { id: options.instanceId, service: options.service },
    bundles: { portcullis: { revision: options.revision } },
    path: options.path,
    input,
    ...(options.result === undefined ? {} : { result: options.result }),
    masked,
    erased: [],
    timestamp: (options.now ?? new Date()).toISOString(),
    metrics: { timer_server_handler_ns: Math.max(0, Math.round(options.durationNs)) },
  };
}
