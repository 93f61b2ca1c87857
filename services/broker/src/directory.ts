import type { PolicyEngine } from '@portcullis/policy-engine';
import type { Logger } from '@portcullis/runtime';
import type pg from 'pg';

export interface Agent {
  id: string;
  name: string;
  owner: string;
  state: 'active' | 'suspended';
  /** The kind of MCP client the agent is (the policy may restrict grants to some); not yet stored. */
  clientType?: string;
}

interface KeyRecord {
  agentId: string;
  secretSha256: Buffer;
}

interface Snapshot {
  revision: string;
  agents: Map<string, Agent>;
  keys: Map<string, KeyRecord>;
}

/**
 * The broker's in-memory copy of the directory (agents, their key hashes, entitlements). It polls
 * one revision counter and reloads everything in one consistent read when it changes, then hands
 * the agents and entitlements to the policy engine as data.directory.
 *
 * Until the decision service publishes the directory on compacted Kafka topics (policy issue),
 * the broker reads the decision service's `directory` schema directly, read-only.
 */
export class DirectoryCache {
  readonly #pool: pg.Pool;
  readonly #engine: PolicyEngine;
  readonly #logger: Logger;
  #snapshot: Snapshot | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastError: Error | undefined;

  constructor(pool: pg.Pool, engine: PolicyEngine, logger: Logger) {
    this.#pool = pool;
    this.#engine = engine;
    this.#logger = logger;
  }

  /** Loads the first snapshot (throws if it cannot), then polls for changes every `refreshMs`. */
  async start(refreshMs: number): Promise<void> {
    await this.refresh();
    const tick = () => {
      this.refresh()
        .catch((error: Error) => {
          if (!this.#lastError)
            this.#logger.error({ err: error }, 'directory refresh failed; keeping the last snapshot');
          this.#lastError = error;
        })
        .finally(() => {
          if (this.#timer) this.#timer = setTimeout(tick, refreshMs);
        });
    };
    this.#timer = setTimeout(tick, refreshMs);
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Throws unless a snapshot is loaded and the last refresh succeeded; used by readiness. */
  check(): void {
    if (!this.#snapshot) throw new Error('no directory snapshot loaded');
    if (this.#lastError) throw new Error(`directory refresh failing: ${this.#lastError.message}`);
  }

  key(keyId: string): KeyRecord | undefined {
    return this.#snapshot?.keys.get(keyId);
  }

  agent(agentId: string): Agent | undefined {
    return this.#snapshot?.agents.get(agentId);
  }

  /** Reloads when the directory revision moved. */
  async refresh(): Promise<void> {
    const client = await this.#pool.connect();
    try {
      // One snapshot for all reads, so agents, keys and entitlements agree with the revision.
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const { rows: revisionRows } = await client.query<{ value: string }>(
        'SELECT value FROM directory.revision',
      );
      const revision = revisionRows[0]?.value ?? '0';
      if (revision === this.#snapshot?.revision) {
        await client.query('COMMIT');
        this.#lastError = undefined;
        return;
      }
      const [agents, keys, entitlements, apps] = await Promise.all([
        client.query<Agent>('SELECT id, name, owner, state FROM directory.agents'),
        client.query<{ key_id: string; agent_id: string; secret_sha256: Buffer }>(
          'SELECT key_id, agent_id, secret_sha256 FROM directory.agent_keys WHERE revoked_at IS NULL',
        ),
        client.query<{ agent_id: string; app_id: string; classes: string[] }>(
          `SELECT agent_id, app_id, array_agg(action_class ORDER BY action_class) AS classes
           FROM directory.entitlements GROUP BY agent_id, app_id`,
        ),
        client.query<{ id: string }>('SELECT id FROM directory.apps'),
      ]);
      await client.query('COMMIT');
      this.#install(revision, agents.rows, keys.rows, entitlements.rows, apps.rows);
      this.#lastError = undefined;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    } finally {
      client.release();
    }
  }

  #install(
    revision: string,
    agentRows: Agent[],
    keyRows: { key_id: string; agent_id: string; secret_sha256: Buffer }[],
    entitlementRows: { agent_id: string; app_id: string; classes: string[] }[],
    appRows: { id: string }[],
  ): void {
    const agents = new Map(agentRows.map((agent) => [agent.id, agent]));
    const keys = new Map(
      keyRows.map((k) => [k.key_id, { agentId: k.agent_id, secretSha256: k.secret_sha256 }]),
    );
    // The policy's data.directory document (docs/policy-authoring.md): one unconditional grant per
    // agent and app, holding the action classes the schema stores.
    const entitlements: Record<string, Record<string, { actions: string[] }[]>> = {};
    for (const row of entitlementRows) {
      entitlements[row.agent_id] ??= {};
      entitlements[row.agent_id]![row.app_id] = [{ actions: row.classes }];
    }
    const policyAgents = Object.fromEntries(agentRows.map((a) => [a.id, { state: a.state, owner: a.owner }]));
    const apps = Object.fromEntries(appRows.map((app) => [app.id, {}]));
    // Engine first: a key that authenticates must never meet a policy that has not seen its agent.
    this.#engine.setDirectory({ agents: policyAgents, apps, entitlements });
    this.#snapshot = { revision, agents, keys };
    this.#logger.info({ revision, agents: agents.size, keys: keys.size }, 'directory snapshot loaded');
  }
}
