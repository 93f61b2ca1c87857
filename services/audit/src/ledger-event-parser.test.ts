import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileSchema } from '@portcullis/compiled-schema';
import { LedgerEvent, parseLedgerEvent } from '@portcullis/contracts';
import { generate, mutate, random } from '../../../test/support/generated-events.ts';
import { canonicalJson } from './canonical-json.ts';
import { createLedgerEventParser } from './ledger-event-parser.ts';

// The compiled parser must be zod, observably: the same accept/reject on every message, the same
// event (zod strips unknown keys of plain objects) and so the same canonical payload and hash.
// Events are generated from the zod schemas themselves (test/support/generated-events.ts), so a
// new member or field is covered without editing this file. The translation itself is tested, on
// values rather than texts, with @portcullis/compiled-schema (compiled-schema.test.ts).

/** The parser's compiled validators by event type (what createLedgerEventParser compiles). */
const compileMembers = () => compileSchema(LedgerEvent, { strip: 'in-place' }).validators;

function assertSame(textValue: string, fast: ReturnType<typeof parseLedgerEvent>, label: string): void {
  const reference = parseLedgerEvent(textValue);
  assert.equal(fast.ok, reference.ok, `${label}: verdicts differ for ${textValue}`);
  if (fast.ok && reference.ok) {
    assert.deepStrictEqual(fast.event, reference.event, `${label}: events differ for ${textValue}`);
    assert.equal(canonicalJson(fast.event), canonicalJson(reference.event), label);
  } else if (!fast.ok && !reference.ok) {
    assert.equal(fast.reason, reference.reason, label);
  }
}

const members = LedgerEvent.options;

test('every member of the ledger union is compiled (none falls back to zod wholesale)', () => {
  const compiled = compileMembers();
  assert.deepEqual([...compiled.keys()].sort(), members.map((m) => m.shape.type.value).sort());
});

test('generated valid events: zod and the compiled parser agree, and the fast path takes them', () => {
  const parse = createLedgerEventParser();
  const validators = compileMembers();
  const rand = random(1);
  for (let i = 0; i < 4000; i++) {
    const member = members[i % members.length]!;
    const event = generate(member, rand) as Record<string, unknown>;
    const textValue = JSON.stringify(event);
    assertSame(textValue, parse(Buffer.from(textValue)), `valid #${i}`);
    assert.equal(parseLedgerEvent(textValue).ok, true, `generator made an invalid event: ${textValue}`);
    // Not merely zod's fallback: the compiled validator itself accepts it (escapes aside).
    if (!textValue.includes('\\u')) {
      assert.equal(validators.get(event.type as string)!(JSON.parse(textValue)), true, textValue);
    }
  }
});

test('generated mutated events: the same accept/reject and the same output as zod', () => {
  const parse = createLedgerEventParser();
  const validators = compileMembers();
  const rand = random(2);
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < 20000; i++) {
    const member = members[i % members.length]!;
    const event = mutate(generate(member, rand) as Record<string, unknown>, rand);
    const textValue = JSON.stringify(event);
    const fast = parse(textValue);
    assertSame(textValue, fast, `mutated #${i}`);
    // The compiled validator on its own, without zod behind it: where it would send a message to
    // zod, zod must reject it too (otherwise the fast path is merely slower, but it says the
    // translation is off).
    if (!textValue.includes('\\u') && typeof event.type === 'string' && validators.has(event.type)) {
      assert.equal(
        validators.get(event.type)!(JSON.parse(textValue)),
        fast.ok,
        `compiled verdict #${i}: ${textValue}`,
      );
    }
    if (fast.ok) accepted++;
    else rejected++;
  }
  // Both verdicts must be well represented, or the comparison says little.
  assert.ok(accepted > 2000 && rejected > 2000, `accepted ${accepted}, rejected ${rejected}`);
});

test('texts JSON.stringify never writes: huge numbers, escapes, __proto__, non-objects', () => {
  const parse = createLedgerEventParser();
  const rand = random(3);
  const base = () => JSON.stringify(generate(members[0], rand));
  const cases = [
    base().replace(/"argumentsDigest"/, '"durationMs":1e400,"argumentsDigest"'),
    JSON.stringify(generate(members[1], rand)).replace(/"durationMs":[^,}]+/, '"durationMs":1e400'),
    JSON.stringify(generate(members[1], rand)).replace(/"durationMs":[^,}]+/, '"durationMs":-0'),
    JSON.stringify({ ...(generate(members[1], rand) as object), redactions: { x: 1 } }).replace(
      '"redactions":{"x":1}',
      '"redactions":{"x":1e400}',
    ),
    JSON.stringify({ ...(generate(members[1], rand) as object), redactions: { x: 1 } }).replace(
      '"redactions":{"x":1}',
      '"redactions":{"x":1.0,"y":2e0,"z":9007199254740993}',
    ),
    base().replace('{', '{"__proto__":{"polluted":1},'),
    base().replace('{', '{"\\u005f_proto__":{"polluted":1},'),
    JSON.stringify({ ...(generate(members[0], rand) as object), redactedArguments: { a: 1 } }).replace(
      '"redactedArguments":{',
      '"redactedArguments":{"__proto__":{"b":2},',
    ),
    base().replace('"type":"tool_call.requested"', '"type":"tool_call.\\u0072equested"'),
    base().replace('"type":"tool_call.requested"', '"type":"__proto__"'),
    base().replace('"type":"tool_call.requested"', '"type":"constructor"'),
    base().replace('"type":"tool_call.requested"', '"type":1'),
    base().replace(/"eventId":"[^"]+"/, '"eventId":"\\ud800"'),
    base().replace(/,"type":"tool_call.requested"|"type":"tool_call.requested",?/, ''),
    '[]',
    'null',
    '"tool_call.requested"',
    '{}',
    '{"type":"tool_call.requested"',
    '',
  ];
  for (const [i, value] of cases.entries()) assertSame(value, parse(value), `case ${i}`);
  assert.deepEqual(parse(null), parseLedgerEvent(null));
});
