import {
  type AppAuth,
  type AppConnection,
  type AppTransport,
  type ToolDefinition,
  ToolDefinitionChangedV1,
  toolFingerprint,
} from '@portcullis/contracts';
import { withTransaction } from '@portcullis/db';
import type pg from 'pg';
import type { ListedTools, PinnedTool } from './upstream-tools.ts';

/**
 * Apps' upstream connections and tool pins in Postgres (directory.app_connections, tool_pins,
 * tool_changes). Every write bumps the directory revision, so the publisher sends the app's
 * `app_connection` record to brokers; pending changes are not published.
 */

export interface AppSummary {
  id: string;
  name: string;
  policy: Record<string, unknown>;
  connection: (AppConnection & { pinnedBy: string; pinnedAt: string }) | null;
  /** tool name → pin */
  tools: Record<string, { fingerprint: string; pinnedBy: string; pinnedAt: string }>;
  pendingChanges: number;
}

export interface ToolChange {
  tool: string;
  status: 'pending' | 'approved' | 'superseded';
  pinnedFingerprint: string | null;
  observedFingerprint: string;
  definition: ToolDefinition;
  /** The definition pinned now, for comparison (absent for a tool that has no pin). */
  pinnedDefinition: ToolDefinition | null;
  reportedBy: string;
  firstSeenAt: string;
  lastSeenAt: string;
  resolvedBy: string | null;
  resolvedAt: string | null;
}

/** Why a write was refused; the API maps each to its problem+json code. */
export class AppConnectionError extends Error {
  readonly code: 'app_not_found' | 'not_registered' | 'no_pending_change';

  constructor(code: 'app_not_found' | 'not_registered' | 'no_pending_change', message: string) {
    super(message);
    this.name = 'AppConnectionError';
    this.code = code;
  }
}

export type ChangeOutcome = 'recorded' | 'duplicate' | 'already_pinned' | 'unknown_app' | 'invalid';

