import { z } from 'zod';
import { AppAuth, AppTransport, ToolFingerprint, ToolName } from './apps.ts';
import { ActionClass, DlpOverride } from './policy.ts';

/**
 * Directory state on the compacted topic `portcullis.directory.v1`. One record per entity, keyed
 * `<kind>:<id>`; the latest record of a key is the entity's state and a tombstone (null value)
 * removes it, so a broker that reads the topic from the beginning holds the whole directory.
 * The `data` of each kind is exactly what the policy sees under data.directory (see
 * docs/policy-authoring.md); agent key material travels as SHA-256 hashes only, never keys.
 * The exception is `app_connection`: how brokers reach an app and its tool pins, which brokers keep
 * outside the policy's data (ADR 0042).
 */
export const DirectoryRecordKind = z.enum([
  'agent',
  'app',
  'app_connection',
  'entitlements',
  'delegations',
  'revision',
]);
export type DirectoryRecordKind = z.infer<typeof DirectoryRecordKind>;

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex SHA-256 digest');

/** UTC weekly window: on these days (0 = Sunday), from minute (inclusive) to minute (exclusive). */
export const TimeWindow = z.object({
  days: z.array(z.number().int().min(0).max(6)).min(1),
  from_minute: z.number().int().min(0).max(1440),
  to_minute: z.number().int().min(0).max(1440),
});

/** One grant, as the policy reads it (snake_case, because it is the Rego data document). */
/**
 * A response path of the policy's `redact` obligation: `$`, then `.member`, `[n]` or `[*]` steps
 * (e.g. `$.employees[*].ssn`); what the broker applies (services/broker/src/gateway/field-redaction.ts).
 */
export const RedactPath = z
  .string()
  .max(512)
  .regex(
    /^\$(?:\.[A-Za-z_][\w-]*|\[(?:\d{1,9}|\*)\])+$/,
    'a response path: $ then .member, [n] or [*] steps',
  );

export const Grant = z.object({
  actions: z.array(ActionClass).min(1),
  expires_at: z.number().int().positive().optional().describe('Unix ms; the grant ends then'),
  window: TimeWindow.optional(),
  arguments: z.record(z.string().min(1), z.array(z.unknown()).min(1)).optional(),
  client_types: z.array(z.string().min(1)).min(1).optional(),
  require_approval: z.array(ActionClass).optional(),
  rate_limit_class: z.string().min(1).optional(),
  redact: z.array(RedactPath).optional(),
});
export type Grant = z.infer<typeof Grant>;

export const AgentPolicyData = z.object({
  state: z.enum(['active', 'suspended']),
  owner: z.string().min(1),
  client_type: z.string().min(1).optional(),
});

export const AppPolicyData = z.object({
  delete: z.enum(['allow', 'require_approval', 'deny']).optional(),
  approvers: z.array(z.string().min(1)).optional(),
  rate_limit_class: z.string().min(1).optional(),
  tools: z
    .record(
      z.string().min(1),
      z.object({
        action_class: ActionClass.optional(),
        disabled: z.boolean().optional(),
        redact: z.array(RedactPath).optional(),
      }),
    )
    .optional(),
  /** DLP modes per action class; leaves not given keep the bundle defaults (rego/portcullis/defaults). */
  dlp: z.strictObject({ read: DlpOverride, write: DlpOverride, delete: DlpOverride }).partial().optional(),
});
export type AppPolicyData = z.infer<typeof AppPolicyData>;

/** An OAuth 2.0 client_id (RFC 6749 §2.2: printable ASCII; no spaces here, bounded length). */
export const OAuthClientId = z
  .string()
  .regex(/^[\x21-\x7e]{1,255}$/, 'printable ASCII without spaces, at most 255 characters');

const recordEnvelope = {
  type: z.literal('directory.record'),
  version: z.literal(1),
  /** The directory revision (decision service counter) this record was published at. */
  revision: z.number().int().nonnegative(),
  id: z.string().min(1),
};

