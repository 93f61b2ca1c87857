import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { PolicyEngine, readBundle } from '@portcullis/policy-engine';
import { obligationGuard } from './content-guard.ts';
import { FIELD_PLACEHOLDER, parseRedactPath, redactFields } from './field-redaction.ts';

const employee = { name: 'Ada', salary: 120_000, home_address: '1 Analytical Way', ssn_last4: '1234' };

describe('redaction paths', () => {
  test('members, indexes and every element; anything else is refused', () => {
    assert.deepEqual(parseRedactPath('$.salary'), [{ member: 'salary' }]);
    assert.deepEqual(parseRedactPath('$.staff[*].ssn'), [
      { member: 'staff' },
      { every: true },
      { member: 'ssn' },
    ]);
    assert.deepEqual(parseRedactPath('$.rows[2]'), [{ member: 'rows' }, { index: 2 }]);
    for (const bad of [
      'salary',
      '$',
      '$..salary',
      '$.a[-1]',
      "$['a']",
      '$.a b',
      '$.a.',
      `$.${'a'.repeat(600)}`,
    ])
      assert.equal(parseRedactPath(bad), undefined, bad);
  });
});

describe('applying them', () => {
  test('structured content and JSON text alike; the original result is left as it was', () => {
    const result = {
      content: [{ type: 'text', text: JSON.stringify(employee) }],
      structuredContent: { ...employee },
    };
    const redacted = redactFields(result, ['$.salary', '$.home_address']);
    assert.equal(redacted.fields, 4);
    assert.deepEqual(redacted.result.structuredContent, {
      ...employee,
      salary: FIELD_PLACEHOLDER,
      home_address: FIELD_PLACEHOLDER,
    });
    assert.deepEqual(JSON.parse((redacted.result.content as { text: string }[])[0]!.text), {
      ...employee,
      salary: FIELD_PLACEHOLDER,
      home_address: FIELD_PLACEHOLDER,
    });
    assert.equal(result.structuredContent.salary, 120_000, 'the upstream result was copied, not changed');
  });

  test('every element of an array; resource contents and prompt messages too', () => {
    const staff = JSON.stringify({ staff: [employee, { ...employee, name: 'Grace' }] });
    const read = redactFields({ contents: [{ uri: 'hr://staff', text: staff }] }, ['$.staff[*].ssn_last4']);
    assert.equal(read.fields, 2);
    assert.ok(!(read.result.contents as { text: string }[])[0]!.text.includes('1234'));
    const prompt = redactFields({ messages: [{ role: 'user', content: { type: 'text', text: staff } }] }, [
      '$.staff[0].name',
    ]);
    assert.equal(prompt.fields, 1);
  });

  test('a text that is not JSON is withheld; JSON without the field is left alone', () => {
    const redacted = redactFields(
      {
        content: [
          { type: 'text', text: 'Ada earns 120000 and lives at 1 Analytical Way' },
          { type: 'text', text: '{"unrelated":true}' },
        ],
      },
      ['$.salary'],
    );
    const [free, json] = redacted.result.content as { text: string }[];
    assert.match(free!.text, /^\[WITHHELD:/);
    assert.equal(json!.text, '{"unrelated":true}');
    assert.deepEqual([redacted.fields, redacted.withheldTexts], [0, 1]);
  });

  test('a path that cannot be read withholds everything; no paths change nothing', () => {
    assert.ok(redactFields({ content: [] }, ['salary']).unappliable);
    const result = { content: [{ type: 'text', text: 'plain' }] };
    assert.equal(redactFields(result, []).result, result);
  });
});

test("the real policy's redact obligation is carried out by the guard, and counted", async () => {
  const engine = new PolicyEngine();
  await engine.loadBundle(
    await readBundle(readFileSync(new URL('../../../../rego/build/bundle.tar.gz', import.meta.url))),
  );
  engine.setDirectory({
    agents: { agt_a: { state: 'active', owner: 'a@example.com' } },
    apps: { hr: { tools: { get_user: { redact: ['$.salary', '$.home_address'] } } } },
    entitlements: { agt_a: { hr: [{ actions: ['read'], redact: ['$.ssn_last4'] }] } },
  });
  const decision = engine.decide({
    agent: { id: 'agt_a' },
    app: { id: 'hr' },
    tool: { name: 'get_user' },
    action_class: 'read',
    arguments: {},
  });
  assert.deepEqual(decision.obligations?.redact, ['$.home_address', '$.salary', '$.ssn_last4']);
  const guarded = obligationGuard.result(decision, {
    content: [{ type: 'text', text: JSON.stringify(employee) }],
    structuredContent: { ...employee },
  });
  const seen = JSON.stringify(guarded.result);
  for (const value of ['120000', 'Analytical', '1234'])
    assert.ok(!seen.includes(value), `${value} reached the agent`);
  assert.ok(seen.includes('Ada'));
  assert.deepEqual(guarded.redactions, { field: 6 });
  assert.equal(guarded.blocked, undefined);
});

test('a blob is withheld under a redact obligation; a result too deep to copy is withheld whole', () => {
  const blob = Buffer.from(JSON.stringify(employee)).toString('base64');
  const read = redactFields({ contents: [{ uri: 'hr://ada', mimeType: 'application/json', blob }] }, [
    '$.salary',
  ]);
  assert.deepEqual(read.withheldTexts, 1);
  assert.ok(!JSON.stringify(read.result).includes(blob));
  const embedded = redactFields({ content: [{ type: 'resource', resource: { uri: 'hr://ada', blob } }] }, [
    '$.salary',
  ]);
  assert.ok(!JSON.stringify(embedded.result).includes(blob));
  const prompt = redactFields(
    { messages: [{ role: 'user', content: { type: 'resource', resource: { uri: 'hr://ada', blob } } }] },
    ['$.salary'],
  );
  assert.ok(!JSON.stringify(prompt.result).includes(blob));

  let deep: unknown = 'bottom';
  for (let i = 0; i < 100_000; i++) deep = [deep];
  const tooDeep = redactFields({ content: [], structuredContent: { deep } }, ['$.salary']);
  assert.match(tooDeep.unappliable ?? '', /nested too deep/);
});

test('under a redact obligation an upstream error keeps only its code', () => {
  const decision = {
    outcome: 'allow',
    obligations: { redact: ['$.salary'], rate_limit_class: 'standard' },
  } as unknown as Parameters<typeof obligationGuard.error>[0];
  const error = { code: -32000, message: 'Ada earns 120000', data: { salary: 120000 } };
  const guarded = obligationGuard.error(decision, error);
  assert.equal(guarded.code, -32000);
  assert.ok(!JSON.stringify(guarded).includes('120000'));
});
