export * from './spool.ts';
