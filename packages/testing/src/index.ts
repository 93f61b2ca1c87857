export * from './audit-events.ts';
export * from './bench.ts';
export * from './infrastructure.ts';
export * from './processes.ts';
export * from './random.ts';
export * from './wait.ts';
