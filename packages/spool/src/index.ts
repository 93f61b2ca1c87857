export { LOCK_FILE, SpoolLockedError } from './ownership.ts';
export * from './spool.ts';
