import { type DetectorType, type FindingKind, findAll, redactionSpans, reported } from './detectors.ts';

/**
 * Deep scanning of JSON values. Findings never carry the matched text: only its type, where it is
 * (a JSON Pointer, RFC 6901, plus whether it is in a key or a value) and its span in that string.
 */
export interface DlpFinding {
  type: DetectorType;
  kind: FindingKind;
  /** JSON Pointer of the string (value) or of the object whose key it is (key). */
  path: string;
  in: 'value' | 'key';
  start: number;
  end: number;
}

/** What to do with findings: redact them in place, or block (report only, change nothing). */
export type DlpMode = 'redact' | 'block';

export interface DlpResult<T> {
  /** The value with every finding replaced by `[REDACTED:<type>]` (redact mode), else the input. */
  value: T;
  findings: DlpFinding[];
}

/** The text that replaces a finding of `type`. */
export const placeholder = (type: DetectorType) => `[REDACTED:${type}]`;

/** Keys whose string value is an AWS secret access key when it has that key's shape. */
// aws_secret_access_key, secretAccessKey, and the s3cmd/MinIO/Terraform spellings secret_key, secretKey.
const AWS_SECRET_KEY_NAME = /^(?:aws_?)?secret_?(?:access_?)?key$/i;
const AWS_SECRET_SHAPE = /^[A-Za-z0-9/+]{40}$/;
/** Card numbers can arrive as JSON numbers; 13 to 16 digits fit a double exactly. */
const MAX_DEPTH = 256;

/** The JSON Pointer of a path; built only when there is a finding to report. */
const pointer = (path: readonly (string | number)[]) =>
  path.map((segment) => `/${String(segment).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');

export interface ScanOptions {
  /** Only findings of these kinds are reported (and redacted); default: every kind. */
  kinds?: ReadonlySet<FindingKind>;
  /**
   * Upper bound on the UTF-16 code units of strings (values and keys) scanned; beyond it the scan
   * stops with a DlpLimitError, so one huge value cannot hold the event loop for long. Default:
   * unbounded (callers on a hot path set one).
   */
  maxChars?: number;
}

/** Thrown when a value cannot be inspected within the scan's bounds; callers must fail closed. */
export class DlpLimitError extends RangeError {
  readonly limit: 'depth' | 'size';
  constructor(limit: 'depth' | 'size', message: string) {
    super(message);
    this.name = 'DlpLimitError';
    this.limit = limit;
  }
}

interface Walk {
  findings: DlpFinding[];
  redact: boolean;
  kinds: ReadonlySet<FindingKind> | undefined;
  budget: number;
}

/** Scans a JSON value and, in redact mode, returns a copy with every finding replaced. */
export function scanJson<T>(value: T, mode: DlpMode, options: ScanOptions = {}): DlpResult<T> {
  const state: Walk = {
    findings: [],
    redact: mode === 'redact',
    kinds: options.kinds,
    budget: options.maxChars ?? Number.POSITIVE_INFINITY,
  };
  const result = walk(value, [], state, 0, undefined);
  return { value: (mode === 'redact' ? result : value) as T, findings: state.findings };
}

/** Counts findings by type, e.g. { aws_access_key: 1, email: 2 }: safe to log and audit. */
export function countByType(findings: readonly DlpFinding[]): Partial<Record<DetectorType, number>> {
  const counts: Partial<Record<DetectorType, number>> = {};
  for (const finding of findings) counts[finding.type] = (counts[finding.type] ?? 0) + 1;
  return counts;
}

function walk(
  value: unknown,
  path: (string | number)[],
  state: Walk,
  depth: number,
  parentKey: string | undefined,
): unknown {
  if (depth > MAX_DEPTH) throw new DlpLimitError('depth', `JSON nested deeper than ${MAX_DEPTH} levels`);
  if (typeof value === 'string') return scanString(value, path, 'value', state, parentKey);
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || Math.abs(value) < 1e12) return value;
    const text = String(value);
    const scanned = scanString(text, path, 'value', state, parentKey);
    return scanned === text ? value : scanned;
  }
  if (Array.isArray(value)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const item = value[i];
      path.push(i);
      const next = walk(item, path, state, depth + 1, undefined);
      path.pop();
      if (next !== item) {
        copy ??= value.slice();
        copy[i] = next;
      }
    }
    return copy ?? value;
  }
  if (value !== null && typeof value === 'object') {
    let changed = false;
    const entries: [string, unknown][] = [];
    for (const key in value) {
      if (!Object.hasOwn(value, key)) continue;
      const item = (value as Record<string, unknown>)[key];
      let newKey = scanString(key, path, 'key', state, undefined);
      path.push(key);
      const next = walk(item, path, state, depth + 1, key);
      path.pop();
      if (newKey !== key || next !== item) changed = true;
      // Two keys redacted to the same placeholder must both survive.
      while (newKey !== key && entries.some(([k]) => k === newKey)) newKey = `${newKey}~`;
      entries.push([newKey, next]);
    }
    return changed ? Object.fromEntries(entries) : value;
  }
  return value;
}

function scanString(
  text: string,
  path: readonly (string | number)[],
  where: 'value' | 'key',
  state: Walk,
  parentKey: string | undefined,
): string {
  const { findings, redact, kinds } = state;
  state.budget -= text.length;
  if (state.budget < 0) throw new DlpLimitError('size', 'JSON holds more text than the scan may inspect');
  // A bare 40-character value under an AWS secret key name: its name is the only tell.
  if (
    parentKey !== undefined &&
    (kinds === undefined || kinds.has('secret')) &&
    AWS_SECRET_KEY_NAME.test(parentKey) &&
    AWS_SECRET_SHAPE.test(text)
  ) {
    findings.push({
      type: 'aws_secret_key',
      kind: 'secret',
      path: pointer(path),
      in: where,
      start: 0,
      end: text.length,
    });
    return redact ? placeholder('aws_secret_key') : text;
  }
  const found = findAll(text, kinds);
  if (found.length === 0) return text;
  const at = pointer(path);
  for (const f of reported(found))
    findings.push({ type: f.type, kind: f.kind, path: at, in: where, start: f.start, end: f.end });
  if (!redact) return text;
  let out = '';
  let cursor = 0;
  // Every finding's span, merged: one that is not reported (a second of the same kind in a group)
  // may reach past the reported one.
  for (const span of redactionSpans(found)) {
    out += text.slice(cursor, span.start) + placeholder(span.type);
    cursor = span.end;
  }
  return out + text.slice(cursor);
}
