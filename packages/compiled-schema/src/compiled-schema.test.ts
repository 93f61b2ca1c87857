import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AuditEvent, LedgerEvent } from '@portcullis/contracts';
import { z } from 'zod';
import { generate, mutate, type Rand, random } from '../../../test/support/generated-events.ts';
import { type CompiledSchema, compileSchema } from './compiled-schema.ts';
import { toJsonSchema } from './json-schema.ts';

// The compiled schema must be zod, observably: on every value the same verdict, the same output
// (zod strips unknown keys of plain objects) and, on a rejection, the same error. Values are
// generated from the zod schemas themselves (test/support/generated-events.ts), so a new member or
// field is covered without editing this file.

type Result = z.ZodSafeParseResult<unknown>;

function assertSameResult(fast: Result, reference: Result, label: string): void {
  assert.equal(fast.success, reference.success, `${label}: verdicts differ`);
  if (fast.success && reference.success) {
    assert.deepStrictEqual(fast.data, reference.data, `${label}: outputs differ`);
    assert.equal(JSON.stringify(sorted(fast.data)), JSON.stringify(sorted(reference.data)), label);
  } else if (!fast.success && !reference.success) {
    assert.equal(z.prettifyError(fast.error), z.prettifyError(reference.error), `${label}: errors differ`);
  }
}

/** The value with its object keys sorted, so key order (which the fast path keeps) is ignored. */
function sorted(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sorted);
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.keys(value)
      .sort()
      .map((k) => [k, sorted((value as Record<string, unknown>)[k])]),
  );
}

/**
 * Checks both modes on one value: `to-zod` never modifies it and matches zod; `in-place` (on a
 * copy, as its callers own their value) matches zod on the original.
 */
function assertLikeZod(
  toZod: CompiledSchema<unknown>,
  inPlace: CompiledSchema<unknown>,
  value: unknown,
  label: string,
): { fastPath: boolean; accepted: boolean } {
  const reference = toZod.schema.safeParse(value);
  const before = structuredClone(value);
  assertSameResult(toZod.safeParse(value), reference, `${label} to-zod`);
  assert.deepStrictEqual(value, before, `${label}: to-zod modified its input`);
  const copy = structuredClone(value);
  const fastPath = inPlace.accepts(structuredClone(value));
  assertSameResult(inPlace.safeParse(copy), reference, `${label} in-place`);
  // Not merely zod behind it: in-place, the compiled verdict on its own is zod's.
  assert.equal(fastPath, reference.success, `${label}: the compiled verdict is not zod's`);
  // to-zod takes the fast path only for what zod accepts unchanged.
  if (toZod.accepts(structuredClone(value))) assert.ok(reference.success, label);
  return { fastPath, accepted: reference.success };
}

const ledgerMembers = LedgerEvent.options;

for (const [name, schema] of [
  ['LedgerEvent', LedgerEvent],
  ['AuditEvent', AuditEvent],
] as const) {
  const members = schema.options as readonly z.ZodObject[];

  test(`${name}: every member of the union is compiled (none falls back to zod wholesale)`, () => {
    const compiled = compileSchema(schema);
    assert.deepEqual(
      [...compiled.validators.keys()].sort(),
      members.map((m) => (m.shape.type as z.ZodLiteral<string>).value).sort(),
    );
  });

  test(`${name}: generated valid values take the fast path and equal zod's output`, () => {
    const toZod = compileSchema(schema);
    const inPlace = compileSchema(schema, { strip: 'in-place' });
    const rand = random(1);
    for (let i = 0; i < 3000; i++) {
      const value = generate(members[i % members.length], rand);
      const { fastPath } = assertLikeZod(toZod, inPlace, value, `valid #${i}`);
      assert.ok(fastPath, `valid #${i} missed the fast path: ${JSON.stringify(value)}`);
      assert.ok(toZod.accepts(value), `valid #${i} missed the to-zod fast path`);
    }
  });

  test(`${name}: generated mutated values: the same verdict, output and error as zod`, () => {
    const toZod = compileSchema(schema);
    const inPlace = compileSchema(schema, { strip: 'in-place' });
    const rand = random(2);
    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < 15000; i++) {
      const value = mutate(generate(members[i % members.length], rand) as Record<string, unknown>, rand);
      if (assertLikeZod(toZod, inPlace, value, `mutated #${i}`).accepted) accepted++;
      else rejected++;
    }
    // Both verdicts must be well represented, or the comparison says little.
    assert.ok(accepted > 1500 && rejected > 1500, `accepted ${accepted}, rejected ${rejected}`);
  });
}

/** A valid tool_call.completed event with a record, to place odd in-memory values in. */
function completed(rand: Rand): Record<string, unknown> {
  return { ...(generate(AuditEvent.options[1], rand) as Record<string, unknown>), redactions: { email: 1 } };
}

function without(value: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy = { ...value };
  delete copy[key];
  return copy;
}

