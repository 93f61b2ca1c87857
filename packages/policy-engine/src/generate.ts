/**
 * Deterministic generators of directories and policy inputs, shared by the differential test and
 * the benchmark. A seeded PRNG makes every failure reproducible from its seed.
 */
import { seededRandom } from '@portcullis/testing';

export interface GeneratedDirectory {
  directory: Record<string, unknown>;
  agentIds: string[];
  appIds: string[];
  users: string[];
}

const CLASSES = ['read', 'write', 'delete'] as const;
const REPOS = ['acme/api', 'acme/web', 'acme/ops', 'evil/repo'];
const CLIENTS = ['claude-code', 'cursor', 'generic'];
/** A fixed "now" so generated expiries straddle it. */
export const GENERATED_NOW_MS = 1_800_000_000_000;

export interface DirectoryShape {
  agents: number;
  apps: number;
  /** Total grants across all agents (each a {actions, …} object under one agent and app). */
  entitlements: number;
  users: number;
  /** Share of grants that carry conditions (expiry, window, arguments, approval, client types). */
  conditionalShare: number;
}

/** Generates a directory in the shape data.directory takes (see docs/policy-authoring.md). */
export function generateDirectory(seed: number, shape: DirectoryShape): GeneratedDirectory {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const subset = <T>(items: readonly T[]): T[] => {
    const chosen = items.filter(() => random() < 0.5);
    return chosen.length > 0 ? chosen : [pick(items)];
  };
  const users = Array.from({ length: shape.users }, (_, i) => `user${i}@example.com`);
  const appIds = Array.from({ length: shape.apps }, (_, i) => `app-${i}`);
  const agentIds = Array.from({ length: shape.agents }, (_, i) => `agt_${i.toString(36)}`);
  const apps: Record<string, unknown> = {};
  for (const [index, id] of appIds.entries()) {
    const app: Record<string, unknown> = {};
    // DLP overrides on every third app, chosen by index so the seeded sequence (and with it every
    // generated directory used before DLP modes existed) stays the same.
    if (index % 3 === 1)
      app.dlp = { write: { arguments: { secrets: 'redact' } }, read: { results: { personal: 'allow' } } };
    const deletes = random();
    if (deletes < 0.2) app.delete = 'deny';
    else if (deletes < 0.5) app.delete = 'require_approval';
    if (random() < 0.5) app.approvers = subset(users.slice(0, 4));
    if (random() < 0.3) app.rate_limit_class = pick(['slow', 'bulk']);
    app.tools = {
      purge: { action_class: 'delete' },
      off: { disabled: true },
      profile: { redact: ['$.email'] },
    };
    apps[id] = app;
  }
  const grant = (): Record<string, unknown> => {
    const g: Record<string, unknown> = { actions: subset(CLASSES) };
    if (random() < shape.conditionalShare) {
      if (random() < 0.4) g.expires_at = GENERATED_NOW_MS + Math.floor((random() - 0.5) * 7_200_000);
      if (random() < 0.3)
        g.window = { days: subset([0, 1, 2, 3, 4, 5, 6]), from_minute: 480, to_minute: 1080 };
      if (random() < 0.4) g.arguments = { repository: subset(REPOS) };
      if (random() < 0.3) g.require_approval = subset(CLASSES);
      if (random() < 0.2) g.client_types = subset(CLIENTS);
      if (random() < 0.2) g.rate_limit_class = pick(['bulk', 'burst']);
      if (random() < 0.2) g.redact = ['$.secret'];
    }
    return g;
  };
  const agents: Record<string, unknown> = {};
  for (const id of agentIds)
    agents[id] = {
      state: random() < 0.95 ? 'active' : 'suspended',
      owner: pick(users),
      client_type: pick(CLIENTS),
    };
  const entitlements: Record<string, Record<string, unknown[]>> = {};
  for (let i = 0; i < shape.entitlements; i++) {
    const agentId = agentIds[i % agentIds.length]!;
    const appId = pick(appIds);
    const byApp = entitlements[agentId] ?? {};
    entitlements[agentId] = byApp;
    const list = byApp[appId] ?? [];
    list.push(grant());
    byApp[appId] = list;
  }
  const delegations: Record<string, Record<string, Record<string, unknown[]>>> = {};
  for (const user of users) {
    for (let i = 0; i < 3; i++) {
      const agentId = pick(agentIds);
      const appId = pick(appIds);
      const byAgent = delegations[user] ?? {};
      const byApp = byAgent[agentId] ?? {};
      byApp[appId] = [...(byApp[appId] ?? []), grant()];
      byAgent[agentId] = byApp;
      delegations[user] = byAgent;
    }
  }
  return { directory: { agents, apps, entitlements, delegations }, agentIds, appIds, users };
}

/** Generates policy inputs against a generated directory, including unknown and malformed ones. */
export function generateInputs(
  seed: number,
  generated: GeneratedDirectory,
  count: number,
): Record<string, unknown>[] {
  const random = seededRandom(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const delegations = generated.directory.delegations as Record<
    string,
    Record<string, Record<string, unknown>>
  >;
  const inputs: Record<string, unknown>[] = [];
  for (let i = 0; i < count; i++) {
    let user: string | undefined;
    let agentId = random() < 0.03 ? 'agt_unknown' : pick(generated.agentIds);
    let appId = random() < 0.03 ? 'app-unknown' : pick(generated.appIds);
    if (random() < 0.3) {
      user = pick(generated.users);
      // Aim most delegated calls at a real delegation so the intersection is exercised.
      const own = delegations[user];
      if (own && random() < 0.8) {
        agentId = pick(Object.keys(own));
        appId = pick(Object.keys(own[agentId]!));
      }
    }
    const input: Record<string, unknown> = {
      agent: { id: agentId, client_type: pick(CLIENTS) },
      app: { id: appId },
      tool: { name: pick(['list', 'get', 'push', 'purge', 'off', 'profile']) },
      action_class: random() < 0.02 ? 'admin' : pick(CLASSES),
      arguments: random() < 0.8 ? { repository: pick(REPOS) } : {},
      time: {
        now_ms: GENERATED_NOW_MS + Math.floor((random() - 0.5) * 7_200_000),
        weekday: Math.floor(random() * 7),
        minute_of_day: Math.floor(random() * 1440),
      },
      request: { id: `req-${i}` },
    };
    if (user) input.user = { id: user };
    inputs.push(input);
  }
  return inputs;
}
