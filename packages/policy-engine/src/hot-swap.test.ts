import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { BundleError, type PolicyBundle, readBundle } from './bundle.ts';
import { DECISION_ENTRYPOINT, PolicyEngine } from './engine.ts';
import { opaWasmBuildArgs } from './opa-build.ts';

// Swapping bundles while calls are being decided: every decision must be the one its reported
// revision gives, and none may fail for lack of a policy. Two real bundles are compiled with OPA
// from the repo's policy: A as is, B with writes denied.
const run = promisify(execFile);
const opa = process.env.PORTCULLIS_OPA_BIN || 'opa';
const regoDir = fileURLToPath(new URL('../../../rego/', import.meta.url));

let dir: string;
let bundleA: PolicyBundle;
let bundleB: PolicyBundle;

async function build(
  source: string,
  revision: string,
  entrypoint = DECISION_ENTRYPOINT,
): Promise<PolicyBundle> {
  const out = join(dir, `${revision}.tar.gz`);
  await run(opa, opaWasmBuildArgs({ source, out, entrypoint, revision }));
  return readBundle(await readFile(out));
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'policy-swap-'));
  for (const variant of ['a', 'b']) {
    await cp(join(regoDir, 'portcullis'), join(dir, variant, 'portcullis'), { recursive: true });
    await cp(join(regoDir, '.manifest'), join(dir, variant, '.manifest'));
  }
  await appendFile(
    join(dir, 'b/portcullis/authz/decision.rego'),
    '\n# METADATA\n# description: Variant B denies writes.\ndeny_reasons contains "no_entitlement" if action_class == "write"\n',
  );
  [bundleA, bundleB] = await Promise.all([build(join(dir, 'a'), 'rev-a'), build(join(dir, 'b'), 'rev-b')]);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const directory = {
  agents: { agt_w: { state: 'active', owner: 'w@example.com' } },
  apps: { demo: {} },
  entitlements: { agt_w: { demo: [{ actions: ['read', 'write'] }] } },
};
const write = {
  agent: { id: 'agt_w' },
  app: { id: 'demo' },
  tool: { name: 'update' },
  action_class: 'write',
  arguments: {},
};

test('a hot swap under concurrent evaluation never gives a wrong decision', async () => {
  const engine = new PolicyEngine();
  await engine.loadBundle(bundleA);
  engine.setDirectory(directory);
  const expected: Record<string, string> = { 'rev-a': 'allow', 'rev-b': 'deny' };
  const seen = { 'rev-a': 0, 'rev-b': 0 } as Record<string, number>;
  const wrong: string[] = [];
  let stop = false;
  let decisions = 0;

  const caller = async () => {
    while (!stop) {
      const decision = engine.decide(write);
      decisions++;
      if (expected[decision.policyRevision] !== decision.outcome)
        wrong.push(`${decision.policyRevision}: ${decision.outcome} ${decision.reasons.join(',')}`);
      else seen[decision.policyRevision]!++;
      await new Promise(setImmediate);
    }
  };
  let swaps = 0;
  const swapper = async () => {
    // At least 40 swaps, and on a slow or busy machine as many more as it takes for 1,000 decisions
    // to interleave with them; always ending on bundle A (an odd swap index).
    for (let i = 0; ; i++) {
      await engine.loadBundle(i % 2 === 0 ? bundleB : bundleA);
      swaps++;
      // Directory changes interleave with swaps too; a new bundle must see the latest directory.
      engine.applyDirectoryChanges([{ path: ['apps', `app-${i}`], value: {} }]);
      await new Promise((resolve) => setTimeout(resolve, 2));
      if (i >= 39 && i % 2 === 1 && (decisions > 1000 || i >= 999)) break;
    }
    stop = true;
  };
  await Promise.all([swapper(), ...Array.from({ length: 8 }, caller)]);

  assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} wrong decisions`);
  assert.ok(swaps >= 40, `only ${swaps} swaps`);
  assert.ok(seen['rev-a']! > 100 && seen['rev-b']! > 100, `decisions per revision: ${JSON.stringify(seen)}`);
  assert.ok(decisions > 1000, `only ${decisions} decisions`);
  assert.equal(engine.revision, 'rev-a');
  assert.ok((engine.directory?.apps as Record<string, unknown> | undefined)?.['app-39']);
});

test('a bundle without the decision entrypoint is rejected and the active one stays', async () => {
  const engine = new PolicyEngine();
  await engine.loadBundle(bundleA);
  engine.setDirectory(directory);
  await mkdir(join(dir, 'other'), { recursive: true });
  await writeFile(join(dir, 'other/other.rego'), 'package other\n\nx := input.y\n');
  const other = await build(join(dir, 'other'), 'rev-other', 'other/x');
  await assert.rejects(
    engine.loadBundle(other),
    (error: unknown) =>
      error instanceof BundleError && /lacks the entrypoint portcullis\/authz\/decision/.test(error.message),
  );
  assert.equal(engine.revision, 'rev-a');
  assert.equal(engine.decide(write).outcome, 'allow');
});
