import { randomBytes } from 'node:crypto';
import {
  ActionClass,
  AppAuth,
  AppPolicyData,
  type AppTransport,
  AppTransport as AppTransportSchema,
  generateAgentKey,
  RedactPath,
  TimeWindow,
} from '@portcullis/contracts';
import { withTransaction } from '@portcullis/db';
import type pg from 'pg';
import { z } from 'zod';
import { AppConnections } from './app-connections.ts';
import type { ListedTools } from './upstream-tools.ts';

const AgentName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,99}$/, 'lowercase letters, digits, dot, dash, underscore');
const AppId = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter');

/** A declarative directory: apps, and agents with their entitlements per app. */
export const DirectorySeed = z.object({
  apps: z
    .array(
      z.object({
        id: AppId,
        name: z.string().min(1),
        /** The app's upstream; its tools are listed and pinned when the seed is applied. */
        connection: z
          .strictObject({ transport: AppTransportSchema, auth: AppAuth.default({ scheme: 'none' }) })
          .optional(),
      }),
    )
    .default([]),
  agents: z
    .array(
      z.object({
        name: AgentName,
        owner: z.string().min(1).max(320),
        state: z.enum(['active', 'suspended']).default('active'),
        entitlements: z.record(AppId, z.array(ActionClass)).default({}),
      }),
    )
    .default([]),
});
export type DirectorySeed = z.infer<typeof DirectorySeed>;

export interface AgentRecord {
  id: string;
  name: string;
  owner: string;
  state: string;
}

/** Writes to the directory schema. The decision service is its only writer. */
export class DirectoryStore {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /**
   * Applies a seed idempotently: apps and agents are upserted by id and name, and each listed
   * agent's entitlements become exactly the ones in the seed. An app with a connection is
   * registered: `listTools` lists its upstream's tools first (from where this process runs), and
   * if any upstream cannot be listed nothing of the seed is written.
   */
  async applySeed(
    seed: DirectorySeed,
    grantedBy: string,
    listTools?: (transport: AppTransport) => Promise<ListedTools>,
  ): Promise<AgentRecord[]> {
    const listed = new Map<string, ListedTools>();
    for (const app of seed.apps) {
      if (!app.connection) continue;
      if (!listTools) throw new Error(`app ${app.id} has a connection but no upstream lister was given`);
      listed.set(app.id, await listTools(app.connection.transport));
    }
    const apps = new AppConnections(this.#pool);
    return withTransaction(this.#pool, async (client) => {
      for (const app of seed.apps) {
        await client.query(
          'INSERT INTO directory.apps (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name',
          [app.id, app.name],
        );
        if (app.connection)
          await apps.register(app.id, app.connection, listed.get(app.id)!, grantedBy, undefined, client);
      }
      const agents: AgentRecord[] = [];
      for (const agent of seed.agents) {
        const { rows } = await client.query<AgentRecord>(
          `INSERT INTO directory.agents (id, name, owner, state) VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, state = EXCLUDED.state, updated_at = now()
           RETURNING id, name, owner, state`,
          [newAgentId(), agent.name, agent.owner, agent.state],
        );
        const record = rows[0]!;
        agents.push(record);
        await client.query('DELETE FROM directory.entitlements WHERE agent_id = $1', [record.id]);
        for (const [appId, classes] of Object.entries(agent.entitlements)) {
          for (const actionClass of new Set(classes)) {
            await client.query(
              'INSERT INTO directory.entitlements (agent_id, app_id, action_class, granted_by) VALUES ($1, $2, $3, $4)',
              [record.id, appId, actionClass, grantedBy],
            );
          }
        }
      }
      return agents;
    });
  }

