/** Most bytes an outcome's error message takes once JSON-encoded: well inside OUTCOME_RESERVE_BYTES. */
export const MAX_AUDIT_TEXT_BYTES = 1000;

/**
 * Text from elsewhere — an upstream's error message — made fit for the audit trail: no NUL (the
 * ledger's jsonb cannot store U+0000, and one would block its Kafka partition), well-formed UTF-16
 * (a lone surrogate has no canonical JSON form, so the ledger turns the event away; and the cut must
 * not fall inside a pair), and at most `maxBytes` bytes as JSON, so that an outcome always fits the
 * room the spool keeps for it (durable-audit.ts).
 */
export function auditText(text: string, maxBytes = MAX_AUDIT_TEXT_BYTES): string {
  // Every code unit takes at least one byte as JSON: nothing past maxBytes of them can fit.
  const clean = text.slice(0, maxBytes).replaceAll('\u0000', '\uFFFD').toWellFormed();
  let bytes = 0;
  let end = 0;
  for (const char of clean) {
    const size = Buffer.byteLength(JSON.stringify(char)) - 2; // without the quotes
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += char.length;
  }
  return clean.slice(0, end);
}
