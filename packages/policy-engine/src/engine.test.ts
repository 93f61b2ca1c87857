import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { compileSchema } from '@portcullis/compiled-schema';
import { create, extract } from 'tar';
import { generate, mutate, random } from '../../../test/support/generated-events.ts';
import { BundleError, checkArchive, type PolicyBundle, readBundle } from './bundle.ts';
import { PolicyEngine, PolicyResult, policyTime, toDecision } from './engine.ts';
import { opaWasmBuildArgs } from './opa-build.ts';

// Runs against the real bundle compiled by rego/build.sh (the test command builds it first).
const bundleFile = new URL('../../../rego/build/bundle.tar.gz', import.meta.url);

const directory = () => ({
  agents: {
    agt_a: { state: 'active', owner: 'a@example.com' },
    agt_s: { state: 'suspended', owner: 'a@example.com' },
  },
  apps: { demo: {} },
  entitlements: { agt_a: { demo: [{ actions: ['read'] }] }, agt_s: { demo: [{ actions: ['read'] }] } },
});
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
    engine.setDirectory(directory());
    await engine.loadBundle(bundle);
    const decision = engine.decide(call('agt_a', 'read'));
    assert.equal(decision.outcome, 'allow');
    assert.equal(decision.policyRevision, bundle.revision);
    assert.match(decision.decisionId, /^[0-9a-f-]{36}$/);
  });

  test('each deny reason comes through', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory(directory());
    assert.deepEqual(engine.decide(call('agt_a', 'delete')).reasons, ['no_entitlement']);
    assert.deepEqual(engine.decide(call('agt_s', 'read')).reasons, ['agent_suspended']);
    assert.deepEqual(engine.decide(call('agt_nobody', 'read')).reasons, ['unknown_agent']);
  });

  test('a directory change applies to the next decision', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory(directory());
    assert.equal(engine.decide(call('agt_a', 'read')).outcome, 'allow');
    engine.setDirectory({ ...directory(), entitlements: {} });
    assert.equal(engine.decide(call('agt_a', 'read')).outcome, 'deny');
  });

  test('incremental changes apply in place and agree with a full load', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory(directory());
    assert.equal(engine.decide(call('agt_a', 'write')).outcome, 'deny');
    engine.applyDirectoryChanges([
      { path: ['entitlements', 'agt_a', 'demo'], value: [{ actions: ['read', 'write'] }] },
    ]);
    assert.equal(engine.decide(call('agt_a', 'write')).outcome, 'allow');
    // A new agent under a path that did not exist yet.
    engine.applyDirectoryChanges([
      { path: ['agents', 'agt_n'], value: { state: 'active', owner: 'n@example.com' } },
      { path: ['entitlements', 'agt_n'], value: { demo: [{ actions: ['delete'] }] } },
    ]);
    assert.equal(engine.decide(call('agt_n', 'delete')).outcome, 'allow');
    engine.applyDirectoryChanges([{ path: ['entitlements', 'agt_a'] }, { path: ['agents', 'agt_missing'] }]);
    assert.deepEqual(engine.decide(call('agt_a', 'read')).reasons, ['no_entitlement']);
    // Many patches (beyond the garbage threshold) keep decisions right, and a fresh engine given
    // the resulting mirror decides the same.
    for (let i = 0; i < 3000; i++)
      engine.applyDirectoryChanges([
        {
          path: ['entitlements', `agt_${i}`],
          value: { demo: [{ actions: ['read'], pad: 'x'.repeat(400) }] },
        },
      ]);
    const fresh = new PolicyEngine();
    await fresh.loadBundle(bundle);
    fresh.setDirectory(structuredClone(engine.directory) as Record<string, unknown>);
    for (const [agent, cls] of [
      ['agt_a', 'read'],
      ['agt_n', 'delete'],
      ['agt_n', 'read'],
      ['agt_s', 'read'],
    ] as const)
      assert.deepEqual(engine.decide(call(agent, cls)).reasons, fresh.decide(call(agent, cls)).reasons);
  });

  test('require_approval carries approvers and obligations', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory({
      ...directory(),
      entitlements: {
        agt_a: { demo: [{ actions: ['write'], require_approval: ['write'], rate_limit_class: 'bulk' }] },
      },
    });
    const decision = engine.decide(call('agt_a', 'write'));
    assert.equal(decision.outcome, 'require_approval');
    assert.deepEqual(decision.reasons, ['write_requires_approval']);
    assert.deepEqual(decision.approvers, ['a@example.com']);
    assert.deepEqual(decision.obligations, {
      rateLimitClass: 'bulk',
      redact: [],
      dlp: {
        arguments: { secrets: 'block', personal: 'allow' },
        results: { secrets: 'redact', personal: 'redact' },
      },
    });
    assert.equal(decision.visible, true, 'a tool that needs approval is still listed');
  });

  test('time comes from the clock when the input has none', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory({
      ...directory(),
      entitlements: { agt_a: { demo: [{ actions: ['read'], expires_at: 2_000_000_000_000 }] } },
    });
    assert.equal(engine.decide(call('agt_a', 'read'), 1_999_999_999_999).outcome, 'allow');
    assert.deepEqual(engine.decide(call('agt_a', 'read'), 2_000_000_000_000).reasons, [
      'entitlement_expired',
    ]);
  });
});

