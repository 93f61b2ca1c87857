import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LedgerEvent, parseLedgerEvent } from '@portcullis/contracts';
import { z } from 'zod';
import { canonicalJson } from './canonical-json.ts';
import { compileMembers, createLedgerEventParser, toJsonSchema } from './ledger-event-parser.ts';

// The compiled parser must be zod, observably: the same accept/reject on every message, the same
// event (zod strips unknown keys of plain objects) and so the same canonical payload and hash.
// Events are generated from the zod schemas themselves, so a new member or field is covered
// without editing this file; a pattern this file cannot generate for fails the test.

/** A small seeded PRNG (mulberry32), so a failure names a reproducible case. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const pick = <T>(rand: Rand, items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;
const hex = (rand: Rand, n: number) =>
  Array.from({ length: n }, () => pick(rand, [...'0123456789abcdef'])).join('');

const PIECES = ['a', 'Z', 'é', '€', '😀', '"', '\\', '/', '\n', '\t', ' ', '\u2028', 'x_1', '0', 'Ω'];

function text(rand: Rand, min = 0): string {
  let out = '';
  const n = min + Math.floor(rand() * 8);
  while (out.length < n) out += pick(rand, PIECES);
  return out;
}

function uuid(rand: Rand): string {
  const v = pick(rand, [...'12345678']);
  const variant = pick(rand, [...'89abAB']);
  const h = hex(rand, 32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${v}${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20)}`;
}

function datetime(rand: Rand): string {
  const ms = Date.UTC(2026, 0, 1) + Math.floor(rand() * 365 * 86_400_000);
  const iso = new Date(ms).toISOString();
  switch (Math.floor(rand() * 4)) {
    case 0:
      return iso;
    case 1:
      return iso.replace(/\.\d+Z$/, 'Z');
    case 2:
      return iso.replace('Z', '+02:00');
    default:
      return iso.replace(/\.\d+Z$/, '.123456-05:30');
  }
}

/** A value for each regex the schemas use, by its source; a new one must be added here. */
const PATTERN_SAMPLES: Record<string, (rand: Rand) => string> = {
  '^[0-9a-f]{64}$': (rand) => hex(rand, 64),
  '^[0-9a-f]{32}$': (rand) => hex(rand, 32),
  '^[a-z][a-z0-9_]*$': (rand) => pick(rand, ['aws_access_key', 'email', 'x', 'card_2']),
};

interface Def {
  type: string;
  [key: string]: unknown;
}
const defOf = (schema: unknown) => (schema as { _zod: { def: Def } })._zod.def;

/** A valid value of a zod schema, optional members present at random. */
function generate(schema: unknown, rand: Rand): unknown {
  const def = defOf(schema);
  const checks = ((def.checks as { _zod: { def: Record<string, unknown> } }[] | undefined) ?? []).map(
    (c) => c._zod.def,
  );
  switch (def.type) {
    case 'string': {
      if (def.format === 'uuid') return uuid(rand);
      if (def.format === 'datetime') return datetime(rand);
      const regex = checks.find((c) => c.check === 'string_format');
      if (regex) {
        const sample = PATTERN_SAMPLES[(regex.pattern as RegExp).source];
        if (!sample) throw new Error(`no sample for pattern ${regex.pattern}`);
        return sample(rand);
      }
      const max = (checks.find((c) => c.check === 'max_length')?.maximum as number | undefined) ?? 50;
      const value = text(rand, 1);
      return value.length > max ? value.slice(0, max) : value;
    }
    case 'number': {
      const int = checks.some((c) => c.check === 'number_format');
      const value = rand() * 5000;
      return int ? 1 + Math.floor(value) : pick(rand, [0, value, Math.floor(value)]);
    }
    case 'literal':
      return (def.values as unknown[])[0];
    case 'enum':
      return pick(rand, Object.values(def.entries as Record<string, unknown>));
    case 'array': {
      const min = (checks.find((c) => c.check === 'min_length')?.minimum as number | undefined) ?? 0;
      return Array.from({ length: min + Math.floor(rand() * 3) }, () => generate(def.element, rand));
    }
    case 'optional':
      return generate(def.innerType, rand);
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(def.shape as Record<string, unknown>)) {
        if (defOf(value).type === 'optional' && rand() < 0.4) continue;
        out[key] = generate(value, rand);
      }
      return out;
    }
    case 'record': {
      const out: Record<string, unknown> = {};
      const n = Math.floor(rand() * 3);
      for (let i = 0; i < n; i++) out[generate(def.keyType, rand) as string] = generate(def.valueType, rand);
      return out;
    }
    case 'unknown':
      return pick(rand, [null, 1, 'x', [1, { a: 'b' }], { nested: { deep: [true, 2.5] } }, { b: 1, a: 2 }]);
    default:
      throw new Error(`cannot generate ${def.type}`);
  }
}

