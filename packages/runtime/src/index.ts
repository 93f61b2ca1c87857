export * from './errors.ts';
export * from './health.ts';
export * from './http.ts';
export * from './logger.ts';
export * from './metrics.ts';
export * from './service.ts';
export * from './shutdown.ts';
