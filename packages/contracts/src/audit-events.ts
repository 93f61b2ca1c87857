import { z } from 'zod';
import { ActionClass, Decision } from './policy.ts';

/** Every audit event type. Consumers switch on `type`, then check `version` against what they accept. */
export const AuditEventType = z.enum([
  'tool_call.requested',
  'tool_call.completed',
  'approval.requested',
  'approval.decided',
  'credential.lease_issued',
  'credential.lease_revoked',
  'admin.changed',
]);
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

/** A W3C trace-context trace id, so a ledger row can be joined with traces. */
const TraceId = z.string().regex(/^[0-9a-f]{32}$/, 'a W3C trace id (32 lowercase hex digits)');

/**
 * JSON after DLP redaction. Only the broker's DLP step may produce it; when a deployment stores
 * digests only, it is absent and the digest field stands alone.
 */
const RedactedJson = z.record(z.string(), z.unknown());

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
  /** The human the agent acts for, when it acts on someone's behalf (added in place: optional). */
  onBehalfOf: z.object({ userId: z.string().min(1) }).optional(),
  /** The arguments after DLP redaction; absent when only the digest is kept. */
  redactedArguments: RedactedJson.optional(),
  traceId: TraceId.optional(),
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
  /**
   * Set when DLP redacted findings from the arguments before they went upstream (the policy's
   * obligation said redact): counts per detector type, never the text. Optional and additive.
   */
  argumentRedactions: z.record(z.string().regex(/^[a-z][a-z0-9_]*$/), z.number().int().positive()).optional(),
  /** SHA-256 of the RFC 8785 canonical JSON of the upstream result, when there was one. */
  resultDigest: Sha256Hex.optional(),
  /** The result after DLP redaction; absent when only the digest is kept. */
  redactedResult: RedactedJson.optional(),
  /** The approval that released the call, when one was required. */
  approvalId: z.uuid().optional(),
  /** The credential lease the broker used for the upstream call. */
  credentialLeaseId: z.string().min(1).optional(),
  /** How long the upstream call took, apart from policy and approval time. */
  upstreamMs: z.number().nonnegative().optional(),
  traceId: TraceId.optional(),
});
export type ToolCallCompletedV1 = z.infer<typeof ToolCallCompletedV1>;

/** Envelope of events that are not part of one tool call (admin changes); no callId. */
const standaloneEnvelope = {
  eventId: z.uuid(),
  occurredAt: z.iso.datetime({ offset: true }),
  source: z.object({ service: z.string().min(1), instanceId: z.string().min(1) }),
};

const AgentRef = z.object({ id: z.string().min(1), name: z.string().min(1), owner: z.string().min(1) });

/** A call needs a human approval; the approval is bound to the digest of the canonical request. */
export const ApprovalRequestedV1 = z.object({
  type: z.literal('approval.requested'),
  version: z.literal(1),
  ...envelope,
  approvalId: z.uuid(),
  agent: AgentRef,
  app: z.object({ id: z.string().min(1) }),
  tool: z.object({ name: z.string().min(1) }),
  requestDigest: Sha256Hex,
  /** Who may approve (user ids or group names), as the policy named them. */
  approvers: z.array(z.string().min(1)),
  expiresAt: z.iso.datetime({ offset: true }),
});
export type ApprovalRequestedV1 = z.infer<typeof ApprovalRequestedV1>;

/** A human (or the clock) decided an approval. */
export const ApprovalDecidedV1 = z.object({
  type: z.literal('approval.decided'),
  version: z.literal(1),
  ...envelope,
  approvalId: z.uuid(),
  outcome: z.enum(['approved', 'denied', 'expired']),
  /** The approver's user id; `system` when the approval expired. */
  decidedBy: z.string().min(1),
  channel: z.enum(['slack', 'teams', 'cli', 'api', 'system']),
  comment: z.string().max(1000).optional(),
});
export type ApprovalDecidedV1 = z.infer<typeof ApprovalDecidedV1>;

/** The credential service handed a broker a lease for one app (never the secret itself). */
export const CredentialLeaseIssuedV1 = z.object({
  type: z.literal('credential.lease_issued'),
  version: z.literal(1),
  ...envelope,
  leaseId: z.string().min(1),
  agentId: z.string().min(1),
  appId: z.string().min(1),
  /** `shared` for an app-wide secret, `personal` for a user's OAuth connection. */
  credentialKind: z.enum(['shared', 'personal']),
  userId: z.string().min(1).optional(),
  expiresAt: z.iso.datetime({ offset: true }),
});
export type CredentialLeaseIssuedV1 = z.infer<typeof CredentialLeaseIssuedV1>;

/** A lease was revoked before it expired. */
export const CredentialLeaseRevokedV1 = z.object({
  type: z.literal('credential.lease_revoked'),
  version: z.literal(1),
  ...envelope,
  leaseId: z.string().min(1),
  revokedBy: z.string().min(1),
  reason: z.string().min(1).max(500),
});
export type CredentialLeaseRevokedV1 = z.infer<typeof CredentialLeaseRevokedV1>;

/** An administrator changed the directory, a policy, or a credential's configuration. */
export const AdminChangedV1 = z.object({
  type: z.literal('admin.changed'),
  version: z.literal(1),
  ...standaloneEnvelope,
  actor: z.string().min(1),
  action: z.string().min(1),
  target: z.object({ kind: z.string().min(1), id: z.string().min(1) }),
  /** Digests of the target before and after, never its secrets. */
  beforeDigest: Sha256Hex.optional(),
  afterDigest: Sha256Hex.optional(),
});
export type AdminChangedV1 = z.infer<typeof AdminChangedV1>;

/** The events of one tool call, as the broker publishes them (keyed by callId). */
export const AuditEvent = z.discriminatedUnion('type', [ToolCallRequestedV1, ToolCallCompletedV1]);
export type AuditEvent = z.infer<typeof AuditEvent>;

/** Every event the ledger records: tool calls, approvals, credential leases and admin changes. */
export const LedgerEvent = z.discriminatedUnion('type', [
  ToolCallRequestedV1,
  ToolCallCompletedV1,
  ApprovalRequestedV1,
  ApprovalDecidedV1,
  CredentialLeaseIssuedV1,
  CredentialLeaseRevokedV1,
  AdminChangedV1,
]);
export type LedgerEvent = z.infer<typeof LedgerEvent>;

/** Parses a Kafka message value into a tool-call audit event, or says why it cannot. */
export function parseAuditEvent(
  value: Buffer | string | null,
): { ok: true; event: AuditEvent } | { ok: false; reason: string } {
  return parseWith(AuditEvent, value);
}

/** Parses a Kafka message value into any event the ledger records, or says why it cannot. */
export function parseLedgerEvent(
  value: Buffer | string | null,
): { ok: true; event: LedgerEvent } | { ok: false; reason: string } {
  return parseWith(LedgerEvent, value);
}

function parseWith<T>(
  schema: z.ZodType<T>,
  value: Buffer | string | null,
): { ok: true; event: T } | { ok: false; reason: string } {
  if (value === null) return { ok: false, reason: 'empty message value' };
  let json: unknown;
  try {
    json = JSON.parse(typeof value === 'string' ? value : value.toString('utf8'));
  } catch {
    return { ok: false, reason: 'value is not JSON' };
  }
  const result = schema.safeParse(json);
  if (!result.success) return { ok: false, reason: z.prettifyError(result.error) };
  return { ok: true, event: result.data };
}
