import { _, Ajv, type KeywordCxt, type ValidateFunction } from 'ajv';
import type { z } from 'zod';
import { toJsonSchema } from './json-schema.ts';

/**
 * A zod schema with an ajv validator compiled from it in front (ADR 0044): values the compiled
 * validator accepts are returned as they are, at a fraction of zod's cost; every other value goes
 * to zod, so each rejection, its error and zod's output for it are zod's own.
 *
 * What passes the fast path is the value zod would return, field for field (a test compares them
 * on generated and mutated values): ajv checks exactly what zod checks (json-schema.ts), and the
 * unknown keys zod strips are handled by `strip`. Differences that remain: zod returns a fresh
 * copy with its keys in schema order, the fast path returns the value itself with its own order.
 */
export interface CompiledSchema<T> {
  /** The zod schema, which decides every value the compiled validator does not accept. */
  readonly schema: z.ZodType<T>;
  /**
   * The compiled validators by discriminator value for a discriminated union (members the
   * translation cannot express are absent: zod handles them), or by '' for any other schema.
   */
  readonly validators: ReadonlyMap<string, ValidateFunction>;
  /** True when the compiled validator accepts `value` as zod's output; false: ask zod. */
  accepts(value: unknown): value is T;
  /** zod's `parse`: `value` itself when the compiled validator accepts it, else zod's verdict. */
  parse(value: unknown): T;
  /** zod's `safeParse`, with the same fast path as `parse`. */
  safeParse(value: unknown): z.ZodSafeParseResult<T>;
}

export interface CompileOptions {
  /**
   * What happens to keys a stripping `z.object` does not know (zod drops them from its copy):
   * - `in-place`: ajv deletes them from the value itself. Only for a value the caller owns alone
   *   (fresh from JSON.parse): even a rejected value may have lost such keys (zod ignores them, so
   *   its verdict is the same).
   * - `to-zod` (the default): a value with such keys is left to zod, which returns the stripped
   *   copy; the value itself is never modified.
   */
  strip?: 'in-place' | 'to-zod';
}

/** Compiles `schema` (≈ 1–100 ms, once per process); values it cannot express stay with zod. */
export function compileSchema<T>(schema: z.ZodType<T>, options: CompileOptions = {}): CompiledSchema<T> {
  const ajv = createAjv(options.strip ?? 'to-zod');
  const validators = new Map<string, ValidateFunction>();
  const def = (schema as unknown as { _zod: { def: UnionDef } })._zod.def;
  let accepts: (value: unknown) => boolean;
  if (def.type === 'union' && typeof def.discriminator === 'string') {
    // One validator per member, chosen by the discriminator, as zod's discriminated union does.
    const key = def.discriminator;
    for (const member of def.options) {
      const literal = member._zod.def.shape?.[key]?._zod.def;
      if (
        literal?.type !== 'literal' ||
        literal.values?.length !== 1 ||
        typeof literal.values[0] !== 'string'
      ) {
        continue;
      }
      const jsonSchema = toJsonSchema(member);
      if (jsonSchema !== undefined) validators.set(literal.values[0], ajv.compile(jsonSchema));
    }
    accepts = (value) => {
      if (typeof value !== 'object' || value === null) return false;
      const tag = (value as Record<string, unknown>)[key];
      const validate = typeof tag === 'string' && Object.hasOwn(value, key) ? validators.get(tag) : undefined;
      return validate?.(value) === true;
    };
  } else {
    const jsonSchema = toJsonSchema(schema);
    const validate = jsonSchema === undefined ? undefined : ajv.compile(jsonSchema);
    if (validate !== undefined) validators.set('', validate);
    accepts = validate === undefined ? () => false : (value) => validate(value);
  }
  return {
    schema,
    validators,
    accepts: accepts as (value: unknown) => value is T,
    parse: (value) => (accepts(value) ? (value as T) : schema.parse(value)),
    safeParse: (value) =>
      accepts(value)
        ? ({ success: true, data: value as T } as z.ZodSafeParseResult<T>)
        : schema.safeParse(value),
  };
}

interface UnionDef {
  type: string;
  discriminator?: string;
  options: {
    _zod: { def: { shape?: Record<string, { _zod: { def: { type: string; values?: unknown[] } } }> } };
  }[];
}

/** True when `data` has no own symbol keys (zod's records read them, and refuse them). */
function hasNoSymbolKeys(data: unknown): boolean {
  return typeof data !== 'object' || data === null || Object.getOwnPropertySymbols(data).length === 0;
}

function createAjv(strip: 'in-place' | 'to-zod'): Ajv {
  const ajv = new Ajv({
    // zod strips unknown keys of plain objects; the translation marks exactly those objects with
    // `additionalProperties: false`, which ajv either enforces (refuses) or applies (deletes).
    removeAdditional: strip === 'in-place',
    // Lengths stay in code points (ajv's default), which is how zod 4.6 measures a string too.
    // zod tests its patterns without flags; ajv would add `u`.
    unicodeRegExp: false,
    // zod's numbers refuse NaN and ±Infinity (JSON.parse makes Infinity of 1e400); ajv's only with this.
    strictNumbers: true,
    allErrors: false,
    validateFormats: false,
  });
  // Keywords of json-schema.ts for values built in memory, as inline code: ajv calls a `validate`
  // function with a context object (and its path string) made for every object checked.
  ajv.addKeyword({
    // A plain object: prototype Object.prototype or null (zod's records take nothing else, and zod
    // copies inherited members of its objects into its output).
    keyword: 'plainObject',
    schemaType: 'boolean',
    code(cxt: KeywordCxt) {
      if (cxt.schema !== true) return;
      const proto = cxt.gen.const(
        'proto',
        _`typeof ${cxt.data} == "object" && ${cxt.data} !== null ? Object.getPrototypeOf(${cxt.data}) : null`,
      );
      cxt.fail(_`${proto} !== null && ${proto} !== Object.prototype`);
    },
  });
  ajv.addKeyword({
    keyword: 'noSymbolKeys',
    schemaType: 'boolean',
    code(cxt: KeywordCxt) {
      if (cxt.schema !== true) return;
      const check = cxt.gen.scopeValue('func', { ref: hasNoSymbolKeys });
      cxt.fail(_`!${check}(${cxt.data})`);
    },
  });
  return ajv;
}