test('values JSON.parse never makes: class instances, symbols, inherited members, NaN, lone surrogates', () => {
  const toZod = compileSchema(LedgerEvent);
  const inPlace = compileSchema(LedgerEvent, { strip: 'in-place' });
  const rand = random(3);
  class Counts {
    email = 1;
  }
  const withProto = (proto: object, own: object) => Object.assign(Object.create(proto), own);
  const cases: [string, unknown][] = [
    ['class instance as record', { ...completed(rand), redactions: new Counts() }],
    ['Map as record', { ...completed(rand), redactions: new Map([['email', 1]]) }],
    ['Date as record', { ...completed(rand), redactedResult: new Date() }],
    ['symbol key in record', { ...completed(rand), redactions: { email: 1, [Symbol('s')]: 2 } }],
    [
      'null-prototype record',
      { ...completed(rand), redactions: withProto(Object.create(null), { email: 2 }) },
    ],
    [
      'own __proto__ in record',
      { ...completed(rand), redactedResult: JSON.parse('{"__proto__":{"a":1},"b":2}') },
    ],
    [
      'own __proto__ in object',
      { ...completed(rand), source: JSON.parse('{"__proto__":1,"service":"b","instanceId":"i"}') },
    ],
    ['inherited member', withProto({ outcome: 'succeeded' }, without(completed(rand), 'outcome'))],
    ['class instance event', withProto({ polluted: true }, completed(rand))],
    ['optional member undefined', { ...completed(rand), traceId: undefined }],
    ['required member undefined', { ...completed(rand), durationMs: undefined }],
    ['NaN', { ...completed(rand), durationMs: Number.NaN }],
    ['Infinity', { ...completed(rand), durationMs: Number.POSITIVE_INFINITY }],
    ['-0', { ...completed(rand), durationMs: -0 }],
    ['bigint', { ...completed(rand), durationMs: 1n }],
    ['boxed string', { ...completed(rand), callId: new String(generate(z.uuid(), rand)) }],
    [
      'lone surrogate at the limit',
      { ...completed(rand), error: { code: 'x', message: `${'a'.repeat(999)}\ud800` } },
    ],
    ['pair over the unit limit', { ...completed(rand), error: { code: 'x', message: '😀'.repeat(600) } }],
    ['lone surrogates over', { ...completed(rand), error: { code: 'x', message: '\ud800'.repeat(1001) } }],
    ['array as event', [completed(rand)]],
    ['function in unknown', { ...completed(rand), redactedResult: { f: () => 1 } }],
    ['undefined', undefined],
    ['string', 'tool_call.completed'],
  ];
  for (const [label, value] of cases) {
    const reference = LedgerEvent.safeParse(value);
    assertSameResult(toZod.safeParse(value), reference, `${label} to-zod`);
    // JSON.parse never makes these, so in-place is checked for its verdict only.
    assert.equal(inPlace.safeParse(value).success, reference.success, `${label} in-place`);
  }
});

test('booleans translate; what the translation cannot express exactly is not compiled', () => {
  const flags = compileSchema(z.object({ on: z.boolean() }));
  assert.equal(flags.accepts({ on: false }), true);
  assert.equal(flags.accepts({ on: 0 }), false);
  assert.equal(toJsonSchema(z.object({ a: z.string().refine((s) => s !== 'x') })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.string().transform((s) => s.length) })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.email() })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.string().regex(/^a$/i) })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.string().default('x') })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.string() }).catchall(z.number())), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.number().multipleOf(2) })), undefined);
  assert.equal(toJsonSchema(z.looseObject({ a: z.string() })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.enum(['x', 'y']).refine((v) => v === 'x') })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.literal('x').refine(() => false) })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.array(z.string()).refine((v) => v.length !== 2) })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.record(z.string(), z.number()).refine(() => true) })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.unknown().refine(() => true) })), undefined);
  assert.equal(toJsonSchema(z.object({ a: z.boolean().refine(() => true) })), undefined);
  assert.equal(toJsonSchema(z.object({ toString: z.string() })), undefined);
  assert.equal(
    toJsonSchema(
      z.object({
        a: z
          .string()
          .optional()
          .refine(() => true),
      }),
    ),
    undefined,
  );
  assert.equal(toJsonSchema(z.object({ a: z.string() }).refine(() => true)), undefined);
  assert.notEqual(toJsonSchema(z.strictObject({ a: z.string() })), undefined);
});

test('an uncompiled schema or member is left to zod entirely', () => {
  const refined = compileSchema(z.object({ a: z.string().refine((s) => s !== 'x', 'not x') }));
  assert.equal(refined.validators.size, 0);
  assert.equal(refined.accepts({ a: 'y' }), false);
  assert.deepEqual(refined.parse({ a: 'y', b: 1 }), { a: 'y' });
  assert.throws(() => refined.parse({ a: 'x' }), /not x/);
  const union = compileSchema(
    z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('plain'), n: z.number() }),
      z.object({ kind: z.literal('odd'), n: z.number().refine((n) => n % 2 === 1, 'odd') }),
    ]),
  );
  assert.deepEqual([...union.validators.keys()], ['plain']);
  assert.equal(union.accepts({ kind: 'plain', n: 2 }), true);
  assert.equal(union.accepts({ kind: 'odd', n: 3 }), false);
  assert.deepEqual(union.parse({ kind: 'odd', n: 3 }), { kind: 'odd', n: 3 });
  assert.throws(() => union.parse({ kind: 'odd', n: 2 }), /odd/);
});

test('to-zod never modifies its input; in-place deletes exactly the keys zod strips', () => {
  const rand = random(4);
  const event: Record<string, unknown> = { ...(generate(ledgerMembers[1], rand) as object), extra: 1 };
  (event.source as Record<string, unknown>).hidden = 'x';
  const original = structuredClone(event);
  const stripped = compileSchema(AuditEvent).parse(event);
  assert.deepStrictEqual(event, original);
  assert.equal('extra' in stripped, false);
  const inPlace = compileSchema(AuditEvent, { strip: 'in-place' });
  assert.equal(inPlace.accepts(event), true);
  assert.deepStrictEqual(event, AuditEvent.parse(original));
});