export class AppConnections {
  readonly #pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.#pool = pool;
  }

  /**
   * Stores an app's connection and replaces all its pins with the tools just listed (registration
   * and re-approval are the same act: the admin vouches for what the upstream serves now). Pending
   * changes of the app are superseded. With `createName`, a missing app is created first.
   */
  async register(
    appId: string,
    connection: { transport: AppTransport; auth: AppAuth },
    listed: ListedTools,
    actor: string,
    createName?: string,
    client?: pg.PoolClient,
  ): Promise<void> {
    const write = async (db: pg.PoolClient) => {
      if (createName !== undefined)
        await db.query('INSERT INTO directory.apps (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [
          appId,
          createName,
        ]);
      const app = await db.query('SELECT 1 FROM directory.apps WHERE id = $1 FOR UPDATE', [appId]);
      if (app.rowCount === 0) throw new AppConnectionError('app_not_found', `no app ${appId}`);
      await db.query(
        `INSERT INTO directory.app_connections (app_id, transport, auth, pinned_by) VALUES ($1, $2, $3, $4)
         ON CONFLICT (app_id) DO UPDATE SET transport = EXCLUDED.transport, auth = EXCLUDED.auth,
           pinned_by = EXCLUDED.pinned_by, pinned_at = now()`,
        [appId, connection.transport, connection.auth, actor],
      );
      await db.query('DELETE FROM directory.tool_pins WHERE app_id = $1', [appId]);
      for (const [name, pin] of listed.tools) await insertPin(db, appId, name, pin, actor);
      await db.query(
        `UPDATE directory.tool_changes SET status = 'superseded', resolved_by = $2, resolved_at = now()
         WHERE app_id = $1 AND status = 'pending'`,
        [appId, actor],
      );
    };
    if (client) await write(client);
    else await withTransaction(this.#pool, write);
  }

  /** Every app with its connection (if any), its pins and how many changes await an admin. */
  async list(appId?: string): Promise<AppSummary[]> {
    const { rows } = await this.#pool.query<{
      id: string;
      name: string;
      policy: Record<string, unknown>;
      transport: AppTransport | null;
      auth: AppAuth | null;
      pinned_by: string | null;
      pinned_at: Date | null;
      pending: string;
    }>(
      `SELECT a.id, a.name, a.policy, c.transport, c.auth, c.pinned_by, c.pinned_at,
         (SELECT count(*) FROM directory.tool_changes t WHERE t.app_id = a.id AND t.status = 'pending') AS pending
       FROM directory.apps a LEFT JOIN directory.app_connections c ON c.app_id = a.id
       WHERE $1::text IS NULL OR a.id = $1 ORDER BY a.id`,
      [appId ?? null],
    );
    const pins = await this.#pool.query<{
      app_id: string;
      tool_name: string;
      fingerprint: string;
      pinned_by: string;
      pinned_at: Date;
    }>(
      `SELECT app_id, tool_name, fingerprint, pinned_by, pinned_at FROM directory.tool_pins
       WHERE $1::text IS NULL OR app_id = $1 ORDER BY app_id, tool_name`,
      [appId ?? null],
    );
    return rows.map((row) => ({
      id: row.id,
      name: row.name,
      policy: row.policy,
      connection:
        row.transport && row.auth
          ? {
              transport: row.transport,
              auth: row.auth,
              pinnedBy: row.pinned_by!,
              pinnedAt: row.pinned_at!.toISOString(),
            }
          : null,
      tools: Object.fromEntries(
        pins.rows
          .filter((pin) => pin.app_id === row.id)
          .map((pin) => [
            pin.tool_name,
            { fingerprint: pin.fingerprint, pinnedBy: pin.pinned_by, pinnedAt: pin.pinned_at.toISOString() },
          ]),
      ),
      pendingChanges: Number(row.pending),
    }));
  }

  /** The app's reported tool changes, pending first, newest first. */
  async toolChanges(appId: string, options: { all?: boolean } = {}): Promise<ToolChange[]> {
    const exists = await this.#pool.query('SELECT 1 FROM directory.apps WHERE id = $1', [appId]);
    if (exists.rowCount === 0) throw new AppConnectionError('app_not_found', `no app ${appId}`);
    const { rows } = await this.#pool.query<{
      tool_name: string;
      status: ToolChange['status'];
      pinned_fingerprint: string | null;
      observed_fingerprint: string;
      definition: ToolDefinition;
      pinned_definition: ToolDefinition | null;
      reported_by: string;
      first_seen_at: Date;
      last_seen_at: Date;
      resolved_by: string | null;
      resolved_at: Date | null;
    }>(
      `SELECT c.tool_name, c.status, c.pinned_fingerprint, c.observed_fingerprint, c.definition,
         p.definition AS pinned_definition, c.reported_by, c.first_seen_at, c.last_seen_at,
         c.resolved_by, c.resolved_at
       FROM directory.tool_changes c
       LEFT JOIN directory.tool_pins p ON p.app_id = c.app_id AND p.tool_name = c.tool_name
       WHERE c.app_id = $1 AND ($2 OR c.status = 'pending')
       ORDER BY c.status = 'pending' DESC, c.last_seen_at DESC, c.tool_name`,
      [appId, options.all === true],
    );
    return rows.map((row) => ({
      tool: row.tool_name,
      status: row.status,
      pinnedFingerprint: row.pinned_fingerprint,
      observedFingerprint: row.observed_fingerprint,
      definition: row.definition,
      pinnedDefinition: row.pinned_definition,
      reportedBy: row.reported_by,
      firstSeenAt: row.first_seen_at.toISOString(),
      lastSeenAt: row.last_seen_at.toISOString(),
      resolvedBy: row.resolved_by,
      resolvedAt: row.resolved_at?.toISOString() ?? null,
    }));
  }

  /**
   * Records reported changes in one transaction, idempotently: one row per (app, tool, observed
   * fingerprint); a repeat (the same event redelivered, or another broker's report) only moves
   * last_seen_at.
   * A report of what is pinned now (a broker that had not yet seen an approval) is ignored.
   */
  async recordChanges(events: unknown[]): Promise<ChangeOutcome[]> {
    return withTransaction(this.#pool, async (db) => {
      const outcomes: ChangeOutcome[] = [];
      for (const raw of events) {
        // One event the database refuses (a value it cannot store) must not fail the batch: it
        // would be redelivered for ever, and no change of any app recorded after it.
        await db.query('SAVEPOINT tool_change');
        try {
          outcomes.push(await recordChange(db, raw));
          await db.query('RELEASE SAVEPOINT tool_change');
        } catch (error) {
          if (!isDataException(error)) throw error;
          await db.query('ROLLBACK TO SAVEPOINT tool_change');
          outcomes.push('invalid');
        }
      }
      return outcomes;
    });
  }

  /**
   * Pins the definition of a pending change (the one the admin reviewed, not whatever the upstream
   * serves by now) and marks it approved; other pending fingerprints of the tool are superseded.
   */
  async approve(appId: string, tool: string, fingerprint: string, actor: string): Promise<ToolDefinition> {
    return withTransaction(this.#pool, async (db) => {
      const connection = await db.query(
        'SELECT 1 FROM directory.app_connections WHERE app_id = $1 FOR UPDATE',
        [appId],
      );
      if (connection.rowCount === 0) {
        const app = await db.query('SELECT 1 FROM directory.apps WHERE id = $1', [appId]);
        if (app.rowCount === 0) throw new AppConnectionError('app_not_found', `no app ${appId}`);
        throw new AppConnectionError('not_registered', `app ${appId} has no registered connection`);
      }
      const { rows } = await db.query<{ definition: ToolDefinition }>(
        `SELECT definition FROM directory.tool_changes
         WHERE app_id = $1 AND tool_name = $2 AND observed_fingerprint = $3 AND status = 'pending'`,
        [appId, tool, fingerprint],
      );
      const change = rows[0];
      if (!change)
        throw new AppConnectionError(
          'no_pending_change',
          `no pending change of ${appId}/${tool} with fingerprint ${fingerprint}; list them with GET /v1/apps/${appId}/tool-changes`,
        );
      await db.query('DELETE FROM directory.tool_pins WHERE app_id = $1 AND tool_name = $2', [appId, tool]);
      await insertPin(db, appId, tool, { fingerprint, definition: change.definition }, actor);
      await db.query(
        `UPDATE directory.tool_changes
         SET status = CASE WHEN observed_fingerprint = $3 THEN 'approved' ELSE 'superseded' END,
           resolved_by = $4, resolved_at = now()
         WHERE app_id = $1 AND tool_name = $2 AND status = 'pending'`,
        [appId, tool, fingerprint, actor],
      );
      return change.definition;
    });
  }
}

