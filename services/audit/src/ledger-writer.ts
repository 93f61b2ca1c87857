import { pipeline } from 'node:stream/promises';
import type { LedgerEvent } from '@portcullis/contracts';
import { withTransaction } from '@portcullis/db';
import type { BatchContext } from '@portcullis/kafka';
import type { KafkaMessage } from 'kafkajs';
import type pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { canonicalJson } from './canonical-json.ts';
import { canonicalRowContent, chainIdFor, genesisHash, type LedgerRow, sha256Hex } from './chain.ts';
import { parseLedgerEventFast, prepareLedgerEventParser } from './ledger-event-parser.ts';

export interface DeadLetter {
  message: KafkaMessage;
  reason: string;
}

export interface LedgerWriterOptions {
  /** Events older than this many days cannot be placed: their partition is (or soon will be) detached. */
  retentionDays: number;
  /** Events dated further ahead than this are refused as implausible clocks. */
  maxFutureMs?: number;
  now?: () => Date;
}

interface Placed {
  event: LedgerEvent;
  /** occurredAt as the ledger stores and hashes it: ISO 8601 UTC with milliseconds. */
  occurredAt: string;
  occurredMs: number;
  chainId: string;
  offset: string;
}

/**
 * Turns one Kafka batch (one partition, in offset order) into ledger rows in one transaction that
 * also extends the hash chains. Idempotent by event id and occurredAt (the primary key): a batch
 * holding events already in the ledger is refused by the key, rolled back, and redone without them
 * before hashing, so a batch delivered twice (after a crash before the offset commit) adds nothing
 * and leaves no gap in a chain. Messages that are not valid audit events, or cannot be placed in a
 * partition, are handed to `deadLetter` first, never dropped.
 */
export class LedgerWriter {
  readonly #pool: pg.Pool;
  readonly #deadLetter: (letters: DeadLetter[], context: BatchContext) => Promise<void>;
  readonly #retentionMs: number;
  readonly #maxFutureMs: number;
  readonly #now: () => Date;
  /** Days whose partition is known to exist, so the hot path skips the check. */
  readonly #partitions = new Set<string>();
  /** Chains whose head row a committed transaction has seen: heads are never deleted (no grant). */
  readonly #knownHeads = new Set<string>();

  constructor(
    pool: pg.Pool,
    deadLetter: (letters: DeadLetter[], context: BatchContext) => Promise<void>,
    options: LedgerWriterOptions,
  ) {
    this.#pool = pool;
    this.#deadLetter = deadLetter;
    this.#retentionMs = options.retentionDays * 86_400_000;
    this.#maxFutureMs = options.maxFutureMs ?? 86_400_000;
    this.#now = options.now ?? (() => new Date());
    prepareLedgerEventParser();
  }

  /** Returns how many new rows the batch added. */
  async writeBatch(messages: KafkaMessage[], context: BatchContext): Promise<number> {
    const now = this.#now();
    const nowMs = now.getTime();
    const placed: Placed[] = [];
    const rejected: DeadLetter[] = [];
    const seen = new Set<string>();
    for (const message of messages) {
      const parsed = parseLedgerEventFast(message.value);
      if (!parsed.ok) {
        rejected.push({ message, reason: parsed.reason });
        continue;
      }
      // Parsed and formatted once per event: the window check, the chain id and the row use it.
      const occurredMs = Date.parse(parsed.event.occurredAt);
      const age = nowMs - occurredMs;
      if (age > this.#retentionMs || -age > this.#maxFutureMs) {
        rejected.push({
          message,
          reason: `occurredAt ${parsed.event.occurredAt} is outside the ledger's window (retention or clock skew)`,
        });
        continue;
      }
      // A lone surrogate (e.g. "\ud800") passes JSON.parse and the schema but has no RFC 8785 form,
      // so its row could never be hashed: the batch would fail on every redelivery and block the
      // partition. Only text with \u escapes can carry one, so only that text pays for the check.
      if (message.value?.includes('\\u') && !hasCanonicalForm(parsed.event)) {
        rejected.push({ message, reason: 'has no RFC 8785 canonical form (a lone surrogate in a string)' });
        continue;
      }
      // Postgres's jsonb refuses U+0000: the COPY would fail on every redelivery, the same block.
      if (message.value?.includes('\\u0000') && holdsNul(parsed.event)) {
        rejected.push({
          message,
          reason: 'holds a NUL character (U+0000), which the ledger (jsonb) cannot store',
        });
        continue;
      }
      const occurredAt = new Date(occurredMs).toISOString();
      // A duplicate inside one batch is the same event twice; the first copy is the one kept. The
      // same identity as the ledger's key: event id and occurredAt as stored (see #append).
      const identity = `${parsed.event.eventId} ${occurredAt}`;
      if (seen.has(identity)) continue;
      seen.add(identity);
      placed.push({
        event: parsed.event,
        occurredAt,
        occurredMs,
        chainId: chainIdFor(occurredAt, context.topic, context.partition),
        offset: message.offset,
      });
    }
    if (rejected.length > 0) await this.#deadLetter(rejected, context);
    if (placed.length === 0) return 0;
    await this.#ensurePartitions(placed);
    const chainIds = [...new Set(placed.map((p) => p.chainId))];
    let added: number;
    try {
      // Optimistic: most batches hold no event the ledger has, and the primary key refuses any
      // it has, so the first attempt skips the lookup of present ids.
      added = await withTransaction(this.#pool, (client) =>
        this.#append(client, placed, chainIds, context, now, false),
      );
    } catch (error) {
      if ((error as { code?: unknown }).code !== UNIQUE_VIOLATION) throw error;
      // A redelivery (a crash or rebalance before the offset commit) or a stale consumer that
      // committed first: everything was rolled back; again, leaving out what is present.
      added = await withTransaction(this.#pool, (client) =>
        this.#append(client, placed, chainIds, context, now, true),
      );
    }
    for (const id of chainIds) this.#knownHeads.add(id);
    return added;
  }

