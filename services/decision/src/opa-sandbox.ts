import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Built-in functions a policy uploaded through the API may not use. `opa test` runs an upload's
 * tests on the decision service's host: with these, a policy author could read the service's
 * environment (`opa.runtime().env`: the database URL and its password) or reach the network from
 * it (`http.send`, `net.lookup_ip_addr`). The gateway's policy needs none of them: in Wasm it
 * cannot use them anyway.
 */
export const DENIED_BUILTINS: ReadonlySet<string> = new Set([
  'http.send',
  'opa.runtime',
  'net.lookup_ip_addr',
]);

/** The environment every `opa` step runs with: nothing of the service's own, only the PATH. */
export function opaEnvironment(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin' };
}

/**
 * The capabilities of this OPA binary less DENIED_BUILTINS, as a capabilities.json document for
 * `--capabilities`: `opa check` then refuses a policy that calls one of them, before any test runs.
 */
export async function restrictedCapabilities(opa: string): Promise<string> {
  const { stdout } = await run(opa, ['capabilities', '--current'], {
    env: opaEnvironment(),
    maxBuffer: 16 * 1024 * 1024,
    timeout: 30_000,
  });
  const capabilities = JSON.parse(stdout) as { builtins?: { name: string }[] };
  if (!Array.isArray(capabilities.builtins))
    throw new Error('opa capabilities --current printed no builtins');
  return JSON.stringify({
    ...capabilities,
    builtins: capabilities.builtins.filter((builtin) => !DENIED_BUILTINS.has(builtin.name)),
  });
}
