export * from './agent-key.ts';
export * from './apps.ts';
export * from './audit-events.ts';
export * from './directory-events.ts';
export * from './policy.ts';
export * from './topics.ts';
