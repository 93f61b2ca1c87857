import type { AppAuth, AppTransport, DirectoryRecordV1, Grant } from '@portcullis/contracts';
import type pg from 'pg';

/** The whole directory as topic records, keyed `<kind>:<id>`, read in one consistent snapshot. */
export interface DirectorySnapshot {
  revision: number;
  records: Map<string, DirectoryRecordV1>;
}

interface GrantRow {
  action_class: 'read' | 'write' | 'delete';
  expires_at: Date | null;
  conditions: Record<string, unknown>;
}

/**
 * One grant per row. `require_approval: true` in the stored conditions means "for this row's
 * action class"; the policy reads it as a list of classes.
 */
export function grantOf(row: GrantRow): Grant {
  const { require_approval: requireApproval, ...conditions } = row.conditions;
  return {
    ...(conditions as Omit<Grant, 'actions'>),
    actions: [row.action_class],
    ...(row.expires_at ? { expires_at: row.expires_at.getTime() } : {}),
    ...(requireApproval === true ? { require_approval: [row.action_class] } : {}),
  };
}

/** Reads the directory in one REPEATABLE READ snapshot, so every record agrees with the revision. */
export async function readDirectorySnapshot(pool: pg.Pool): Promise<DirectorySnapshot> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const revision = Number(
      (await client.query<{ value: string }>('SELECT value FROM directory.revision')).rows[0]?.value ?? 0,
    );
    const agents = await client.query<{
      id: string;
      name: string;
      owner: string;
      state: 'active' | 'suspended';
      client_type: string | null;
    }>('SELECT id, name, owner, state, client_type FROM directory.agents');
    const keys = await client.query<{ key_id: string; agent_id: string; secret_sha256: Buffer }>(
      'SELECT key_id, agent_id, secret_sha256 FROM directory.agent_keys WHERE revoked_at IS NULL ORDER BY key_id',
    );
    const oauthClients = await client.query<{ client_id: string; agent_id: string }>(
      'SELECT client_id, agent_id FROM directory.oauth_client_ids ORDER BY client_id',
    );
    const apps = await client.query<{ id: string; policy: Record<string, unknown> }>(
      'SELECT id, policy FROM directory.apps',
    );
    const entitlements = await client.query<GrantRow & { agent_id: string; app_id: string }>(
      'SELECT agent_id, app_id, action_class, expires_at, conditions FROM directory.entitlements ORDER BY agent_id, app_id, action_class',
    );
    const delegations = await client.query<GrantRow & { user_id: string; agent_id: string; app_id: string }>(
      `SELECT user_id, agent_id, app_id, action_class, expires_at, conditions FROM directory.delegations
       ORDER BY user_id, agent_id, app_id, action_class`,
    );
    const connections = await client.query<{ app_id: string; transport: AppTransport; auth: AppAuth }>(
      'SELECT app_id, transport, auth FROM directory.app_connections',
    );
    const pins = await client.query<{ app_id: string; tool_name: string; fingerprint: string }>(
      'SELECT app_id, tool_name, fingerprint FROM directory.tool_pins ORDER BY app_id, tool_name',
    );
    await client.query('COMMIT');

    const records = new Map<string, DirectoryRecordV1>();
    const keysByAgent = new Map<string, { keyId: string; secretSha256: string }[]>();
    for (const row of keys.rows) {
      const list = keysByAgent.get(row.agent_id) ?? [];
      list.push({ keyId: row.key_id, secretSha256: row.secret_sha256.toString('hex') });
      keysByAgent.set(row.agent_id, list);
    }
    const clientsByAgent = new Map<string, string[]>();
    for (const row of oauthClients.rows)
      clientsByAgent.set(row.agent_id, [...(clientsByAgent.get(row.agent_id) ?? []), row.client_id]);
    const base = { type: 'directory.record' as const, version: 1 as const, revision };
    for (const agent of agents.rows) {
      records.set(`agent:${agent.id}`, {
        ...base,
        kind: 'agent',
        id: agent.id,
        name: agent.name,
        data: {
          state: agent.state,
          owner: agent.owner,
          ...(agent.client_type ? { client_type: agent.client_type } : {}),
        },
        keys: keysByAgent.get(agent.id) ?? [],
        oauthClients: clientsByAgent.get(agent.id) ?? [],
      });
    }
    for (const app of apps.rows)
      records.set(`app:${app.id}`, { ...base, kind: 'app', id: app.id, data: app.policy });
    // Connections and pins travel in their own kind, never in the app's policy data (ADR 0042).
    const pinsByApp = new Map<string, Record<string, string>>();
    for (const pin of pins.rows) {
      // No prototype: a tool named `__proto__` is a pin like any other, not a lost assignment.
      const tools = pinsByApp.get(pin.app_id) ?? (Object.create(null) as Record<string, string>);
      tools[pin.tool_name] = pin.fingerprint;
      pinsByApp.set(pin.app_id, tools);
    }
    for (const connection of connections.rows)
      records.set(`app_connection:${connection.app_id}`, {
        ...base,
        kind: 'app_connection',
        id: connection.app_id,
        data: {
          transport: connection.transport,
          auth: connection.auth,
          tools: pinsByApp.get(connection.app_id) ?? {},
        },
      });
    const byAgent = new Map<string, Record<string, Grant[]>>();
    for (const row of entitlements.rows) {
      const apps = byAgent.get(row.agent_id) ?? {};
      apps[row.app_id] = [...(apps[row.app_id] ?? []), grantOf(row)];
      byAgent.set(row.agent_id, apps);
    }
    for (const [agentId, data] of byAgent)
      records.set(`entitlements:${agentId}`, { ...base, kind: 'entitlements', id: agentId, data });
    const byUser = new Map<string, Record<string, Record<string, Grant[]>>>();
    for (const row of delegations.rows) {
      const agentsOfUser = byUser.get(row.user_id) ?? {};
      const appsOfAgent = agentsOfUser[row.agent_id] ?? {};
      appsOfAgent[row.app_id] = [...(appsOfAgent[row.app_id] ?? []), grantOf(row)];
      agentsOfUser[row.agent_id] = appsOfAgent;
      byUser.set(row.user_id, agentsOfUser);
    }
    for (const [userId, data] of byUser)
      records.set(`delegations:${userId}`, { ...base, kind: 'delegations', id: userId, data });
    return { revision, records };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** The policy's data.directory document for a snapshot (what brokers assemble from the topic). */
export function policyDirectory(
  records: Map<string, DirectoryRecordV1>,
): Record<string, Record<string, unknown>> {
  const directory: Record<string, Record<string, unknown>> = {
    agents: {},
    apps: {},
    entitlements: {},
    delegations: {},
  };
  for (const record of records.values()) {
    // The revision marker and app connections (transport, tool pins) are not policy data.
    if (record.kind === 'revision' || record.kind === 'app_connection') continue;
    const section = record.kind === 'agent' ? 'agents' : record.kind === 'app' ? 'apps' : record.kind;
    directory[section]![record.id] = record.data;
  }
  return directory;
}
