export * from './compiled-schema.ts';
export * from './json-schema.ts';
