import { z } from 'zod';

/** What a tool call does to the app's data; decides which entitlement it needs. */
export const ActionClass = z.enum(['read', 'write', 'delete']);
export type ActionClass = z.infer<typeof ActionClass>;

/**
 * The outcome of one policy evaluation. `require_approval` means: not executed until one of the
 * decision's approvers approves this exact call. Values are appended, never renamed.
 */
export const DecisionOutcome = z.enum(['allow', 'deny', 'require_approval']);
export type DecisionOutcome = z.infer<typeof DecisionOutcome>;

/**
 * Stable reason codes. Agents, dashboards and auditors match on these strings, so a code is never
 * renamed or reused for another meaning; new codes are appended.
 */
export const ReasonCode = z.enum([
  'allowed',
  'no_entitlement',
  'unknown_agent',
  'agent_suspended',
  'no_policy',
  'no_directory',
  'policy_error',
  // Added with the policy model of issue 3 (see docs/policy-authoring.md for each meaning).
  'unknown_app',
  'invalid_action_class',
  'tool_disabled',
  'delete_denied',
  'entitlement_expired',
  'outside_time_window',
  'argument_not_permitted',
  'client_type_not_permitted',
  'not_delegated',
  'delegation_expired',
  'delegation_outside_time_window',
  'delegation_argument_not_permitted',
  'delegation_client_type_not_permitted',
  'no_eligible_approver',
  'read_requires_approval',
  'write_requires_approval',
  'delete_requires_approval',
]);
export type ReasonCode = z.infer<typeof ReasonCode>;

/**
 * What the enforcement point does with DLP findings of one category: let them through, replace
 * them with typed placeholders, or refuse the call (arguments) or withhold the result (results).
 */
export const DlpMode = z.enum(['allow', 'redact', 'block']);
export type DlpMode = z.infer<typeof DlpMode>;

/**
 * The mode per category of finding. `secrets`: cloud keys, API tokens, private keys, JWTs;
 * `personal`: e-mail addresses, card numbers, national identifiers (packages/dlp `FindingKind`).
 */
export const DlpCategoryModes = z.strictObject({ secrets: DlpMode, personal: DlpMode });
export type DlpCategoryModes = z.infer<typeof DlpCategoryModes>;

/** The DLP obligation of a decision: modes for the call's arguments and for its result. */
export const DlpObligation = z.strictObject({ arguments: DlpCategoryModes, results: DlpCategoryModes });
export type DlpObligation = z.infer<typeof DlpObligation>;

/** An app's DLP settings for one action class: any leaf given wins over the bundle default. */
export const DlpOverride = z.strictObject({
  arguments: DlpCategoryModes.partial().optional(),
  results: DlpCategoryModes.partial().optional(),
});
export type DlpOverride = z.infer<typeof DlpOverride>;

export const Decision = z.object({
  decisionId: z.uuid(),
  outcome: DecisionOutcome,
  reasons: z.array(ReasonCode).min(1),
  /** Revision of the policy bundle that decided; `none` when no bundle was loaded. */
  policyRevision: z.string().min(1),
  /** Who may approve the call; present when the outcome is require_approval. */
  approvers: z.array(z.string().min(1)).optional(),
  /** What the enforcement point must do besides allowing: redactions, rate-limit class, DLP modes. */
  obligations: z
    .object({
      rateLimitClass: z.string().min(1),
      redact: z.array(z.string().min(1)),
      /** DLP modes the enforcement point applied; absent in decisions recorded before they existed. */
      dlp: DlpObligation.optional(),
    })
    .optional(),
});
export type Decision = z.infer<typeof Decision>;
