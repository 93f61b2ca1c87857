export * from './bundle.ts';
export * from './engine.ts';