export const DirectoryRecordV1 = z.discriminatedUnion('kind', [
  z.object({
    ...recordEnvelope,
    kind: z.literal('agent'),
    name: z.string().min(1),
    data: AgentPolicyData,
    /** Active keys: id and SHA-256 of the secret. The secret itself never leaves the agent. */
    keys: z.array(z.object({ keyId: z.string().regex(/^[0-9a-f]{16}$/), secretSha256: Sha256Hex })),
    /**
     * OAuth client ids whose access tokens authenticate as this agent (unique across agents).
     * Outside `data`: they are how the broker finds the agent, not something policy decides on.
     * Absent in records published before they existed, hence the default.
     */
    oauthClients: z.array(OAuthClientId).default([]),
  }),
  z.object({ ...recordEnvelope, kind: z.literal('app'), data: AppPolicyData }),
  /**
   * id = app id; how brokers reach the app and the fingerprint each of its tools is pinned to.
   * Not policy data: brokers keep it beside the engine, never in data.directory.
   */
  z.object({
    ...recordEnvelope,
    kind: z.literal('app_connection'),
    data: z.object({
      transport: AppTransport,
      auth: AppAuth,
      tools: z.record(ToolName, ToolFingerprint),
    }),
  }),
  /** id = agent id; data = app id → grants. */
  z.object({
    ...recordEnvelope,
    kind: z.literal('entitlements'),
    data: z.record(z.string(), z.array(Grant)),
  }),
  /** id = user id; data = agent id → app id → grants the user delegated. */
  z.object({
    ...recordEnvelope,
    kind: z.literal('delegations'),
    data: z.record(z.string(), z.record(z.string(), z.array(Grant))),
  }),
  /** id = "current": the revision every earlier record of the snapshot belongs to. */
  z.object({
    ...recordEnvelope,
    kind: z.literal('revision'),
    data: z.object({ revision: z.number().int() }),
  }),
]);
export type DirectoryRecordV1 = z.infer<typeof DirectoryRecordV1>;

/** The Kafka key of a directory record. */
export function directoryRecordKey(kind: DirectoryRecordKind, id: string): string {
  return `${kind}:${id}`;
}

/**
 * The active policy bundle on the compacted topic `portcullis.policy.v1`, key `active`. It carries
 * the built bundle itself (tens of KiB), so a broker needs nothing but Kafka to bootstrap.
 */
export const PolicyActivatedV1 = z.object({
  type: z.literal('policy.activated'),
  version: z.literal(1),
  eventId: z.uuid(),
  occurredAt: z.iso.datetime({ offset: true }),
  bundleId: z.number().int().positive(),
  revision: z.string().min(1),
  digest: Sha256Hex,
  activatedBy: z.string().min(1),
  /** Set when this activation rolled back to an earlier bundle. */
  rollbackOf: z.string().min(1).optional(),
  bundleBase64: z.string().min(1),
});
export type PolicyActivatedV1 = z.infer<typeof PolicyActivatedV1>;

/**
 * One decision in OPA's decision-log shape (https://www.openpolicyagent.org/docs/management-decision-logs),
 * on `portcullis.decision-log.v1` for the audit path. Inputs are masked before they leave the
 * decision point: `/input/arguments` is replaced by the SHA-256 of its canonical JSON, and the
 * paths that were changed are listed in `masked`, as OPA does.
 */
export const DecisionLogV1 = z.object({
  type: z.literal('decision.logged'),
  version: z.literal(1),
  decision_id: z.uuid(),
  labels: z.object({ id: z.string().min(1), service: z.string().min(1) }),
  bundles: z.record(z.string(), z.object({ revision: z.string() })),
  path: z.string().min(1),
  input: z.record(z.string(), z.unknown()),
  result: z.unknown().optional(),
  masked: z.array(z.string()),
  erased: z.array(z.string()),
  timestamp: z.iso.datetime({ offset: true }),
  metrics: z.object({ timer_server_handler_ns: z.number().int().nonnegative() }).optional(),
});
export type DecisionLogV1 = z.infer<typeof DecisionLogV1>;
