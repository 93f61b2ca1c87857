/**
 * zod 4 schema → JSON Schema, for ajv (compiled-schema.ts). Exact or nothing: a schema is
 * translated only when every part of it has a JSON Schema that accepts exactly what zod accepts
 * and lets ajv produce exactly zod's output; anything else (refinements, transforms, defaults,
 * other string formats, catch-alls, unions…) makes the whole translation undefined, so the caller
 * keeps zod for it. A schema change ajv could not express can thus make the fast path slower,
 * never more lenient than zod.
 *
 * Besides zod's own rules the translation adds, for values built in memory rather than by
 * JSON.parse, what zod does that JSON Schema does not say (the custom keywords `plainObject` and
 * `noSymbolKeys`, defined in compiled-schema.ts, refuse such values so that zod decides them):
 * - zod's records take plain objects only and read symbol keys too;
 * - zod copies a stripping object's members into a fresh plain object, so an inherited member
 *   becomes an own one in its output (a class instance is left to zod);
 * - zod skips a record's `__proto__` key (JSON.parse makes it an own key): such a record is left
 *   to zod, which drops it.
 */

export type JsonSchema = Record<string, unknown>;

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
 * something this translation does not know.
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
    case 'boolean':
      if (checks.length > 0) throw new Untranslatable('boolean check');
      return { type: 'boolean' };
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
        // zod reads a missing member through the prototype (`input.toString`), ajv as absent.
        if (key in Object.prototype) throw new Untranslatable(`member ${key}`);
        const valueDef = value._zod.def;
        if (valueDef.type === 'optional') {
          if ((valueDef.checks ?? []).length > 0) throw new Untranslatable('optional check');
          properties[key] = translate(inner(valueDef.innerType));
        } else {
          properties[key] = translate(valueDef);
          required.push(key);
        }
      }
      const out: JsonSchema = { type: 'object', plainObject: true, properties, required };
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
        plainObject: true,
        noSymbolKeys: true,
        // zod skips a `__proto__` key (its output lacks it): ajv refuses it, so zod decides.
        propertyNames: { allOf: [translate(keyType), { not: { const: '__proto__' } }] },
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
