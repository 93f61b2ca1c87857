import { compileSchema } from '@portcullis/compiled-schema';
import { LedgerEvent, parseLedgerEvent } from '@portcullis/contracts';

/**
 * The ledger's parser of Kafka message values: the same verdicts and the same events as
 * `parseLedgerEvent` (zod), at a fraction of its cost for the events that pass (ADR 0012, fourth
 * round; ledger-event-parser.test.ts compares both on generated valid and mutated events).
 *
 * How: `LedgerEvent` compiled by @portcullis/compiled-schema (ADR 0044): each member of the union
 * translated into a JSON Schema from its zod definition, compiled once by ajv and chosen by the
 * event's `type`. ajv validates the object JSON.parse made, in place: unknown keys of zod's
 * stripping objects are deleted, so what passes is the value zod would return, without zod's copy.
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
  const compiled = compileSchema(LedgerEvent, { strip: 'in-place' });
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
    // ajv may have deleted keys before failing, so zod gets the original text, not this object.
    if (!compiled.accepts(json)) return parseLedgerEvent(text);
    return { ok: true, event: json };
  };
}
