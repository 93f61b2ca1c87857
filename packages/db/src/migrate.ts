import { runner } from 'node-pg-migrate';
import type { Logger } from 'pino';

export interface MigrateOptions {
  databaseUrl: string;
  /** The schema the service owns; created if missing, and where its migrations table lives. */
  schema: string;
  /** Directory of plain-SQL migrations (`-- Up Migration` / `-- Down Migration` sections). */
  dir: string;
  logger: Logger;
}

/**
 * Applies pending migrations in one transaction. Each service keeps its own migrations table in
 * its own schema, so services migrate independently; an advisory lock serialises replicas.
 */
export async function migrate({ databaseUrl, schema, dir, logger }: MigrateOptions): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir,
    direction: 'up',
    schema,
    createSchema: true,
    migrationsSchema: schema,
    createMigrationsSchema: true,
    migrationsTable: 'schema_migrations',
    checkOrder: true,
    singleTransaction: true,
    advisoryLockMode: 'wait',
    // Replicas of different services share one lock id unless it differs per schema.
    lockValue: lockValueFor(schema),
    log: (message: string) => logger.debug({ component: 'migrations' }, message),
  });
  const names = applied.map((migration) => migration.name);
  if (names.length > 0) logger.info({ schema, migrations: names }, 'migrations applied');
  return names;
}

function lockValueFor(schema: string): number {
  let hash = 7;
  for (const char of schema) hash = (hash * 31 + char.charCodeAt(0)) | 0;
  return hash;
}