async function insertPin(db: pg.PoolClient, appId: string, name: string, pin: PinnedTool, actor: string) {
  await db.query(
    `INSERT INTO directory.tool_pins (app_id, tool_name, fingerprint, definition, pinned_by)
     VALUES ($1, $2, $3, $4, $5)`,
    [appId, name, pin.fingerprint, pin.definition, actor],
  );
}

async function recordChange(db: pg.PoolClient, raw: unknown): Promise<ChangeOutcome> {
  const parsed = ToolDefinitionChangedV1.safeParse(raw);
  if (!parsed.success) return 'invalid';
  const event = parsed.data;
  // The definition must be what the fingerprint says: an approval pins this exact definition.
  if (toolFingerprint(event.definition) !== event.observedFingerprint || event.definition.name !== event.tool)
    return 'invalid';
  const connection = await db.query('SELECT 1 FROM directory.app_connections WHERE app_id = $1', [
    event.appId,
  ]);
  if (connection.rowCount === 0) return 'unknown_app';
  const pin = await db.query<{ fingerprint: string }>(
    'SELECT fingerprint FROM directory.tool_pins WHERE app_id = $1 AND tool_name = $2',
    [event.appId, event.tool],
  );
  if (pin.rows[0]?.fingerprint === event.observedFingerprint) return 'already_pinned';
  const { rows } = await db.query<{ inserted: boolean }>(
    `INSERT INTO directory.tool_changes (app_id, tool_name, observed_fingerprint, pinned_fingerprint,
       definition, first_event_id, reported_by, first_seen_at, last_seen_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
     ON CONFLICT (app_id, tool_name, observed_fingerprint) DO UPDATE SET
       last_seen_at = greatest(directory.tool_changes.last_seen_at, EXCLUDED.last_seen_at),
       -- Not the pin now (checked above), so a definition that was approved or superseded earlier
       -- and comes back needs an admin again.
       status = 'pending',
       resolved_by = CASE WHEN directory.tool_changes.status = 'pending' THEN directory.tool_changes.resolved_by END,
       resolved_at = CASE WHEN directory.tool_changes.status = 'pending' THEN directory.tool_changes.resolved_at END,
       pinned_fingerprint = EXCLUDED.pinned_fingerprint
     RETURNING (xmax = 0) AS inserted`,
    [
      event.appId,
      event.tool,
      event.observedFingerprint,
      pin.rows[0]?.fingerprint ?? null,
      event.definition,
      event.eventId,
      event.source.instanceId,
      event.occurredAt,
    ],
  );
  return rows[0]?.inserted ? 'recorded' : 'duplicate';
}

/** SQLSTATE class 22, data exception: the value is wrong, retrying cannot help. */
function isDataException(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('22');
}