describe('DLP obligation and visibility', () => {
  test('decisions carry the DLP modes of their action class and whether the tool is listed', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(bundle);
    engine.setDirectory({
      ...directory(),
      apps: { demo: { dlp: { read: { results: { personal: 'allow' } } } } },
    });
    const read = engine.decide(call('agt_a', 'read'));
    assert.deepEqual(read.obligations?.dlp, {
      arguments: { secrets: 'redact', personal: 'allow' },
      results: { secrets: 'redact', personal: 'allow' },
    });
    assert.equal(read.visible, true);
    const write = engine.decide(call('agt_a', 'write'));
    assert.equal(write.visible, false);
    assert.equal(write.obligations?.dlp?.arguments.secrets, 'block');
    assert.equal(engine.decide(call('agt_s', 'read')).visible, false);
    assert.equal(new PolicyEngine().decide(call('agt_a', 'read')).visible, false);
  });

  test('a policy returning a malformed DLP obligation is denied as policy_error, never allowed', async () => {
    // A real policy, built with OPA, that returns whatever DLP obligation the input carries.
    const dir = await mkdtemp(join(tmpdir(), 'dlp-policy-'));
    await writeFile(
      join(dir, 'policy.rego'),
      `package portcullis.authz

decision := {
	"outcome": "allow", "allow": true, "reasons": ["allowed"], "approvers": [],
	"action_class": "read", "visible": true,
	"obligations": {"rate_limit_class": "standard", "redact": [], "dlp": input.dlp},
}
`,
    );
    const engine = await engineFromSource(dir);
    const modes = { secrets: 'redact', personal: 'redact' };
    const decide = (dlp: unknown) => engine.decide({ ...call('agt_a', 'read'), ...(dlp ? { dlp } : {}) });
    assert.equal(decide({ arguments: modes, results: modes }).outcome, 'allow');
    for (const malformed of [
      { arguments: modes, results: { secrets: 'log', personal: 'redact' } },
      { arguments: modes, results: { secrets: 'redact' } },
      { arguments: modes },
      { arguments: modes, results: { ...modes, phone: 'allow' } },
      'allow',
      undefined,
    ]) {
      const decision = decide(malformed);
      assert.deepEqual(
        [decision.outcome, decision.reasons],
        ['deny', ['policy_error']],
        JSON.stringify(malformed),
      );
      assert.equal(decision.visible, false);
    }
  });
});

