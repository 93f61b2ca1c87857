import { fileURLToPath } from 'node:url';

/** The Postgres schema the decision service owns, and where its migrations live. */
export const DIRECTORY_SCHEMA = 'directory';
export const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));
