import { LedgerEvent, parseLedgerEvent } from '@portcullis/contracts';
import { Ajv, type ValidateFunction } from 'ajv';

/**
 * The ledger's parser of Kafka message values: the same verdicts and the same events as
 * `parseLedgerEvent` (zod), at a fraction of its cost for the events that pass (ADR 0012, fourth
 * round; ledger-event-parser.test.ts compares both on generated valid and mutated events).
 *
 * How: each member of the `LedgerEvent` union is translated into a JSON Schema from its zod
 * definition, compiled once by ajv, and chosen by the event's `type` (the union's discriminator).
 * ajv validates the object JSON.parse made, in place: unknown keys of zod's stripping objects are
 * deleted (`removeAdditional`), so what passes is the value zod would return, without zod's copy.
 *
 * Only what zod would surely accept takes the fast path; everything else goes to zod, whose
 * verdict and dead-letter reason are then the ones used:
 * - a message ajv rejects (so every reason is zod's own wording);
 * - text holding a `\u` escape or `__proto__` (zod's records skip a `__proto__` key, and escapes
 *   can spell one);
 * - a union member using anything the translation does not know (refinements, transforms, other
 *   string formats, catch-alls…): that member is never compiled, so a schema change that ajv could
 *   not express cannot make the fast path more lenient than zod.
 */
export type LedgerEventParser = typeof parseLedgerEvent;

let shared: LedgerEventParser | undefined;

/** parseLedgerEvent through the compiled validators, compiled once per process. */
export const parseLedgerEventFast: LedgerEventParser = (value) => {
  shared ??= createLedgerEventParser();
  return shared(value);
};

/** Compiles parseLedgerEventFast's validators now (≈ 0.1 s), not in the first batch. */
export function prepareLedgerEventParser(): void {
  shared ??= createLedgerEventParser();
}

/** Builds a parser (compiles the schemas, ≈ 0.1 s). */
export function createLedgerEventParser(): LedgerEventParser {
  const validators = compileMembers();
  return (value) => {
    if (value === null) return parseLedgerEvent(value);
    const text = typeof value === 'string' ? value : value.toString('utf8');
    if (text.includes('\\u') || text.includes('__proto__')) return parseLedgerEvent(text);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return parseLedgerEvent(text);
    }
    if (typeof json !== 'object' || json === null || Array.isArray(json)) return parseLedgerEvent(text);
    const type = (json as { type?: unknown }).type;
    const validate = typeof type === 'string' ? validators.get(type) : undefined;
    // ajv may have deleted keys before failing, so zod gets the original text, not this object.
    if (validate === undefined || !validate(json)) return parseLedgerEvent(text);
    return { ok: true, event: json as LedgerEvent };
  };
}

/** The compiled validator of each union member ajv can express exactly, by its `type` literal. */
export function compileMembers(): Map<string, ValidateFunction> {
  const ajv = new Ajv({
    // zod strips unknown keys of plain objects; the translation marks exactly those objects.
    removeAdditional: true,
    // Lengths stay in code points (ajv's default), which is how zod 4.6 measures a string too.
    // zod tests its patterns without flags; ajv would add `u`.
    unicodeRegExp: false,
    // zod's numbers refuse Infinity (JSON.parse makes it of 1e400); ajv's only with this.
    strictNumbers: true,
    allErrors: false,
    validateFormats: false,
  });
  const validators = new Map<string, ValidateFunction>();
  for (const member of LedgerEvent.options) {
    const type = member.shape.type.value;
    const schema = toJsonSchema(member);
    if (schema !== undefined) validators.set(type, ajv.compile(schema));
  }
  return validators;
}

type JsonSchema = Record<string, unknown>;

/** Structure of the zod internals the translation reads (zod 4 `_zod.def`). */
interface ZodDef {
  type: string;
  checks?: { _zod: { def: Record<string, unknown> } }[];
  format?: string;
  pattern?: RegExp;
  shape?: Record<string, { _zod: { def: ZodDef } }>;
  catchall?: { _zod: { def: ZodDef } };
  innerType?: { _zod: { def: ZodDef } };
  element?: { _zod: { def: ZodDef } };
  keyType?: { _zod: { def: ZodDef } };
  valueType?: { _zod: { def: ZodDef } };
  values?: unknown[];
  entries?: Record<string, unknown>;
}

/** The formats whose zod check is their pattern and nothing else (zod's $ZodCheckStringFormat). */
const PATTERN_FORMATS = new Set(['uuid', 'datetime', 'regex']);

/**
 * A JSON Schema that accepts exactly what `schema` accepts, or undefined when the schema uses
 * something this translation does not know. Exported for its test.
 */
export function toJsonSchema(schema: unknown): JsonSchema | undefined {
  try {
    return translate((schema as { _zod: { def: ZodDef } })._zod.def);
  } catch (error) {
    if (error instanceof Untranslatable) return undefined;
    throw error;
  }
}

class Untranslatable extends Error {}

