import { fileURLToPath } from 'node:url';

/** The Postgres schema the audit service owns, and where its migrations live. */
export const AUDIT_SCHEMA = 'audit';
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
