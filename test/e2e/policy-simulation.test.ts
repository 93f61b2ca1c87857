import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, cp, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { waitFor } from '@portcullis/testing';
import pg from 'pg';
import { connectAgent } from '../support/agent.ts';
import { repoRoot, TestStack } from '../support/stack.ts';

// The policy author's workflow with the real CLI: calls go through a broker into the ledger; a
// candidate revision is pushed (validated), simulated against those recorded calls, activated
// and rolled back with `portcullis policy`.

const run = promisify(execFile);
let stack: TestStack;
let candidateDir: string;

function cli(...args: string[]) {
  return run(join(repoRoot, 'bin/portcullis'), ['policy', ...args], {
    env: {
      PATH: process.env.PATH ?? '',
      PORTCULLIS_API_URL: stack.decisionUrl,
      PORTCULLIS_API_TOKEN: stack.apiToken,
      PORTCULLIS_OPA_BIN: process.env.PORTCULLIS_OPA_BIN ?? 'opa',
    },
  });
}

before(async () => {
  stack = await TestStack.create();
  await stack.startUpstream();
  await stack.startCoreServices();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo records' }],
    agents: [{ name: 'reader', owner: 'alice@example.com', entitlements: { demo: ['read'] } }],
  });
  const key = await stack.issueKey('reader');
  const broker = await stack.startBroker();
  const client = await connectAgent(broker.url, key, 'simulation-agent');
  await client.callTool({ name: 'read_record', arguments: { id: 'r-1' } });
  await client.callTool({ name: 'list_records', arguments: {} });
  await client.callTool({ name: 'update_record', arguments: { id: 'r-1', text: 'x' } });
  await client.close();
  const ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 1 });
  await waitFor('3 calls in the ledger', async () => {
    const { rows } = await ledger.query('SELECT outcome FROM audit.tool_calls');
    return rows.length === 3 && rows.every((row) => row.outcome !== 'pending');
  });
  await ledger.end();

  candidateDir = await mkdtemp(join(tmpdir(), 'policy-candidate-'));
  await cp(join(repoRoot, 'rego/portcullis'), join(candidateDir, 'portcullis'), { recursive: true });
  await cp(join(repoRoot, 'rego/.manifest'), join(candidateDir, '.manifest'));
  await appendFile(
    join(candidateDir, 'portcullis/authz/decision.rego'),
    '\n# METADATA\n# description: The candidate switches list_records off.\ndeny_reasons contains "tool_disabled" if input.tool.name == "list_records"\n',
  );
});

after(async () => {
  await stack?.stop();
});

test('push, simulate, activate and roll back a candidate with the CLI', async () => {
  const local = await cli('check', candidateDir);
  assert.equal(local.stderr, '');

  const pushed = JSON.parse((await cli('push', candidateDir)).stdout) as { id: number; revision: string };
  assert.ok(pushed.id > 0);

  const simulated = (await cli('simulate', String(pushed.id), '--last', '10')).stdout;
  assert.match(simulated, /3 recorded calls replayed; 1 would change/);
  assert.match(simulated, /list_records: allow \(allowed\) -> deny \(tool_disabled\)/);
  assert.match(simulated, /only as a SHA-256 digest/);

  const report = (await (
    await stack.api('POST', `/v1/bundles/${pushed.id}/simulate`, { last: 10 })
  ).json()) as {
    changed: { tool: string; active: { outcome: string } | null; candidate: { outcome: string } }[];
  };
  assert.equal(report.changed.length, 1);
  assert.equal(report.changed[0]?.tool, 'list_records');
  assert.equal(report.changed[0]?.candidate.outcome, 'deny');

  // activate shows the what-if report before it activates.
  const activation = (await cli('activate', String(pushed.id))).stdout;
  assert.match(activation, /3 recorded calls replayed; 1 would change[\s\S]*"revision"/);
  const bundles = JSON.parse((await cli('bundles')).stdout) as { bundles: { id: number; active: boolean }[] };
  assert.equal(bundles.bundles.find((bundle) => bundle.active)?.id, pushed.id);

  // Only one bundle was ever activated here: nothing to roll back to, and a clear error says so.
  await assert.rejects(cli('rollback'), /no earlier bundle to roll back to/);
});
