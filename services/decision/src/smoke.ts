/**
 * The smoke set every bundle must pass before it is stored: the invariants no policy revision may
 * break (deny by default, suspended agents and unknown apps denied, an entitled read allowed, the
 * intersection for delegated calls). A policy change that should break one of these is a change to
 * the product, made here in the same commit.
 */
export const SMOKE_DIRECTORY = {
  agents: {
    agt_smoke: { state: 'active', owner: 'owner@example.com' },
    agt_suspended: { state: 'suspended', owner: 'owner@example.com' },
  },
  apps: { smoke: {} },
  entitlements: {
    agt_smoke: { smoke: [{ actions: ['read'] }] },
    agt_suspended: { smoke: [{ actions: ['read'] }] },
  },
  delegations: {},
};

const call = (agentId: string, appId: string, actionClass: string, user?: string) => ({
  agent: { id: agentId },
  app: { id: appId },
  tool: { name: 'smoke_tool' },
  action_class: actionClass,
  arguments: {},
  time: { now_ms: 1_800_000_000_000, weekday: 3, minute_of_day: 600 },
  ...(user ? { user: { id: user } } : {}),
});

/** `expected` is an outcome, or `deny` optionally followed by `:reason`. */
export const SMOKE_CASES: { name: string; input: Record<string, unknown>; expected: string }[] = [
  { name: 'entitled read is allowed', input: call('agt_smoke', 'smoke', 'read'), expected: 'allow' },
  {
    name: 'write without entitlement is denied',
    input: call('agt_smoke', 'smoke', 'write'),
    expected: 'deny',
  },
  { name: 'unknown agent is denied', input: call('agt_nobody', 'smoke', 'read'), expected: 'deny' },
  { name: 'suspended agent is denied', input: call('agt_suspended', 'smoke', 'read'), expected: 'deny' },
  { name: 'unknown app is denied', input: call('agt_smoke', 'nowhere', 'read'), expected: 'deny' },
  {
    name: 'delegated call without delegation is denied',
    input: call('agt_smoke', 'smoke', 'read', 'someone@example.com'),
    expected: 'deny',
  },
];
