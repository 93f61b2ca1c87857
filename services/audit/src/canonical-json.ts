import canonicalize from 'canonicalize';

/**
 * RFC 8785 (JSON Canonicalization Scheme) text of a JSON value, byte for byte what the
 * `canonicalize` library returns (canonical-json.test.ts checks it on many generated values), at
 * about half its cost. The ledger hashes every row, so this is on the ingest's hot path.
 *
 * How: a copy of the value whose objects get their keys inserted in sorted (UTF-16 code unit)
 * order, then native JSON.stringify, which emits members in insertion order and serialises
 * strings and numbers exactly as RFC 8785 prescribes.
 *
 * What JSON.stringify would do differently from `canonicalize` is sent to `canonicalize` itself,
 * so the result (or the error) is the same: values that are not plain JSON data (Dates, class
 * instances, toJSON, non-finite numbers, undefined in arrays…), objects with integer-like keys
 * (which V8 always enumerates first), "__proto__" keys (which would set a copy's prototype),
 * and strings with lone surrogates (JSON.stringify escapes them as \udXXX where `canonicalize`
 * refuses them).
 */
export function canonicalJson(value: unknown): string {
  const sorted = sortedCopy(value, 0);
  if (sorted === REFUSED) return strict(value);
  const text = JSON.stringify(sorted);
  // A lone surrogate comes out as a lowercase \ud800–\udfff escape. Any "\ud" in the text (it may
  // also be an escaped backslash followed by "ud", which is harmless) goes the strict way.
  if (text.includes('\\ud')) return strict(value);
  return text;
}

function strict(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('value has no JSON form');
  return text;
}

/** Nesting deeper than this goes to the strict path (which iterates instead of recursing). */
const MAX_DEPTH = 100;

const REFUSED = Symbol('not plain JSON data');
/** An integer-like key ("0", "42"): V8 orders those first in any object, whatever the insertion order. */
const INDEX_KEY = /^(?:0|[1-9][0-9]*)$/;

/**
 * A copy of `value` whose objects have their keys inserted in RFC 8785 order, so that plain
 * JSON.stringify (native, fast) emits them in that order; REFUSED for anything outside plain JSON
 * data, or with integer-like keys, where it could differ from `canonicalize`.
 */
function sortedCopy(value: unknown, depth: number): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return Number.isFinite(value) ? value : REFUSED;
    case 'object': {
      if (value === null) return null;
      if (depth >= MAX_DEPTH) return REFUSED;
      if (Array.isArray(value)) {
        const copy: unknown[] = new Array(value.length);
        for (let i = 0; i < value.length; i++) {
          const item = value[i];
          const c = item === undefined ? REFUSED : sortedCopy(item, depth + 1);
          if (c === REFUSED) return REFUSED;
          copy[i] = c;
        }
        return copy;
      }
      const prototype = Object.getPrototypeOf(value);
      if (prototype !== Object.prototype && prototype !== null) return REFUSED;
      // Default sort compares UTF-16 code units: the key order RFC 8785 requires.
      const keys = Object.keys(value).sort();
      const copy: Record<string, unknown> = {};
      for (const key of keys) {
        const member = (value as Record<string, unknown>)[key];
        // undefined members are left out by both; anything with toJSON is not plain data.
        if (member === undefined) continue;
        // "__proto__" would set the copy's prototype instead of adding a member.
        if (key === 'toJSON' || key === '__proto__') return REFUSED;
        const lead = key.charCodeAt(0);
        if (lead >= 48 && lead <= 57 && INDEX_KEY.test(key)) return REFUSED;
        const c = sortedCopy(member, depth + 1);
        if (c === REFUSED) return REFUSED;
        copy[key] = c;
      }
      return copy;
    }
    default:
      return REFUSED;
  }
}
