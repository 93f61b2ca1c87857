import { type LedgerEvent, LedgerEvent as LedgerEventSchema } from '@portcullis/contracts';
import { canonicalJson } from './canonical-json.ts';
import { toJsonSchema } from './ledger-event-parser.ts';

/**
 * canonicalJson(event) for a validated ledger event, written straight from its schema: the
 * members of each object are known, so their RFC 8785 order is sorted once per schema instead of
 * per event, and no sorted copy of the event is built (canonicalJson's copy is ≈ half of its cost
 * and garbage). Strings and numbers go through JSON.stringify as in canonicalJson, and values of
 * free shape (records, unknown) through canonicalJson itself, so the text is the same byte for
 * byte (canonical-event.test.ts compares both on generated events).
 *
 * Anything unexpected — a member the schema does not name, a value of another type, a string
 * JSON.stringify escapes as a lone surrogate — makes the whole event go through canonicalJson.
 */
export function canonicalEventJson(event: LedgerEvent): string {
  const text = schemaCanonicalText(event);
  // "\ud" in the text may be a lone surrogate (which canonicalJson refuses) or harmless: either way
  // canonicalJson decides, as it does for the whole text.
  if (text === undefined || text.includes('\\ud')) return canonicalJson(event);
  return text;
}

/** The text written from the event's schema alone; undefined where canonicalEventJson falls back. */
export function schemaCanonicalText(event: LedgerEvent): string | undefined {
  emitters ??= buildEmitters();
  return emitters.get(event.type)?.(event);
}

/** Writes a value's canonical text, or undefined when the value is not what the schema says. */
type Emit = (value: unknown) => string | undefined;

let emitters: Map<string, Emit> | undefined;

function buildEmitters(): Map<string, Emit> {
  const out = new Map<string, Emit>();
  for (const member of LedgerEventSchema.options) {
    const schema = toJsonSchema(member);
    if (schema === undefined) continue;
    const emit = emitterFor(schema);
    if (emit !== undefined) out.set(member.shape.type.value, emit);
  }
  return out;
}

const emitString: Emit = (value) => (typeof value === 'string' ? JSON.stringify(value) : undefined);
const emitNumber: Emit = (value) =>
  typeof value === 'number' && Number.isFinite(value) ? JSON.stringify(value) : undefined;
/** Free-shaped JSON (records, unknown): the general canonicalisation. */
const emitAny: Emit = (value) => canonicalJson(value);

function emitterFor(schema: Record<string, unknown>): Emit | undefined {
  if (schema.type === 'object' && schema.properties !== undefined) {
    const properties = schema.properties as Record<string, Record<string, unknown>>;
    // A name Object.prototype also has would read the prototype's value when absent.
    const names = Object.keys(properties).sort();
    if (names.some((name) => name in Object.prototype)) return undefined;
    const members: { name: string; prefix: string; emit: Emit }[] = [];
    for (const name of names) {
      const emit = emitterFor(properties[name]!);
      if (emit === undefined) return undefined;
      members.push({ name, prefix: `${JSON.stringify(name)}:`, emit });
    }
    return (value) => {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
      let out = '{';
      let written = 0;
      for (const { name, prefix, emit } of members) {
        const member = (value as Record<string, unknown>)[name];
        if (member === undefined) continue;
        const text = emit(member);
        if (text === undefined) return undefined;
        out += written === 0 ? prefix + text : `,${prefix}${text}`;
        written++;
      }
      // A member the schema does not name (validation strips them, so only by mistake).
      let own = 0;
      for (const key in value) if (Object.hasOwn(value, key)) own++;
      return own === written ? `${out}}` : undefined;
    };
  }
  if (schema.type === 'array') {
    const item = emitterFor(schema.items as Record<string, unknown>);
    if (item === undefined) return undefined;
    return (value) => {
      if (!Array.isArray(value)) return undefined;
      let out = '[';
      for (let i = 0; i < value.length; i++) {
        const text = item(value[i]);
        if (text === undefined) return undefined;
        out += i === 0 ? text : `,${text}`;
      }
      return `${out}]`;
    };
  }
  if (schema.type === 'string') return emitString;
  if (schema.type === 'number') return emitNumber;
  if (Array.isArray(schema.enum)) {
    return (value) => (typeof value === 'string' ? emitString(value) : emitNumber(value));
  }
  return emitAny;
}
