import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { create } from 'tar';
import { BundleError, type PolicyBundle, readBundle } from './bundle.ts';
import { PolicyEngine } from './engine.ts';

// Runs against the real bundle compiled by rego/build.sh (the test command builds it first).
const bundleFile = new URL('../../../rego/build/bundle.tar.gz', import.meta.url);

const directory = {
  agents: { agt_a: { state: 'active' }, agt_s: { state: 'suspended' } },
  entitlements: { agt_a: { demo: ['read'] }, agt_s: { demo: ['read'] } },
};
const call = (agentId: string, actionClass: string) => ({
  agent: { id: agentId },
  app: { id: 'demo' },
  tool: { name: 't' },
  action_class: actionClass,
  arguments: {},
});

let bundle: PolicyBundle;
before(async () => {
  bundle = await readBundle(readFileSync(bundleFile));
});

describe('fail closed', () => {
  test('no bundle loaded: deny with no_policy', () => {
    const decision = new PolicyEngine().decide(call('agt_a', 'read'));
    assert.equal(decision.outcome, 'deny');
    assert.deepEqual(decision.reasons, ['no_policy']);
    assert.equal(decision.policyRevision, 'none');
  });

  test('no directory snapshot: deny with no_directory', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    assert.deepEqual(engine.decide(call('agt_a', 'read')).reasons, ['no_directory']);
  });
});

describe('decisions', () => {
  test('entitled read is allowed, with the bundle revision and a decision id', async () => {
    const engine = new PolicyEngine();
    engine.setDirectory(directory);
    await engine.loadBundle(bundle);
    const decision = engine.decide(call('agt_a', 'read'));
    assert.equal(decision.outcome, 'allow');
    assert.equal(decision.policyRevision, bundle.revision);
    assert.match(decision.decisionId, /^[0-9a-f-]{36}$/);
  });

  test('each deny reason comes through', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory(directory);
    assert.deepEqual(engine.decide(call('agt_a', 'delete')).reasons, ['no_entitlement']);
    assert.deepEqual(engine.decide(call('agt_s', 'read')).reasons, ['agent_suspended']);
    assert.deepEqual(engine.decide(call('agt_nobody', 'read')).reasons, ['unknown_agent']);
  });

  test('a directory change applies to the next decision', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory(directory);
    assert.equal(engine.decide(call('agt_a', 'read')).outcome, 'allow');
    engine.setDirectory({ ...directory, entitlements: {} });
    assert.equal(engine.decide(call('agt_a', 'read')).outcome, 'deny');
  });
});

describe('bad bundles are rejected with a clear error and the active bundle stays', () => {
  const cases: [string, () => Uint8Array, RegExp][] = [
    ['not a tar.gz', () => Buffer.from('hello'), /not a valid tar\.gz/],
    ['truncated', () => readFileSync(bundleFile).subarray(0, 200), /not a valid tar\.gz|no \/policy\.wasm/],
  ];
  for (const [name, bytes, message] of cases) {
    test(name, async () => {
      await assert.rejects(
        readBundle(bytes()),
        (error: unknown) => error instanceof BundleError && message.test(error.message),
      );
    });
  }

  test('no policy.wasm', async () => {
    await assert.rejects(readBundle(await tarGz({ 'data.json': '{}' })), /no \/policy\.wasm/);
  });

  test('policy.wasm that is not WebAssembly', async () => {
    await assert.rejects(
      readBundle(await tarGz({ 'policy.wasm': 'definitely not wasm' })),
      /not a WebAssembly module/,
    );
  });

  test('a wasm module that is not a policy leaves the active bundle in place', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory(directory);
    // The smallest valid WebAssembly module: magic and version, nothing else.
    const empty = Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);
    await assert.rejects(engine.loadBundle({ ...bundle, wasm: empty, revision: 'broken' }), BundleError);
    assert.equal(engine.revision, bundle.revision);
    assert.equal(engine.decide(call('agt_a', 'read')).outcome, 'allow');
  });
});

/** Writes the given files into a real tar.gz, the way opa build would package them. */
async function tarGz(files: Record<string, string>): Promise<Uint8Array> {
  const dir = await mkdtemp(join(tmpdir(), 'bundle-'));
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
  await create({ gzip: true, file: join(dir, 'bundle.tar.gz'), cwd: dir }, Object.keys(files));
  return readFile(join(dir, 'bundle.tar.gz'));
}
