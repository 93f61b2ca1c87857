import { z } from 'zod';

/** What a tool call does to the app's data; decides which entitlement it needs. */
export const ActionClass = z.enum(['read', 'write', 'delete']);
export type ActionClass = z.infer<typeof ActionClass>;

/** The outcome of one policy evaluation. */
export const DecisionOutcome = z.enum(['allow', 'deny']);
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
]);
export type ReasonCode = z.infer<typeof ReasonCode>;

export const Decision = z.object({
  decisionId: z.uuid(),
  outcome: DecisionOutcome,
  reasons: z.array(ReasonCode).min(1),
  /** Revision of the policy bundle that decided; `none` when no bundle was loaded. */
  policyRevision: z.string().min(1),
});
export type Decision = z.infer<typeof Decision>;
