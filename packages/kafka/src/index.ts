export * from './admin.ts';
export * from './batch-consumer.ts';
export * from './client.ts';