  async #ensurePartitions(placed: Placed[]): Promise<void> {
    const days = new Set(placed.map((p) => p.chainId.slice(0, 10)));
    for (const day of days) {
      if (this.#partitions.has(day)) continue;
      await this.#pool.query('SELECT audit.ensure_partition($1::date)', [day]);
      this.#partitions.add(day);
    }
  }

  async #append(
    client: pg.PoolClient,
    placed: Placed[],
    chainIds: string[],
    context: BatchContext,
    now: Date,
    lookUpPresent: boolean,
  ): Promise<number> {
    // Create missing heads, then lock them: a second writer on the same partition (a stale
    // consumer after a rebalance) waits here and then sees this batch's rows as already present.
    // A head this writer has seen committed exists (nobody may delete one), so the insert is
    // skipped for it: usually a statement less per batch.
    const unknown = chainIds.filter((id) => !this.#knownHeads.has(id));
    if (unknown.length > 0) {
      await client.query(
        `INSERT INTO audit.chain_heads (chain_id, chain_day, source_topic, source_partition, seq, head_hash)
         SELECT id, left(id, 10)::date, $2, $3, 0, genesis
         FROM unnest($1::text[], $4::text[]) AS h(id, genesis)
         ON CONFLICT (chain_id) DO NOTHING`,
        [unknown, context.topic, context.partition, unknown.map(genesisHash)],
      );
    }
    const heads = await client.query<{ chain_id: string; seq: string; head_hash: string }>(
      'SELECT chain_id, seq, head_hash FROM audit.chain_heads WHERE chain_id = ANY($1::text[]) ORDER BY chain_id FOR UPDATE',
      [chainIds],
    );
    const head = new Map(heads.rows.map((r) => [r.chain_id, { seq: Number(r.seq), hash: r.head_hash }]));
    for (const id of chainIds) {
      // Only a superuser bypassing the grants can have removed it; forget it, so the batch's retry
      // goes through the insert again, exactly as without this cache.
      if (!head.has(id)) this.#knownHeads.delete(id);
    }

    const fresh = lookUpPresent ? await this.#absent(client, placed) : placed;
    if (fresh.length === 0) return 0;

    const recordedAt = now.toISOString();
    const touched = new Set<string>();
    const topic = copyText(context.topic);
    const chainField = new Map<string, string>();
    // Rows are hashed in chain order and streamed to Postgres in chunks while the next ones are
    // hashed, so Postgres parses and inserts on the other core instead of waiting for the batch.
    // COPY goes straight into the ledger (Postgres routes each row to its day partition), in
    // text format: no JSON array to parse and pick apart server-side.
    // No ON CONFLICT (COPY has none): skipping a row would leave a gap in its chain. A conflict
    // aborts the transaction instead; on the primary key (an event already stored) writeBatch
    // redoes the batch with the lookup of present events, which runs under the chain-head locks.
    async function* rows(): AsyncGenerator<string> {
      let chunk = '';
      for (const { event, occurredAt, chainId, offset } of fresh) {
        const tip = head.get(chainId);
        if (!tip) throw new Error(`chain head ${chainId} vanished inside its transaction`);
        const row: LedgerRow = {
          eventId: event.eventId,
          callId: 'callId' in event ? event.callId : null,
          eventType: event.type,
          eventVersion: event.version,
          occurredAt,
          recordedAt,
          payload: event,
          sourceTopic: context.topic,
          sourcePartition: context.partition,
          sourceOffset: offset,
          chainId,
          chainSeq: tip.seq + 1,
          prevHash: tip.hash,
        };
        // The payload is canonicalised once: the hashed row content embeds it, and it is the stored
        // payload column (JSONB keeps the same value whatever the member order).
        const payload = canonicalJson(event);
        const hash = sha256Hex(canonicalRowContent(row, payload));
        let chain = chainField.get(chainId);
        if (chain === undefined) {
          chain = copyText(chainId);
          chainField.set(chainId, chain);
        }
        chunk +=
          `${occurredAt}\t${row.eventId}\t${row.callId === null ? '\\N' : copyText(row.callId)}\t${copyText(row.eventType)}` +
          `\t${row.eventVersion}\t${recordedAt}\t${copyJsonText(payload)}\t${topic}\t${row.sourcePartition}` +
          `\t${offset}\t${chain}\t${row.chainSeq}\t${row.prevHash}\t${hash}\n`;
        head.set(chainId, { seq: row.chainSeq, hash });
        touched.add(chainId);
        if (chunk.length >= COPY_CHUNK_CHARS) {
          yield chunk;
          chunk = '';
        }
      }
      if (chunk !== '') yield chunk;
    }
    await pipeline(
      rows,
      client.query(pgCopy.from(`COPY audit.ledger_events (${LEDGER_COLUMNS}) FROM STDIN`)),
    );
    const changed = [...head.entries()].filter(([id]) => touched.has(id));
    await client.query(
      `UPDATE audit.chain_heads h SET seq = n.seq, head_hash = n.hash, updated_at = now()
       FROM unnest($1::text[], $2::bigint[], $3::text[]) AS n(id, seq, hash)
       WHERE h.chain_id = n.id`,
      [changed.map(([id]) => id), changed.map(([, t]) => t.seq), changed.map(([, t]) => t.hash)],
    );
    return fresh.length;
  }

  /**
   * The events of `placed` the ledger does not hold. An event is held when a row has its event id
   * and its occurredAt as stored: the primary key, which a redelivery (the same message) always
   * matches. An id reused for another occurredAt is another event to the ledger (ADR 0012).
   */
  async #absent(client: pg.PoolClient, placed: Placed[]): Promise<Placed[]> {
    let earliest = Number.POSITIVE_INFINITY;
    let latest = Number.NEGATIVE_INFINITY;
    let ids = '';
    for (const p of placed) {
      earliest = Math.min(earliest, p.occurredMs);
      latest = Math.max(latest, p.occurredMs);
      ids += ids === '' ? p.event.eventId : `,${p.event.eventId}`;
    }
    // The ids go as one array literal: they are validated UUIDs (no quotes, commas or braces to
    // escape), and building the text once is cheaper than the driver quoting every element. The
    // time range lets Postgres visit only the partitions the batch can be in.
    const existing = await client.query<{ event_id: string; occurred_at: Date }>(
      `SELECT event_id, occurred_at FROM audit.ledger_events
       WHERE event_id = ANY($1::uuid[]) AND occurred_at BETWEEN $2 AND $3`,
      [`{${ids}}`, new Date(earliest), new Date(latest)],
    );
    const present = new Set(existing.rows.map((r) => `${r.event_id} ${r.occurred_at.getTime()}`));
    return placed.filter((p) => !present.has(`${p.event.eventId} ${p.occurredMs}`));
  }
}