function pattern(regex: RegExp | undefined): string {
  // A flag (g, i, y, u…) changes what matches or makes the test stateful: not translated.
  if (!(regex instanceof RegExp) || regex.flags !== '') throw new Untranslatable('pattern');
  return regex.source;
}

function translate(def: ZodDef): JsonSchema {
  const checks = (def.checks ?? []).map((c) => c._zod.def);
  switch (def.type) {
    case 'string': {
      const out: JsonSchema = { type: 'string' };
      const patterns: string[] = [];
      // z.uuid(), z.iso.datetime(): the schema is itself a pattern-only format check.
      if (def.format !== undefined) {
        if (!PATTERN_FORMATS.has(def.format)) throw new Untranslatable(def.format);
        patterns.push(pattern(def.pattern));
      }
      for (const check of checks) {
        if (check.check === 'min_length') out.minLength = check.minimum;
        else if (check.check === 'max_length') out.maxLength = check.maximum;
        else if (check.check === 'string_format' && PATTERN_FORMATS.has(String(check.format))) {
          patterns.push(pattern(check.pattern as RegExp));
        } else throw new Untranslatable(String(check.check));
        if (check.when !== undefined && check.check !== 'min_length' && check.check !== 'max_length') {
          throw new Untranslatable('when');
        }
      }
      if (patterns.length === 1) out.pattern = patterns[0];
      else if (patterns.length > 1) out.allOf = patterns.map((p) => ({ pattern: p }));
      return out;
    }
    case 'number': {
      const out: JsonSchema = { type: 'number' };
      for (const check of checks) {
        if (check.check === 'greater_than') {
          out[check.inclusive ? 'minimum' : 'exclusiveMinimum'] = check.value;
        } else if (check.check === 'less_than') {
          out[check.inclusive ? 'maximum' : 'exclusiveMaximum'] = check.value;
        } else if (check.check === 'number_format' && check.format === 'safeint') {
          // zod's int(): a safe integer; both bounds of a check list apply, so they go in allOf.
          out.allOf = [
            ...((out.allOf as JsonSchema[] | undefined) ?? []),
            { type: 'integer', minimum: Number.MIN_SAFE_INTEGER, maximum: Number.MAX_SAFE_INTEGER },
          ];
        } else throw new Untranslatable(String(check.check));
      }
      return out;
    }
    case 'literal': {
      if (checks.length > 0) throw new Untranslatable('literal check');
      const values = def.values ?? [];
      if (!values.every((v) => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)))) {
        throw new Untranslatable('literal');
      }
      return { enum: values };
    }
    case 'enum': {
      if (checks.length > 0) throw new Untranslatable('enum check');
      const values = Object.values(def.entries ?? {});
      if (!values.every((v) => typeof v === 'string')) throw new Untranslatable('enum');
      return { type: 'string', enum: values };
    }
    case 'array': {
      const out: JsonSchema = { type: 'array', items: translate(inner(def.element)) };
      for (const check of checks) {
        if (check.check === 'min_length') out.minItems = check.minimum;
        else if (check.check === 'max_length') out.maxItems = check.maximum;
        else throw new Untranslatable(String(check.check));
      }
      return out;
    }
    case 'object': {
      if (checks.length > 0) throw new Untranslatable('object check');
      const properties: Record<string, JsonSchema> = {};
      const required: string[] = [];
      for (const [key, value] of Object.entries(def.shape ?? {})) {
        const valueDef = value._zod.def;
        if (valueDef.type === 'optional') {
          if ((valueDef.checks ?? []).length > 0) throw new Untranslatable('optional check');
          properties[key] = translate(inner(valueDef.innerType));
        } else {
          properties[key] = translate(valueDef);
          required.push(key);
        }
      }
      const out: JsonSchema = { type: 'object', properties, required };
      const catchall = def.catchall?._zod.def.type;
      if (catchall === undefined) {
        // zod strips unknown keys: ajv deletes them (removeAdditional acts on `false` only).
        out.additionalProperties = false;
      } else if (catchall === 'never') {
        // A strict object rejects unknown keys: said without additionalProperties, so ajv refuses
        // them instead of deleting them.
        out.propertyNames = { enum: Object.keys(properties) };
      } else throw new Untranslatable('catchall');
      return out;
    }
    case 'record': {
      if (checks.length > 0) throw new Untranslatable('record check');
      const keyType = inner(def.keyType);
      if (keyType.type !== 'string') throw new Untranslatable('record key');
      return {
        type: 'object',
        propertyNames: translate(keyType),
        additionalProperties: translate(inner(def.valueType)),
      };
    }
    case 'unknown':
      if (checks.length > 0) throw new Untranslatable('unknown check');
      return {};
    default:
      throw new Untranslatable(def.type);
  }
}

function inner(schema: { _zod: { def: ZodDef } } | undefined): ZodDef {
  if (schema === undefined) throw new Untranslatable('missing inner schema');
  return schema._zod.def;
}
