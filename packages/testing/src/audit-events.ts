import { randomUUID } from 'node:crypto';
import type { ToolCallCompletedV1, ToolCallRequestedV1 } from '@portcullis/contracts';

/** Test data: a valid tool_call.requested event, with fields overridable. */
export function requestedEvent(overrides: Partial<ToolCallRequestedV1> = {}): ToolCallRequestedV1 {
  return {
    type: 'tool_call.requested',
    version: 1,
    eventId: randomUUID(),
    occurredAt: new Date().toISOString(),
    callId: randomUUID(),
    source: { service: 'broker', instanceId: 'test' },
    agent: { id: 'agt_1', name: 'triage-bot', owner: 'alice@example.com' },
    app: { id: 'demo' },
    tool: { name: 'read_record' },
    actionClass: 'read',
    argumentsDigest: 'b'.repeat(64),
    decision: { decisionId: randomUUID(), outcome: 'allow', reasons: ['allowed'], policyRevision: 'r1' },
    ...overrides,
  };
}

/** Test data: the completion of `requested`. */
export function completedEvent(
  requested: ToolCallRequestedV1,
  overrides: Partial<ToolCallCompletedV1> = {},
): ToolCallCompletedV1 {
  return {
    type: 'tool_call.completed',
    version: 1,
    eventId: randomUUID(),
    occurredAt: new Date().toISOString(),
    callId: requested.callId,
    source: requested.source,
    outcome: requested.decision.outcome === 'allow' ? 'succeeded' : 'not_executed',
    durationMs: 3.5,
    ...overrides,
  };
}
