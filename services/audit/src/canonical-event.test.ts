import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LedgerEvent, parseLedgerEvent } from '@portcullis/contracts';
import canonicalize from 'canonicalize';
import { generate, mutate, random } from '../../../test/support/generated-events.ts';
import { canonicalEventJson, schemaCanonicalText } from './canonical-event.ts';
import { canonicalJson } from './canonical-json.ts';

// canonicalEventJson must be canonicalJson (and so the `canonicalize` library) byte for byte on
// every event the ledger accepts: each row's hash depends on it.

const members = LedgerEvent.options;

function assertSameText(event: LedgerEvent, label: string): void {
  let expected: string | Error;
  try {
    expected = canonicalJson(event);
  } catch (error) {
    expected = error as Error;
  }
  if (expected instanceof Error) {
    assert.throws(() => canonicalEventJson(event), label);
    return;
  }
  assert.equal(canonicalEventJson(event), expected, label);
  assert.equal(expected, canonicalize(event), label);
}

test('generated valid and mutated-but-accepted events: the same text as canonicalJson', () => {
  const rand = random(11);
  let compared = 0;
  for (let i = 0; i < 20000; i++) {
    const member = members[i % members.length]!;
    const generated = generate(member, rand) as Record<string, unknown>;
    const candidate = i % 2 === 0 ? generated : mutate(generated, rand);
    const parsed = parseLedgerEvent(JSON.stringify(candidate));
    if (!parsed.ok) continue;
    assertSameText(parsed.event, `#${i}: ${JSON.stringify(candidate)}`);
    // Written from the schema, not merely canonicalJson's fallback.
    if (i % 2 === 0) assert.notEqual(schemaCanonicalText(parsed.event), undefined, JSON.stringify(candidate));
    compared++;
  }
  assert.ok(compared > 10000, `only ${compared} events compared`);
});

test('free-shaped members with awkward keys and values, and values the schema does not expect', () => {
  const rand = random(12);
  const requested = () => parseLedgerEvent(JSON.stringify(generate(members[0], rand)));
  const base = requested();
  assert.ok(base.ok);
  const awkward: unknown[] = [
    { b: 1, a: [2, { d: null, c: 'é' }], '': 0 },
    { 10: 'x', 2: 'y', a: 1 },
    { ['__proto__']: 1 },
    { ﬀ: 1, '\u00e9': 2, e: 3, '😀': 4, '\u007f': 5 },
    { n: [1e21, 1e-7, -0, 0.1, 123456789012345680000, 5e-324] },
    { s: 'line\nbreak\t"quoted"\\ \u2028 \u0000' },
    { lone: '\ud800' },
    { deep: { er: { est: [[[]]] } } },
  ];
  for (const [i, redactedArguments] of awkward.entries()) {
    assertSameText({ ...base.event, redactedArguments } as LedgerEvent, `awkward #${i}`);
  }
  // Not what validation lets through; the general path answers for them.
  const odd: unknown[] = [
    { ...base.event, extra: 'not in the schema' },
    { ...base.event, agent: 'not an object' },
    { ...base.event, decision: { ...(base.event as { decision: object }).decision, reasons: 'x' } },
    { ...base.event, type: 'unknown.type' },
    { ...base.event, eventId: '\udfff' },
  ];
  for (const [i, event] of odd.entries()) assertSameText(event as LedgerEvent, `odd #${i}`);
});
