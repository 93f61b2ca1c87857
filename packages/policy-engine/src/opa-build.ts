import { DECISION_ENTRYPOINT } from './engine.ts';

export interface WasmBuildOptions {
  /** Directory of policy sources. */
  source: string;
  /** Where the bundle.tar.gz goes. */
  out: string;
  entrypoint?: string;
  /** Recorded in the bundle's manifest; the ledger names decisions by it. */
  revision?: string;
}

/**
 * The `opa build` arguments for a bundle the engine can load: Wasm target, bundle mode (so the
 * .manifest is honoured), the decision entrypoint, tests left out. One definition for the decision
 * service's validation, the policy CLI and the tests, so they all build what brokers load.
 */
export function opaWasmBuildArgs({
  source,
  out,
  entrypoint = DECISION_ENTRYPOINT,
  revision,
}: WasmBuildOptions): string[] {
  return [
    'build',
    '-b',
    '-t',
    'wasm',
    '-O=1',
    '-e',
    entrypoint,
    ...(revision ? ['--revision', revision] : []),
    '--ignore',
    '*_test.rego',
    '--ignore',
    'build',
    '-o',
    out,
    source,
  ];
}
