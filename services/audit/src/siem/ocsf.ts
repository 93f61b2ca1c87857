/**
 * Ledger rows → OCSF API Activity (class_uid 6003) events, OCSF schema 1.3.0.
 * Exported: every tool call (from its completion, joined with its request: so a denied call is an
 * API Activity with status Failure and the reason codes) and every approval decision.
 */

export const OCSF_VERSION = '1.3.0';
const CLASS_UID = 6003;
const CATEGORY_UID = 6;

/** A ledger row as the exporter reads it; `request` is the call's tool_call.requested payload. */
export interface ExportRow {
  eventId: string;
  eventType: string;
  chainId: string;
  chainSeq: number;
  occurredAt: Date;
  payload: Record<string, unknown>;
  request: Record<string, unknown> | null;
}

export type OcsfEvent = Record<string, unknown>;

const ACTIVITY: Record<string, number> = { read: 2, write: 3, delete: 4 };
const STATUS = { success: 1, failure: 2, other: 99 } as const;

/** The OCSF event for a ledger row, or null for row types that are not exported. */
export function toOcsf(row: ExportRow): OcsfEvent | null {
  if (row.eventType === 'tool_call.completed') return toolCall(row);
  if (row.eventType === 'approval.decided') return approval(row);
  return null;
}

function base(row: ExportRow, activityId: number, operation: string) {
  return {
    class_uid: CLASS_UID,
    class_name: 'API Activity',
    category_uid: CATEGORY_UID,
    category_name: 'Application Activity',
    activity_id: activityId,
    type_uid: CLASS_UID * 100 + activityId,
    time: row.occurredAt.getTime(),
    metadata: {
      version: OCSF_VERSION,
      uid: row.eventId,
      event_code: row.eventType,
      original_time: String(row.payload.occurredAt ?? row.occurredAt.toISOString()),
      log_name: 'portcullis.ledger',
      // The ledger position: a SIEM can deduplicate an at-least-once redelivery by it.
      sequence: row.chainSeq,
      correlation_uid: typeof row.payload.callId === 'string' ? row.payload.callId : undefined,
      product: { name: 'Portcullis', vendor_name: 'Portcullis', feature: { name: 'broker' } },
    },
    api: { operation, service: { name: 'portcullis-broker' } },
  };
}

function toolCall(row: ExportRow): OcsfEvent {
  const completed = row.payload;
  const request = row.request ?? {};
  const agent = (request.agent ?? {}) as { id?: string; name?: string; owner?: string };
  const tool = (request.tool ?? {}) as { name?: string };
  const app = (request.app ?? {}) as { id?: string };
  const decision = (request.decision ?? {}) as {
    outcome?: string;
    reasons?: string[];
    policyRevision?: string;
  };
  const onBehalfOf = (request.onBehalfOf ?? undefined) as { userId?: string } | undefined;
  const outcome = String(completed.outcome);
  const denied = decision.outcome === 'deny';
  const activityId = ACTIVITY[String(request.actionClass)] ?? 99;
  const status = outcome === 'succeeded' ? STATUS.success : STATUS.failure;
  const error = completed.error as { code?: string; message?: string } | undefined;
  const event = {
    ...base(row, activityId, `tools/call ${tool.name ?? 'unknown'}`),
    activity_name: activityId === 99 ? 'Other' : undefined,
    severity_id: denied ? 3 : outcome === 'failed' ? 2 : 1,
    status_id: status,
    status: status === STATUS.success ? 'Success' : 'Failure',
    status_code: outcome,
    status_detail: denied
      ? `denied by policy: ${(decision.reasons ?? []).join(', ')}`
      : error
        ? `${error.code}: ${error.message}`
        : undefined,
    message: `${agent.name ?? 'unknown agent'} called ${app.id ?? '?'}/${tool.name ?? '?'}: ${denied ? 'denied' : outcome}`,
    duration: typeof completed.durationMs === 'number' ? Math.round(completed.durationMs) : undefined,
    actor: {
      user: {
        uid: agent.id ?? 'unknown',
        name: agent.name,
        type_id: 99,
        type: 'Agent',
        ...(agent.owner ? { email_addr: agent.owner.includes('@') ? agent.owner : undefined } : {}),
      },
      ...(onBehalfOf?.userId ? { invoked_by: onBehalfOf.userId } : {}),
      app_name: 'portcullis-broker',
    },
    src_endpoint: { name: String((completed.source as { instanceId?: string })?.instanceId ?? 'broker') },
    api: {
      operation: `tools/call ${tool.name ?? 'unknown'}`,
      service: { name: app.id ?? 'unknown' },
      request: { uid: String(completed.callId) },
      response: {
        code: status === STATUS.success ? 200 : denied ? 403 : 500,
        ...(error ? { error: error.code, error_message: error.message } : {}),
      },
    },
    resources: [{ uid: `${app.id ?? '?'}/${tool.name ?? '?'}`, name: tool.name, type: 'mcp-tool' }],
    unmapped: {
      decision: decision.outcome,
      reason_codes: decision.reasons,
      policy_revision: decision.policyRevision,
      action_class: request.actionClass,
      arguments_digest: request.argumentsDigest,
      result_digest: completed.resultDigest,
      approval_id: completed.approvalId,
      credential_lease_id: completed.credentialLeaseId,
      trace_id: completed.traceId ?? request.traceId,
    },
  };
  return prune(event);
}

function approval(row: ExportRow): OcsfEvent {
  const p = row.payload as {
    approvalId: string;
    outcome: string;
    decidedBy: string;
    channel: string;
    comment?: string;
    callId: string;
  };
  const approved = p.outcome === 'approved';
  return prune({
    ...base(row, 3, `approval.${p.outcome}`),
    severity_id: 1,
    status_id: approved ? STATUS.success : STATUS.failure,
    status: approved ? 'Success' : 'Failure',
    status_code: p.outcome,
    message: `approval ${p.approvalId} ${p.outcome} by ${p.decidedBy} via ${p.channel}`,
    actor: {
      user: { uid: p.decidedBy, name: p.decidedBy, type_id: 1, type: 'User' },
      app_name: `portcullis-${p.channel}`,
    },
    src_endpoint: { name: p.channel },
    api: {
      operation: `approval.${p.outcome}`,
      service: { name: 'portcullis-approvals' },
      request: { uid: p.approvalId },
    },
    resources: [{ uid: p.callId, type: 'tool-call' }],
    unmapped: { approval_id: p.approvalId, comment: p.comment },
  });
}

/** Drops undefined members, so events carry no empty keys. */
function prune<T>(value: T): T {
  if (Array.isArray(value)) return value.map(prune) as T;
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = prune(v);
    return out as T;
  }
  return value;
}
