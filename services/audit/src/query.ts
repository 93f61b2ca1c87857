import type pg from 'pg';
import { z } from 'zod';

/**
 * Read-only queries over the auditor views, with keyset (cursor) pagination. The HTTP query API
 * and `portcullis ledger export` both go through here, so they page and filter identically.
 */

interface ViewDefinition {
  /** The column pages are ordered by, then `key` to break ties. */
  time: string;
  key: string;
  /** Filters this view supports, mapped to its columns. */
  agent?: string;
  user?: string;
}

export const VIEWS: Readonly<Record<string, ViewDefinition>> = {
  tool_calls: { time: 'requested_at', key: 'call_id', agent: 'agent_id', user: 'on_behalf_of' },
  decisions: { time: 'decided_at', key: 'decision_id', agent: 'agent_id', user: 'on_behalf_of' },
  denials: { time: 'decided_at', key: 'decision_id', agent: 'agent_id', user: 'on_behalf_of' },
  deletes: { time: 'requested_at', key: 'call_id', agent: 'agent_id', user: 'on_behalf_of' },
  approvals: { time: 'requested_at', key: 'approval_id', agent: 'agent_id' },
  credential_events: { time: 'occurred_at', key: 'event_id', agent: 'agent_id', user: 'user_id' },
  admin_changes: { time: 'occurred_at', key: 'event_id' },
};

export const ViewName = z.enum(Object.keys(VIEWS) as [string, ...string[]]);

/** What encodeCursor writes: a forged one with a `t` Postgres cannot read is a 400, not a 500. */
const Cursor = z.strictObject({ t: z.iso.datetime({ offset: true }), k: z.string().max(200) });

export const QueryFilters = z.object({
  view: ViewName,
  agent: z.string().min(1).max(200).optional(),
  user: z.string().min(1).max(320).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  until: z.iso.datetime({ offset: true }).optional(),
  limit: z.coerce.number().int().min(1).max(10000).default(1000),
  cursor: z.string().max(500).optional(),
});
export type QueryFilters = z.input<typeof QueryFilters>;

export class QueryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QueryError';
  }
}

export interface Page {
  items: Record<string, unknown>[];
  /** Pass back as `cursor` for the next page; null when this was the last page. */
  nextCursor: string | null;
}

/** One page of a view, oldest first. */
export async function queryView(pool: pg.Pool, input: QueryFilters): Promise<Page> {
  const parsed = QueryFilters.safeParse(input);
  if (!parsed.success) throw new QueryError(z.prettifyError(parsed.error));
  const filters = parsed.data;
  const view = VIEWS[filters.view]!;
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: (n: string) => string, value: unknown) => {
    params.push(value);
    where.push(sql(`$${params.length}`));
  };
  if (filters.agent) {
    if (!view.agent) throw new QueryError(`view ${filters.view} has no agent filter`);
    add((n) => `${view.agent} = ${n}`, filters.agent);
  }
  if (filters.user) {
    if (!view.user) throw new QueryError(`view ${filters.view} has no user filter`);
    add((n) => `${view.user} = ${n}`, filters.user);
  }
  if (filters.since) add((n) => `${view.time} >= ${n}::timestamptz`, filters.since);
  if (filters.until) add((n) => `${view.time} < ${n}::timestamptz`, filters.until);
  if (filters.cursor) {
    const cursor = decodeCursor(filters.cursor);
    params.push(cursor.t, cursor.k);
    const [t, k] = [`$${params.length - 1}::timestamptz`, `$${params.length}`];
    // The plain bound lets the planner skip the day partitions before the cursor; the row
    // comparison alone hides the time from it and every page would scan the whole ledger.
    where.push(`${view.time} >= ${t}`, `(${view.time}, ${view.key}::text) > (${t}, ${k})`);
  }
  params.push(filters.limit + 1);
  const sql = `SELECT * FROM audit.${filters.view}
    ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
    ORDER BY ${view.time}, ${view.key}::text LIMIT $${params.length}`;
  const { rows } = await pool.query<Record<string, unknown>>(sql, params);
  const more = rows.length > filters.limit;
  const items = more ? rows.slice(0, filters.limit) : rows;
  const last = items.at(-1);
  return {
    items: items.map(plain),
    nextCursor: more && last ? encodeCursor(last[view.time] as Date, String(last[view.key])) : null,
  };
}

function encodeCursor(time: Date, key: string): string {
  return Buffer.from(JSON.stringify({ t: time.toISOString(), k: key })).toString('base64url');
}

function decodeCursor(text: string): z.infer<typeof Cursor> {
  try {
    return Cursor.parse(JSON.parse(Buffer.from(text, 'base64url').toString('utf8')));
  } catch {
    throw new QueryError('cursor is not one this API returned');
  }
}

/** Dates as ISO strings, so JSON and CSV show the same values. */
function plain(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) out[k] = v instanceof Date ? v.toISOString() : v;
  return out;
}

/**
 * One CSV line (RFC 4180): quotes when needed; arrays and objects as JSON. A text cell that a
 * spreadsheet would run as a formula (= + - @ tab CR) gets a leading apostrophe: ledger content
 * partly comes from agents, and an export must not execute it on an auditor's machine.
 */
export function csvLine(values: unknown[]): string {
  return values
    .map((v) => {
      if (v === null || v === undefined) return '';
      let text = typeof v === 'object' ? JSON.stringify(v) : String(v);
      if (typeof v === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
      return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
    })
    .join(',');
}
