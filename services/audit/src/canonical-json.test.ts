import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import canonicalize from 'canonicalize';
import { random } from '../../../test/support/generated-events.ts';
import { loadEvent } from '../../../test/support/ledger.ts';
import { canonicalJson } from './canonical-json.ts';
import { CHAIN_FORMAT, canonicalRowContent, type LedgerRow, rowHash } from './chain.ts';

// canonicalJson must be the `canonicalize` library's output byte for byte (or fail where it
// fails): the ledger's hashes, and every chain already written, depend on it.

const PIECES = [
  'a',
  'Z',
  'é',
  '€',
  '😀',
  '\u0000',
  '\u001f',
  '\u007f',
  '"',
  '\\',
  '/',
  '\n',
  '\t',
  '\u2028',
  '\ud800',
  '\udfff',
  '\\ud800',
  'ud',
  '0',
  '10',
  '-1',
  '01',
  '__proto__',
  'toJSON',
  ' ',
  'key',
  '\ufeff',
  'ﬀ',
  '\u00e9',
  'e\u0301',
];

function genString(rand: () => number, surrogates: boolean): string {
  let out = '';
  const n = Math.floor(rand() * 6);
  for (let i = 0; i < n; i++) {
    const piece = PIECES[Math.floor(rand() * PIECES.length)]!;
    if (!surrogates && !piece.isWellFormed()) continue;
    out += piece;
  }
  return out;
}

const NUMBERS = [
  0,
  -0,
  1,
  -1,
  0.1,
  1e21,
  1e-7,
  123456789012345680000,
  5e-324,
  1.7976931348623157e308,
  2 ** 53,
  -(2 ** 53) - 2,
  0.000001,
  333333333.3333333,
  1e300 * 1e10,
  Number.NaN,
  4.35,
  1 / 3,
];

function genValue(rand: () => number, depth: number, odd: boolean): unknown {
  const kind = Math.floor(rand() * (depth > 3 ? 5 : 7));
  switch (kind) {
    case 0:
      return genString(rand, odd);
    case 1: {
      const n = NUMBERS[Math.floor(rand() * NUMBERS.length)]!;
      if (!odd && !Number.isFinite(n)) return 7;
      return rand() < 0.5 ? n : (rand() - 0.5) * 10 ** Math.floor(rand() * 30 - 10);
    }
    case 2:
      return rand() < 0.5;
    case 3:
      return null;
    case 4:
      return odd && rand() < 0.3 ? undefined : genString(rand, false);
    case 5:
      return Array.from({ length: Math.floor(rand() * 4) }, () => genValue(rand, depth + 1, odd));
    default: {
      const object: Record<string, unknown> = {};
      const n = Math.floor(rand() * 6);
      for (let i = 0; i < n; i++) {
        const key = genString(rand, odd);
        if (key === '__proto__') continue; // an assignment would set the prototype, not a member
        object[key] = genValue(rand, depth + 1, odd);
      }
      return object;
    }
  }
}

function outcome(f: () => string | undefined): { ok: true; text: string | undefined } | { ok: false } {
  try {
    return { ok: true, text: f() };
  } catch {
    return { ok: false };
  }
}

test('canonicalJson equals canonicalize on 20,000 generated JSON values, and fails where it fails', () => {
  const rand = random(8785);
  let refused = 0;
  for (let i = 0; i < 20000; i++) {
    const odd = i % 2 === 1;
    const value = genValue(rand, 0, odd);
    const expected = outcome(() => canonicalize(value));
    const actual = outcome(() => canonicalJson(value));
    if (!expected.ok) refused++;
    if (expected.ok && expected.text === undefined) {
      assert.equal(actual.ok, false, `case ${i}: no JSON form, must throw`);
      continue;
    }
    assert.deepEqual(actual, expected, `case ${i}: ${JSON.stringify(value)}`);
    // The same value as it would arrive from Kafka: through JSON text and JSON.parse.
    if (expected.ok && expected.text !== undefined) {
      const parsed = JSON.parse(expected.text);
      assert.equal(canonicalJson(parsed), canonicalize(parsed), `case ${i} after JSON.parse`);
    }
  }
  assert.ok(refused > 100, `the generator must also produce values canonicalize refuses (${refused})`);
});

test('canonicalJson keeps RFC 8785 order for integer-like, __proto__ and non-ASCII keys', () => {
  const cases: unknown[] = [
    JSON.parse('{"10":1,"9":2,"a":3,"1":4,"01":5,"-1":6}'),
    JSON.parse('{"__proto__":{"x":1},"_":2}'),
    { '€': 1, é: 2, '😀': 3, '\ufb00': 4, Z: 5, a: 6 },
    JSON.parse('{"toJSON":"a string member","b":[1,{"2":0,"1":0}]}'),
    { a: new Date(0) },
    [undefined, 1],
    { lone: '\ud83d' },
    { fine: '\\ud83d' },
    Object.create(null),
    { deep: JSON.parse(`${'['.repeat(150)}1${']'.repeat(150)}`) },
  ];
  for (const value of cases) {
    assert.deepEqual(
      outcome(() => canonicalJson(value)),
      outcome(() => canonicalize(value)),
    );
  }
});

/** The hash rule as first written (ADR 0010): SHA-256 of canonicalize over the row and the tag. */
function originalRowHash(row: LedgerRow): string {
  const text = canonicalize({ format: CHAIN_FORMAT, ...row });
  return createHash('sha256')
    .update(text ?? '', 'utf8')
    .digest('hex');
}

test('row hashes are unchanged: rowHash equals the original canonicalize rule on generated rows', () => {
  const rand = random(12);
  for (let i = 0; i < 3000; i++) {
    const event = JSON.parse(JSON.stringify(loadEvent(i))) as Record<string, unknown>;
    if (i % 3 === 0) event.extra = genValue(rand, 1, false); // payloads of any shape, not just one
    const row: LedgerRow = {
      eventId: String(event.eventId),
      callId: i % 10 === 0 ? null : String(event.callId),
      eventType: String(event.type),
      eventVersion: 1,
      occurredAt: String(event.occurredAt),
      recordedAt: new Date(1764300000000 + i).toISOString(),
      payload: event,
      sourceTopic: `t${i % 3}.audit.v1`,
      sourcePartition: i % 6,
      sourceOffset: String(2 ** 40 + i),
      chainId: `2026-11-28/t${i % 3}.audit.v1/${i % 6}`,
      chainSeq: i + 1,
      prevHash: createHash('sha256').update(String(i)).digest('hex'),
    };
    assert.equal(canonicalRowContent(row), canonicalize({ format: CHAIN_FORMAT, ...row }));
    assert.equal(rowHash(row), originalRowHash(row));
  }
});