/** SQLSTATE unique_violation. */
const UNIQUE_VIOLATION = '23505';

function hasCanonicalForm(event: LedgerEvent): boolean {
  try {
    canonicalJson(event);
    return true;
  } catch {
    return false;
  }
}

/** Whether any string or key in a JSON value holds U+0000 (the JSON text showed `\u0000` somewhere). */
function holdsNul(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('\u0000');
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) return value.some(holdsNul);
  return Object.entries(value).some(([key, item]) => key.includes('\u0000') || holdsNul(item));
}

/** The ledger's columns, in the order of each COPY line. */
const LEDGER_COLUMNS = [
  'occurred_at',
  'event_id',
  'call_id',
  'event_type',
  'event_version',
  'recorded_at',
  'payload',
  'source_topic',
  'source_partition',
  'source_offset',
  'chain_id',
  'chain_seq',
  'prev_hash',
  'row_hash',
].join(', ');

/** COPY data is sent in chunks of about this many characters (≈ 50 rows of the bench's events). */
const COPY_CHUNK_CHARS = 64 * 1024;

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** A value as a field of COPY's text format: backslash, tab, newline and carriage return escaped. */
function copyText(value: string): string {
  return COPY_SPECIAL.test(value) ? value.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c] ?? c) : value;
}

/**
 * copyText for JSON text from JSON.stringify, which never holds a raw tab, newline or carriage
 * return (it escapes them), so only backslashes need doubling; indexOf finds them faster than a
 * character class scan of the whole payload.
 */
function copyJsonText(json: string): string {
  return json.includes('\\') ? json.replaceAll('\\', '\\\\') : json;
}
