/**
 * Values generated from zod schemas (the contracts' events, the policy's result), for the
 * differential tests of the compiled validators (@portcullis/compiled-schema) against zod: valid
 * values (optional members present at random) and mutated ones (a value replaced, a member
 * removed, an unknown member added). Seeded, so a failure names a reproducible case; a pattern
 * without a sample here fails loudly.
 */

/** The seeded PRNG every generator here takes, so a failure names a reproducible case. */
export { seededRandom as random } from '@portcullis/testing';

export type Rand = () => number;
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
export function generate(schema: unknown, rand: Rand): unknown {
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
    case 'boolean':
      return rand() < 0.5;
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
export function mutate(event: Record<string, unknown>, rand: Rand): Record<string, unknown> {
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
