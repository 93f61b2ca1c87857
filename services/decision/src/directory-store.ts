import { randomBytes } from 'node:crypto';
import { ActionClass, generateAgentKey } from '@portcullis/contracts';
import { withTransaction } from '@portcullis/db';
import type pg from 'pg';
import { z } from 'zod';

const AgentName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._-]{0,99}$/, 'lowercase letters, digits, dot, dash, underscore');
const AppId = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'lowercase letters, digits and dashes, starting with a letter');

/** A declarative directory: apps, and agents with their entitlements per app. */
export const DirectorySeed = z.object({
  apps: z.array(z.object({ id: AppId, name: z.string().min(1) })).default([]),
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
   * agent's entitlements become exactly the ones in the seed.
   */
  async applySeed(seed: DirectorySeed, grantedBy: string): Promise<AgentRecord[]> {
    return withTransaction(this.#pool, async (client) => {
      for (const app of seed.apps) {
        await client.query(
          'INSERT INTO directory.apps (id, name) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name',
          [app.id, app.name],
        );
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

function newAgentId(): string {
  return `agt_${randomBytes(10).toString('hex')}`;
}
