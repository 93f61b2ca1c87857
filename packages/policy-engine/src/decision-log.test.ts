import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DecisionLogV1 } from '@portcullis/contracts';
import { decisionLogEntry } from './decision-log.ts';

test('a decision-log entry masks the arguments and keeps OPA’s shape', () => {
  const secret = 'ghp_supersecrettoken';
  const entry = decisionLogEntry({
    decisionId: '0193a0a8-6b1c-7c3e-9a51-6f5d8e7b2c13',
    path: 'portcullis/authz/decision',
    input: { agent: { id: 'agt_1' }, arguments: { token: secret, repo: 'acme/api' } },
    result: { outcome: 'allow' },
    revision: 'r1',
    instanceId: 'decision-1',
    service: 'decision',
    durationNs: 12345.6,
    now: new Date('2026-11-28T12:00:00Z'),
  });
  assert.equal(DecisionLogV1.safeParse(entry).success, true);
  assert.equal(JSON.stringify(entry).includes(secret), false);
  assert.deepEqual(entry.masked, ['/input/arguments']);
  assert.match((entry.input.arguments as { sha256: string }).sha256, /^[0-9a-f]{64}$/);
  assert.deepEqual(entry.input.agent, { id: 'agt_1' });
  assert.deepEqual(entry.bundles, { portcullis: { revision: 'r1' } });
  // Equal arguments in another key order give the same digest (canonical JSON).
  const again = decisionLogEntry({
    ...entryOptions(),
    input: { arguments: { repo: 'acme/api', token: secret } },
  });
  assert.deepEqual(again.input.arguments, entry.input.arguments);
});

function entryOptions() {
  return {
    decisionId: '0193a0a8-6b1c-7c3e-9a51-6f5d8e7b2c14',
    path: 'portcullis/authz/decision',
    input: {},
    result: undefined,
    revision: 'r1',
    instanceId: 'decision-1',
    service: 'decision',
    durationNs: 1,
  };
}

test('every reason code has a description, and the policy uses no code outside the contract', async () => {
  const { ReasonCode } = await import('@portcullis/contracts');
  const { REASON_DESCRIPTIONS } = await import('./reasons.ts');
  assert.deepEqual(Object.keys(REASON_DESCRIPTIONS).sort(), [...ReasonCode.options].sort());
  const { readFileSync } = await import('node:fs');
  const rego = readFileSync(new URL('../../../rego/portcullis/authz/decision.rego', import.meta.url), 'utf8');
  // Every quoted snake_case string in a reason position: `contains "x"`, `{"x"`, `: "x"` of the maps.
  const used = new Set(
    [...rego.matchAll(/(?:contains|:=) \{?"([a-z]+(?:_[a-z]+)+)"|"[a-z_]+": "([a-z]+(?:_[a-z]+)+)"/g)].map(
      (m) => (m[1] ?? m[2])!,
    ),
  );
  used.delete('require_approval'); // an outcome, not a reason
  for (const code of used)
    assert.ok((ReasonCode.options as readonly string[]).includes(code), `${code} is not a ReasonCode`);
  assert.ok(used.size >= 15);
});