  /** Issues a new key for an agent; returns the key, which is not stored and cannot be shown again. */
  async issueKey(agentName: string): Promise<{ agent: AgentRecord; key: string; keyId: string }> {
    const agent = await this.findAgent(agentName);
    if (!agent) throw new Error(`no agent named ${agentName}`);
    const issued = generateAgentKey();
    await this.#pool.query(
      'INSERT INTO directory.agent_keys (key_id, agent_id, secret_sha256) VALUES ($1, $2, $3)',
      [issued.keyId, agent.id, issued.secretSha256],
    );
    return { agent, key: issued.key, keyId: issued.keyId };
  }

  /**
   * Revokes one of an agent's keys. Brokers drop it with the next directory update; revoking twice
   * is not an error, a key of another agent is (it is reported as not found).
   */
  async revokeKey(agentName: string, keyId: string): Promise<void> {
    const { rowCount } = await this.#pool.query(
      `UPDATE directory.agent_keys k SET revoked_at = COALESCE(k.revoked_at, now())
       FROM directory.agents a WHERE a.id = k.agent_id AND a.name = $1 AND k.key_id = $2`,
      [agentName, keyId],
    );
    if (rowCount === 0) throw new Error(`agent ${agentName} has no key ${keyId}`);
  }

  /**
   * Replaces the OAuth client ids registered on an agent. A client id already registered on
   * another agent is refused (OAuthClientTakenError) and nothing changes.
   */
  async setOAuthClients(agentName: string, clientIds: readonly string[]): Promise<AgentRecord> {
    return withTransaction(this.#pool, async (client) => {
      const { rows } = await client.query<AgentRecord>(
        // Locks the agent row, so two concurrent replacements for one agent apply one after the other.
        'SELECT id, name, owner, state FROM directory.agents WHERE name = $1 FOR UPDATE',
        [agentName],
      );
      const agent = rows[0];
      if (!agent) throw new AgentNotFoundError(agentName);
      const taken = await client.query<{ client_id: string; name: string }>(
        `SELECT c.client_id, a.name FROM directory.oauth_client_ids c JOIN directory.agents a ON a.id = c.agent_id
         WHERE c.client_id = ANY($1::text[]) AND c.agent_id <> $2 ORDER BY c.client_id`,
        [clientIds, agent.id],
      );
      if (taken.rows.length > 0)
        throw new OAuthClientTakenError(taken.rows[0]!.client_id, taken.rows[0]!.name);
      await client.query('DELETE FROM directory.oauth_client_ids WHERE agent_id = $1', [agent.id]);
      try {
        await client.query(
          'INSERT INTO directory.oauth_client_ids (client_id, agent_id) SELECT unnest($1::text[]), $2',
          [[...new Set(clientIds)], agent.id],
        );
      } catch (error) {
        // Another agent registered the same id between the check and the insert.
        if ((error as { code?: string }).code === '23505')
          throw new OAuthClientTakenError(undefined, undefined);
        throw error;
      }
      return agent;
    });
  }

  async setAgentState(agentName: string, state: 'active' | 'suspended'): Promise<void> {
    const { rowCount } = await this.#pool.query(
      'UPDATE directory.agents SET state = $2, updated_at = now() WHERE name = $1',
      [agentName, state],
    );
    if (rowCount === 0) throw new Error(`no agent named ${agentName}`);
  }

  async findAgent(name: string): Promise<AgentRecord | undefined> {
    const { rows } = await this.#pool.query<AgentRecord>(
      'SELECT id, name, owner, state FROM directory.agents WHERE name = $1',
      [name],
    );
    return rows[0];
  }
}

export class AgentNotFoundError extends Error {
  constructor(name: string) {
    super(`no agent named ${name}`);
    this.name = 'AgentNotFoundError';
  }
}

/** An OAuth client id is registered on another agent; a client id identifies one agent only. */
export class OAuthClientTakenError extends Error {
  constructor(clientId: string | undefined, agentName: string | undefined) {
    super(
      clientId
        ? `OAuth client ${clientId} is already registered on agent ${agentName}`
        : 'one of the OAuth clients was registered on another agent meanwhile',
    );
    this.name = 'OAuthClientTakenError';
  }
}

/**
 * An app's policy as the API takes it: the contract's AppPolicyData, strict at every level, so that
 * a misspelt field (`disabeld` for a tool) is a 400 rather than a setting silently dropped.
 */
export const AppPolicyInput = AppPolicyData.extend({
  tools: z.record(z.string().min(1), AppPolicyData.shape.tools.unwrap().valueType.strict()).optional(),
}).strict();

/**
 * A grant as the API takes it: action classes plus optional conditions. Strict: a field it does
 * not know (say `require_approval`, the policy's spelling) is a 400, never a grant quietly stored
 * without the condition meant.
 */
export const GrantInput = z.strictObject({
  actions: z.array(ActionClass).min(1),
  // The policy's data takes it as positive Unix ms: a time before 1970 would be a record no broker reads.
  expiresAt: z.iso
    .datetime({ offset: true })
    .refine((value) => Date.parse(value) > 0, 'a time after 1970-01-01')
    .optional(),
  // A window whose end comes before its start runs overnight (rego/portcullis/authz/time_window.rego);
  // one whose end is its start would hold never: refused rather than stored as a silent deny.
  window: TimeWindow.strict()
    .refine((window) => window.from_minute !== window.to_minute, {
      message:
        'an empty window: from_minute equals to_minute (a window ending before it starts runs overnight)',
    })
    .refine((window) => window.from_minute < 1440, {
      message: 'from_minute is a minute of the day, 0 to 1439 (to_minute may be 1440: midnight)',
    })
    .optional(),
  arguments: z.record(z.string().min(1), z.array(z.unknown()).min(1)).optional(),
  clientTypes: z.array(z.string().min(1)).min(1).optional(),
  requireApproval: z.boolean().optional(),
  rateLimitClass: z.string().min(1).optional(),
  redact: z.array(RedactPath).optional(),
});
export type GrantInput = z.infer<typeof GrantInput>;