/** Something wrong (or just unusual) for a value at one place. */
const REPLACEMENTS: unknown[] = [
  null,
  true,
  0,
  -1,
  -0,
  0.5,
  1.5,
  2 ** 53,
  2 ** 53 - 1,
  -(2 ** 53),
  '',
  'x',
  'X'.repeat(1000),
  'X'.repeat(1001),
  '😀'.repeat(500),
  '😀'.repeat(501),
  'é'.repeat(1000),
  [],
  ['x'],
  {},
  { extra: 1 },
  '00000000-0000-0000-0000-000000000000',
  'ffffffff-ffff-ffff-ffff-ffffffffffff',
  'FFFFFFFF-FFFF-1FFF-8FFF-FFFFFFFFFFFF',
  '123e4567-e89b-02d3-a456-426614174000',
  '123e4567-e89b-12d3-c456-426614174000',
  '2026-02-29T00:00:00Z',
  '2028-02-29T00:00:00Z',
  '2026-11-28T24:00:00Z',
  '2026-11-28T10:00:00',
  '2026-11-28T10:00:00.5+14:00',
  '2026-11-28t10:00:00z',
  '2026-11-28T10:00Z',
  'A'.repeat(64),
  'a'.repeat(64),
  'a'.repeat(63),
  '0'.repeat(32),
  'aws_key',
  'Upper',
  'tool_call.requested',
  'approval.decided',
  'read',
  'allow',
  'deny',
  'no_entitlement',
];

const EXTRA_KEYS = ['extra', 'constructor', 'toString', 'hasOwnProperty', 'x_y', 'type', '0', 'payload'];

/** Every object and array inside a value, with the parent holding it. */
function places(value: unknown): { parent: Record<string, unknown> | unknown[]; key: string | number }[] {
  const out: { parent: Record<string, unknown> | unknown[]; key: string | number }[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) {
      v.forEach((item, i) => {
        out.push({ parent: v, key: i });
        walk(item);
      });
    } else if (typeof v === 'object' && v !== null) {
      for (const [key, item] of Object.entries(v)) {
        out.push({ parent: v as Record<string, unknown>, key });
        walk(item);
      }
    }
  };
  walk(value);
  return out;
}

function containers(value: unknown): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === 'object' && v !== null) {
      out.push(v as Record<string, unknown>);
      Object.values(v).forEach(walk);
    }
  };
  walk(value);
  return out;
}

/** One to three mutations: a replaced value, a removed member, or an added unknown member. */
function mutate(event: Record<string, unknown>, rand: Rand): Record<string, unknown> {
  const copy = structuredClone(event);
  const n = 1 + Math.floor(rand() * 3);
  for (let i = 0; i < n; i++) {
    const kind = rand();
    if (kind < 0.45) {
      const { parent, key } = pick(rand, places(copy));
      (parent as Record<string | number, unknown>)[key] = structuredClone(pick(rand, REPLACEMENTS));
    } else if (kind < 0.7) {
      const { parent, key } = pick(rand, places(copy));
      if (Array.isArray(parent)) parent.splice(key as number, 1);
      else delete parent[key as string];
    } else {
      const target = pick(rand, containers(copy));
      target[pick(rand, EXTRA_KEYS)] = structuredClone(pick(rand, REPLACEMENTS));
    }
  }
  return copy;
}

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

test('what the translation cannot express exactly is not compiled', () => {
  assert.equal(toJsonSchema(z.object({ a: z.string().refine((s) => s !== 'x') })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.string().transform((s) => s.length) })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.email() })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.string().regex(/^a$/i) })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.string().default('x') })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.string() }).catchall(z.number())), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.number().multipleOf(2) })), undefined);
  assert.equal(toJsonSchema(z.looseObject({ a: z.string() })), undefined);
  assert.notEqual(toJsonSchema(z.strictObject({ a: z.string() })), undefined);
});
