export * from './detectors.ts';
export * from './scan.ts';
