import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { z } from 'zod';
import {
  AdminChangedV1,
  AppConnection,
  AppPolicyData,
  ApprovalDecidedV1,
  ApprovalRequestedV1,
  CredentialLeaseIssuedV1,
  CredentialLeaseRevokedV1,
  Decision,
  DecisionLogV1,
  DirectoryRecordV1,
  PolicyActivatedV1,
  parseAuditEvent,
  ToolCallCompletedV1,
  ToolCallRequestedV1,
  ToolDefinitionChangedV1,
} from './index.ts';

// Pins each event schema's JSON shape: a change to a published contract must be deliberate, made
// by adding a new version, and must update this snapshot in the same commit.
const snapshotUrl = new URL('./__snapshots__/schemas.json', import.meta.url);

test('event schemas match their pinned JSON shape', () => {
  const actual = {
    ToolCallRequestedV1: z.toJSONSchema(ToolCallRequestedV1),
    ToolCallCompletedV1: z.toJSONSchema(ToolCallCompletedV1),
    DirectoryRecordV1: z.toJSONSchema(DirectoryRecordV1),
    PolicyActivatedV1: z.toJSONSchema(PolicyActivatedV1),
    DecisionLogV1: z.toJSONSchema(DecisionLogV1),
    ApprovalRequestedV1: z.toJSONSchema(ApprovalRequestedV1),
    ApprovalDecidedV1: z.toJSONSchema(ApprovalDecidedV1),
    CredentialLeaseIssuedV1: z.toJSONSchema(CredentialLeaseIssuedV1),
    CredentialLeaseRevokedV1: z.toJSONSchema(CredentialLeaseRevokedV1),
    AdminChangedV1: z.toJSONSchema(AdminChangedV1),
    ToolDefinitionChangedV1: z.toJSONSchema(ToolDefinitionChangedV1),
    AppConnection: z.toJSONSchema(AppConnection),
  };
  if (process.env.UPDATE_SNAPSHOTS === '1') {
    mkdirSync(new URL('./__snapshots__/', import.meta.url), { recursive: true });
    writeFileSync(snapshotUrl, `${JSON.stringify(actual, null, 2)}\n`);
  }
  const pinned = JSON.parse(readFileSync(snapshotUrl, 'utf8'));
  assert.deepEqual(actual, pinned);
});

const requested = {
  type: 'tool_call.requested',
  version: 1,
  eventId: '0193a0a8-6b1c-7c3e-9a51-6f5d8e7b2c11',
  occurredAt: '2026-11-28T12:00:00.000Z',
  callId: '0193a0a8-6b1c-7c3e-9a51-6f5d8e7b2c12',
  source: { service: 'broker', instanceId: 'b-1' },
  agent: { id: 'agt_1', name: 'triage-bot', owner: 'alice@example.com' },
  app: { id: 'demo' },
  tool: { name: 'read_record' },
  actionClass: 'read',
  argumentsDigest: 'a'.repeat(64),
  decision: {
    decisionId: '0193a0a8-6b1c-7c3e-9a51-6f5d8e7b2c13',
    outcome: 'allow',
    reasons: ['allowed'],
    policyRevision: 'r1',
  },
};

test('parseAuditEvent accepts a valid event', () => {
  const parsed = parseAuditEvent(JSON.stringify(requested));
  assert.equal(parsed.ok, true);
});

test('parseAuditEvent rejects an unknown version with a reason', () => {
  const parsed = parseAuditEvent(JSON.stringify({ ...requested, version: 2 }));
  assert.equal(parsed.ok, false);
  assert.match(!parsed.ok ? parsed.reason : '', /version/);
});

test('parseAuditEvent rejects non-JSON and empty values', () => {
  assert.deepEqual(parseAuditEvent('{nope'), { ok: false, reason: 'value is not JSON' });
  assert.deepEqual(parseAuditEvent(null), { ok: false, reason: 'empty message value' });
});

const dlp = {
  arguments: { secrets: 'block', personal: 'allow' },
  results: { secrets: 'redact', personal: 'redact' },
};

test('a decision may carry a DLP obligation, and only with known modes and categories', () => {
  const base = { ...requested.decision, obligations: { rateLimitClass: 'standard', redact: [] } };
  assert.equal(Decision.safeParse(base).success, true, 'decisions recorded before DLP modes stay valid');
  assert.equal(Decision.safeParse({ ...base, obligations: { ...base.obligations, dlp } }).success, true);
  const unknownMode = { ...dlp, results: { secrets: 'log', personal: 'redact' } };
  assert.equal(
    Decision.safeParse({ ...base, obligations: { ...base.obligations, dlp: unknownMode } }).success,
    false,
  );
  const extraCategory = { ...dlp, results: { ...dlp.results, phone: 'allow' } };
  assert.equal(
    Decision.safeParse({ ...base, obligations: { ...base.obligations, dlp: extraCategory } }).success,
    false,
  );
});

test('app settings override DLP modes per action class; a typo is an error, not ignored', () => {
  assert.equal(
    AppPolicyData.safeParse({ dlp: { write: { arguments: { secrets: 'redact' } } } }).success,
    true,
  );
  assert.equal(AppPolicyData.safeParse({ dlp: { read: { results: { personal: 'allow' } } } }).success, true);
  assert.equal(AppPolicyData.safeParse({ dlp: { admin: {} } }).success, false);
  assert.equal(AppPolicyData.safeParse({ dlp: { read: { result: { personal: 'allow' } } } }).success, false);
  assert.equal(AppPolicyData.safeParse({ dlp: { read: { results: { personal: 'hide' } } } }).success, false);
});
