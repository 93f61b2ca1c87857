import pg from 'pg';
import type { Logger } from 'pino';

export interface PoolOptions {
  connectionString: string;
  applicationName: string;
  logger: Logger;
  max?: number;
  /**
   * The role every connection acts as (`SET ROLE` at connection start): a service that logs in as
   * the schema's owner, to migrate it, then works with no more than that role's grants. A login
   * that may not take the role gets no connection at all (fail closed), never the owner's rights.
   */
  role?: string;
  /** Every transaction read-only (`default_transaction_read_only`): for pools that only answer queries. */
  readOnly?: boolean;
}

/** A role name as Postgres's startup options take it: plain identifiers only, nothing to escape. */
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** A pg pool with the defaults every service wants; errors on idle clients are logged, not fatal. */
export function createPool({
  connectionString,
  applicationName,
  logger,
  max = 10,
  role,
  readOnly = false,
}: PoolOptions): pg.Pool {
  if (role !== undefined && !ROLE_NAME.test(role)) throw new Error(`not a plain role name: ${role}`);
  const options = [
    ...(role ? [`-c role=${role}`] : []),
    ...(readOnly ? ['-c default_transaction_read_only=on'] : []),
  ].join(' ');
  const pool = new pg.Pool({
    connectionString,
    application_name: applicationName,
    max,
    ...(options ? { options } : {}),
    // Fail fast when Postgres is unreachable instead of queueing requests forever.
    connectionTimeoutMillis: 5000,
    idleTimeoutMillis: 30000,
    // A runaway query must not hold a connection (and a caller) indefinitely.
    statement_timeout: 30000,
  });
  // Without this listener, an idle client's network error would crash the process.
  pool.on('error', (error) => logger.error({ err: error }, 'idle postgres client failed'));
  return pool;
}

/** Runs `fn` in a transaction on one client; commits if it resolves, rolls back if it throws. */
export async function withTransaction<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  // A checked-out client has no pool listener: without this one, a connection the server ends
  // between two statements (a restart) would crash the process. The next statement fails instead.
  const onError = () => {};
  client.on('error', onError);
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.off('error', onError);
    client.release();
  }
}
