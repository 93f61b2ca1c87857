export * from './bundle.ts';
export * from './data-patcher.ts';
export * from './decision-log.ts';
export * from './engine.ts';
export * from './opa-build.ts';
export * from './reasons.ts';
