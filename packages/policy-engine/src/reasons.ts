import type { ReasonCode } from '@portcullis/contracts';

/** What each reason code means, for explanations (`portcullis policy eval`) and the docs. */
export const REASON_DESCRIPTIONS: Record<ReasonCode, string> = {
  allowed: 'The call is allowed: a grant of the agent (and, for delegated calls, of the user) covers it.',
  no_entitlement: 'The agent holds no grant for this app and action class.',
  unknown_agent: 'The agent is not in the directory.',
  agent_suspended: 'The agent is suspended; it is denied whatever it holds.',
  no_policy: 'No policy bundle is loaded: the engine denies everything (fail closed).',
  no_directory: 'No directory snapshot is loaded: the engine denies everything (fail closed).',
  policy_error: 'The policy failed or returned something unexpected: denied (fail closed).',
  unknown_app: 'The app is not in the directory.',
  invalid_action_class: 'The action class is not read, write or delete.',
  tool_disabled: 'An admin switched this tool off for the app.',
  delete_denied: 'The app does not allow deletes through agents.',
  entitlement_expired:
    "The agent's grant that would cover the call has expired (or the call carries no time).",
  outside_time_window: "The call falls outside the time window of the agent's grant (UTC).",
  argument_not_permitted: "An argument is missing or has a value the agent's grant does not allow.",
  client_type_not_permitted: "The agent's client type is not one the grant admits.",
  not_delegated: 'The agent acts for a user who delegated nothing covering this app and action class to it.',
  delegation_expired: "The user's delegation that would cover the call has expired.",
  delegation_outside_time_window: "The call falls outside the time window of the user's delegation.",
  delegation_argument_not_permitted:
    "An argument is missing or has a value the user's delegation does not allow.",
  delegation_client_type_not_permitted: "The agent's client type is not one the user's delegation admits.",
  no_eligible_approver:
    'The call needs an approval, but nobody other than the requester may give it: denied.',
  read_requires_approval: 'Reads under this grant need a human approval first.',
  write_requires_approval: 'Writes under this grant need a human approval first.',
  delete_requires_approval: 'Deletes need approval from someone other than the requesting user.',
};
