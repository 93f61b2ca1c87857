export * from './admin.ts';
export * from './batch-consumer.ts';
export * from './client.ts';
export * from './compacted-reader.ts';
