import { z } from 'zod';
import { ActionClass, Decision } from './policy.ts';

/** Every audit event type. Consumers switch on `type`, then check `version` against what they accept. */
export const AuditEventType = z.enum(['tool_call.requested', 'tool_call.completed']);
export type AuditEventType = z.infer<typeof AuditEventType>;

const envelope = {
  /** Unique per event; the ledger's idempotency key. */
  eventId: z.uuid(),
  occurredAt: z.iso.datetime({ offset: true }),
  /** Groups the events of one tool call; also the Kafka message key, so they share a partition. */
  callId: z.uuid(),
  /** The broker replica that handled the call. */
  source: z.object({ service: z.string().min(1), instanceId: z.string().min(1) }),
};

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex SHA-256 digest');

/**
 * Published by the broker after the policy decided and before anything is sent upstream.
 * Arguments travel only as a digest of their RFC 8785 canonical JSON: until DLP redaction exists,
 * raw arguments could carry secrets, which must never reach Kafka or the ledger.
 */
export const ToolCallRequestedV1 = z.object({
  type: z.literal('tool_call.requested'),
  version: z.literal(1),
  ...envelope,
  agent: z.object({ id: z.string().min(1), name: z.string().min(1), owner: z.string().min(1) }),
  app: z.object({ id: z.string().min(1) }),
  tool: z.object({ name: z.string().min(1) }),
  actionClass: ActionClass,
  argumentsDigest: Sha256Hex,
  decision: Decision,
});
export type ToolCallRequestedV1 = z.infer<typeof ToolCallRequestedV1>;

export const ToolCallOutcome = z.enum([
  /** The upstream answered with a result that is not an error. */
  'succeeded',
  /** The upstream answered with a tool error, or the call to it failed. */
  'failed',
  /** Policy denied the call; nothing was sent upstream. */
  'not_executed',
]);
export type ToolCallOutcome = z.infer<typeof ToolCallOutcome>;

/** Published by the broker when the call is over, whatever happened. */
export const ToolCallCompletedV1 = z.object({
  type: z.literal('tool_call.completed'),
  version: z.literal(1),
  ...envelope,
  outcome: ToolCallOutcome,
  /** Set when outcome is `failed`: a short code and message, never upstream payloads. */
  error: z.object({ code: z.string().min(1), message: z.string().max(1000) }).optional(),
  durationMs: z.number().nonnegative(),
  /**
   * Set when DLP redacted findings from the result before the agent saw it: how many of each
   * detector type (e.g. { aws_access_key: 1 }). Counts only, never the redacted text. Optional and
   * additive: consumers of version 1 that predate it ignore it.
   */
  redactions: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/), z.number().int().positive()).optional(),
});
export type ToolCallCompletedV1 = z.infer<typeof ToolCallCompletedV1>;

export const AuditEvent = z.discriminatedUnion('type', [ToolCallRequestedV1, ToolCallCompletedV1]);
export type AuditEvent = z.infer<typeof AuditEvent>;

/** Parses a Kafka message value into an audit event, or says why it cannot. */
export function parseAuditEvent(
  value: Buffer | string | null,
): { ok: true; event: AuditEvent } | { ok: false; reason: string } {
  if (value === null) return { ok: false, reason: 'empty message value' };
  let json: unknown;
  try {
    json = JSON.parse(typeof value === 'string' ? value : value.toString('utf8'));
  } catch {
    return { ok: false, reason: 'value is not JSON' };
  }
  const result = AuditEvent.safeParse(json);
  if (!result.success) return { ok: false, reason: z.prettifyError(result.error) };
  return { ok: true, event: result.data };
}