function conditionsOf(grant: GrantInput): Record<string, unknown> {
  return {
    ...(grant.window ? { window: grant.window } : {}),
    ...(grant.arguments ? { arguments: grant.arguments } : {}),
    ...(grant.clientTypes ? { client_types: grant.clientTypes } : {}),
    ...(grant.requireApproval ? { require_approval: true } : {}),
    ...(grant.rateLimitClass ? { rate_limit_class: grant.rateLimitClass } : {}),
    ...(grant.redact ? { redact: grant.redact } : {}),
  };
}

/** Writes of the HTTP API beyond the seed: each one a single transaction. */
export class DirectoryAdmin {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  async listAgents(): Promise<(AgentRecord & { clientType: string | null; oauthClients: string[] })[]> {
    const { rows } = await this.#pool.query<
      AgentRecord & { clientType: string | null; oauthClients: string[] }
    >(
      `SELECT a.id, a.name, a.owner, a.state, a.client_type AS "clientType",
         ARRAY(SELECT c.client_id FROM directory.oauth_client_ids c WHERE c.agent_id = a.id ORDER BY c.client_id)
           AS "oauthClients"
       FROM directory.agents a ORDER BY a.name`,
    );
    return rows;
  }

  /**
   * Creates or updates an agent. On an update, `state` and `clientType` left undefined keep their
   * values (null clears the client type); a new agent is active unless `state` says otherwise.
   */
  async upsertAgent(
    name: string,
    owner: string,
    state?: 'active' | 'suspended',
    clientType?: string | null,
  ): Promise<AgentRecord> {
    const { rows } = await this.#pool.query<AgentRecord>(
      `INSERT INTO directory.agents (id, name, owner, state, client_type)
       VALUES ($1, $2, $3, COALESCE($4, 'active'), $5)
       ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner,
         state = COALESCE($4, directory.agents.state),
         client_type = CASE WHEN $6 THEN EXCLUDED.client_type ELSE directory.agents.client_type END,
         updated_at = now()
       RETURNING id, name, owner, state`,
      [newAgentId(), name, owner, state ?? null, clientType ?? null, clientType !== undefined],
    );
    return rows[0]!;
  }

  /** Creates or updates an app; on an update, a policy left undefined keeps its value. */
  async upsertApp(id: string, name: string, policy?: Record<string, unknown>): Promise<void> {
    await this.#pool.query(
      `INSERT INTO directory.apps (id, name, policy) VALUES ($1, $2, COALESCE($3, '{}'::jsonb))
       ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
         policy = COALESCE($3, directory.apps.policy)`,
      [id, name, policy ?? null],
    );
  }

  /** Replaces the agent's grants on one app (an empty list revokes them all). */
  async setEntitlements(
    agentId: string,
    appId: string,
    grants: GrantInput[],
    grantedBy: string,
  ): Promise<void> {
    await withTransaction(this.#pool, async (client) => {
      await client.query('DELETE FROM directory.entitlements WHERE agent_id = $1 AND app_id = $2', [
        agentId,
        appId,
      ]);
      for (const grant of grants)
        for (const actionClass of new Set(grant.actions))
          await client.query(
            `INSERT INTO directory.entitlements (agent_id, app_id, action_class, granted_by, expires_at, conditions)
             VALUES ($1, $2, $3, $4, $5, $6)`,
            [agentId, appId, actionClass, grantedBy, grant.expiresAt ?? null, conditionsOf(grant)],
          );
    });
  }

  /** Replaces what a user delegated to an agent on one app. */
  async setDelegations(userId: string, agentId: string, appId: string, grants: GrantInput[]): Promise<void> {
    await withTransaction(this.#pool, async (client) => {
      await client.query(
        'DELETE FROM directory.delegations WHERE user_id = $1 AND agent_id = $2 AND app_id = $3',
        [userId, agentId, appId],
      );
      for (const grant of grants)
        for (const actionClass of new Set(grant.actions))
          await client.query(
            `INSERT INTO directory.delegations (user_id, agent_id, app_id, action_class, expires_at, conditions)
             VALUES ($1, $2, $3, $4, $5, $6)`,
            [userId, agentId, appId, actionClass, grant.expiresAt ?? null, conditionsOf(grant)],
          );
    });
  }
}

function newAgentId(): string {
  return `agt_${randomBytes(10).toString('hex')}`;
}
