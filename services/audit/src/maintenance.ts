import { withTransaction } from '@portcullis/db';
import type { Logger } from '@portcullis/runtime';
import type pg from 'pg';

export interface MaintenanceOptions {
  pool: pg.Pool;
  logger: Logger;
  daysAhead: number;
  retentionDays: number;
  intervalMs: number;
}

/** Runs audit.maintain_partitions once: partitions ahead, retention by detaching. */
export async function maintainPartitions(
  pool: pg.Pool,
  daysAhead: number,
  retentionDays: number,
): Promise<{ action: string; partition_name: string }[]> {
  // Replicas may run this at the same moment; the advisory lock makes them take turns.
  return withTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('portcullis.audit.maintenance'))");
    const { rows } = await client.query<{ action: string; partition_name: string }>(
      'SELECT action, partition_name FROM audit.maintain_partitions($1, $2)',
      [daysAhead, retentionDays],
    );
    return rows;
  });
}

/** Runs maintenance now (failing start-up if it fails) and then every `intervalMs`. */
export async function startMaintenance(options: MaintenanceOptions): Promise<{ stop: () => Promise<void> }> {
  const { pool, logger, daysAhead, retentionDays, intervalMs } = options;
  const run = async () => {
    const done = await maintainPartitions(pool, daysAhead, retentionDays);
    const detached = done.filter((d) => d.action === 'detached').map((d) => d.partition_name);
    if (detached.length > 0) logger.info({ detached }, 'ledger partitions detached by retention');
  };
  await run();
  const timer = setInterval(() => {
    run().catch((error) => logger.error({ err: error }, 'partition maintenance failed; will retry'));
  }, intervalMs);
  timer.unref();
  return { stop: async () => clearInterval(timer) };
}
