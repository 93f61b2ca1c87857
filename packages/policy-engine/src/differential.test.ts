import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual, promisify } from 'node:util';
import { readBundle } from './bundle.ts';
import { PolicyEngine } from './engine.ts';
import { generateDirectory, generateInputs } from './generate.ts';

// The in-process Wasm decision must equal OPA's own Go evaluator on the same policy source, for
// thousands of generated inputs against a generated directory. Needs the OPA binary
// (PORTCULLIS_OPA_BIN, set by infra/local's stack.env) and the bundle built by rego/build.sh.
const run = promisify(execFile);
const opa = process.env.PORTCULLIS_OPA_BIN || 'opa';
const regoDir = fileURLToPath(new URL('../../../rego/portcullis/authz/', import.meta.url));
const bundleFile = new URL('../../../rego/build/bundle.tar.gz', import.meta.url);
const SEED = Number(process.env.PORTCULLIS_DIFF_SEED ?? 20261128);
const INPUTS = 3000;

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'policy-diff-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test(`in-process decisions equal opa eval for ${INPUTS} generated inputs (seed ${SEED})`, async () => {
  const generated = generateDirectory(SEED, {
    agents: 300,
    apps: 8,
    entitlements: 1200,
    users: 25,
    conditionalShare: 0.6,
  });
  const inputs = generateInputs(SEED + 1, generated, INPUTS);

  const engine = new PolicyEngine();
  const bundle = await readBundle(readFileSync(bundleFile));
  await engine.loadBundle(bundle);
  engine.setDirectory(generated.directory);
  const inProcess = inputs.map((input) => engine.evaluateRaw(input));

  await writeFile(join(dir, 'data.json'), JSON.stringify({ ...bundle.data, directory: generated.directory }));
  await writeFile(join(dir, 'input.json'), JSON.stringify({ cases: inputs }));
  const sources = readdirSync(regoDir)
    .filter((name) => name.endsWith('.rego') && !name.endsWith('_test.rego'))
    .flatMap((name) => ['-d', join(regoDir, name)]);
  const { stdout } = await run(
    opa,
    [
      'eval',
      '--format=json',
      ...sources,
      '-d',
      join(dir, 'data.json'),
      '-i',
      join(dir, 'input.json'),
      '[d | some c in input.cases; d := data.portcullis.authz.decision with input as c]',
    ],
    { maxBuffer: 256 * 1024 * 1024 },
  );
  const byOpa = JSON.parse(stdout).result[0].expressions[0].value as unknown[];
  assert.equal(byOpa.length, INPUTS);

  const mismatches = inputs.flatMap((input, i) =>
    isDeepStrictEqual(inProcess[i], byOpa[i]) ? [] : [{ input, wasm: inProcess[i], opa: byOpa[i] }],
  );
  assert.deepEqual(mismatches.slice(0, 3), [], `${mismatches.length} of ${INPUTS} decisions differ`);

  // The generated cases must exercise every outcome and most reason codes, or the test proves little.
  const outcomes = new Set(inProcess.map((r) => (r as { outcome: string }).outcome));
  assert.deepEqual([...outcomes].sort(), ['allow', 'deny', 'require_approval']);
  const reasons = new Set(inProcess.flatMap((r) => (r as { reasons: string[] }).reasons));
  assert.ok(
    reasons.size >= 15,
    `only ${reasons.size} reason codes exercised: ${[...reasons].sort().join(', ')}`,
  );
  // Listings and DLP overrides must be exercised both ways as well.
  const visibility = new Set(inProcess.map((r) => (r as { visible: boolean }).visible));
  assert.deepEqual([...visibility].sort(), [false, true]);
  const personalResults = new Set(
    inProcess.map(
      (r) =>
        (r as { obligations: { dlp: { results: { personal: string } } } }).obligations.dlp.results.personal,
    ),
  );
  assert.ok(personalResults.has('allow') && personalResults.has('redact'), [...personalResults].join(','));
});
