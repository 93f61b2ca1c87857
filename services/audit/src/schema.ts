import { fileURLToPath } from 'node:url';

/** The Postgres schema the audit service owns, and where its migrations live. */
export const AUDIT_SCHEMA = 'audit';
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));

/** The consumer group that writes the ledger; its committed offsets are the ledger's position. */
export const LEDGER_CONSUMER_GROUP = 'portcullis.audit.ledger';