describe('the compiled check of the policy result decides as zod did', () => {
  test('PolicyResult is compiled whole (the translation knows all it uses)', () => {
    assert.equal(compileSchema(PolicyResult).validators.size, 1);
  });

  test('generated and mutated results through a real policy: policy_error exactly where zod refuses', async () => {
    // A real policy, built with OPA, that returns whatever result the input carries; the result
    // comes back through opa-wasm's JSON like any policy's. The reference is zod on that same
    // raw result (evaluateRaw): where zod refuses it, decide must deny with policy_error; where
    // zod accepts it, decide must return zod's output, mapped (unknown keys stripped).
    const dir = await mkdtemp(join(tmpdir(), 'result-policy-'));
    await writeFile(join(dir, 'policy.rego'), 'package portcullis.authz\n\ndecision := input.result\n');
    const engine = await engineFromSource(dir);
    const rand = random(11);
    let allowed = 0;
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const generated = generate(PolicyResult, rand) as Record<string, unknown>;
      const input = {
        ...call('agt_a', 'read'),
        time: policyTime(0),
        result: i % 3 === 0 ? generated : mutate(generated, rand),
      };
      const reference = PolicyResult.safeParse(engine.evaluateRaw(input));
      const decision = engine.decide(input);
      if (reference.success) {
        const { decisionId, ...rest } = decision;
        const { decisionId: _, ...expected } = toDecision(decisionId, engine.revision!, reference.data);
        assert.deepStrictEqual(rest, expected, `#${i}: ${JSON.stringify(input.result)}`);
        allowed++;
      } else {
        assert.deepEqual(
          [decision.outcome, decision.reasons, decision.visible],
          ['deny', ['policy_error'], false],
          `#${i}: zod refuses ${JSON.stringify(input.result)}`,
        );
        refused++;
      }
    }
    assert.ok(allowed > 1000 && refused > 1000, `accepted ${allowed}, refused ${refused}`);
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

  test('an archive beyond the entry or size bound, or holding a link, is refused before it is unpacked', async () => {
    const five = await tarGz({ a: '1', b: '2', c: '3', d: '4', e: '5' });
    await assert.rejects(checkArchive(five, { maxEntries: 3, maxBytes: 1 << 20 }), /more than 3 entries/);
    const big = await tarGz({ big: 'x'.repeat(4096) });
    await assert.rejects(checkArchive(big, { maxEntries: 10, maxBytes: 1024 }), /unpacks to more than/);
    const dir = await mkdtemp(join(tmpdir(), 'bundle-link-'));
    await symlink('/etc/passwd', join(dir, 'policy.wasm'));
    await create({ gzip: true, file: join(dir, 'linked.tar.gz'), cwd: dir }, ['policy.wasm']);
    const linked = await readFile(join(dir, 'linked.tar.gz'));
    await assert.rejects(checkArchive(linked), /policy\.wasm is a SymbolicLink/);
    await assert.rejects(readBundle(linked), /SymbolicLink/);
  });

  test('files a built bundle does not need are skipped, not held', async () => {
    // The real bundle plus an unrelated file: it still loads (readBundle keeps only its own files).
    const dir = await mkdtemp(join(tmpdir(), 'bundle-extra-'));
    await extract({ file: fileURLToPath(bundleFile), cwd: dir });
    await writeFile(join(dir, 'notes.txt'), 'x'.repeat(1 << 20));
    await create({ gzip: true, file: join(dir, 'extra.tar.gz'), cwd: dir }, await readdir(dir));
    const loaded = await readBundle(await readFile(join(dir, 'extra.tar.gz')));
    assert.equal(loaded.revision, bundle.revision);
  });

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
    engine.setDirectory(directory());
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

/** A PolicyEngine running the Rego in `dir`, built to Wasm by the real OPA, with an empty directory. */
async function engineFromSource(dir: string): Promise<PolicyEngine> {
  const out = join(dir, 'bundle.tar.gz');
  await promisify(execFile)(process.env.PORTCULLIS_OPA_BIN || 'opa', opaWasmBuildArgs({ source: dir, out }));
  const engine = new PolicyEngine();
  await engine.loadBundle(await readBundle(await readFile(out)));
  engine.setDirectory({});
  return engine;
}
