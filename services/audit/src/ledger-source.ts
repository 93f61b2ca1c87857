import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type pg from 'pg';
import type { HashedRow } from './chain.ts';
import type { Checkpoint, CheckpointBody } from './checkpoints.ts';
import type { LedgerSource } from './verify.ts';

/** The files of a verifiable export (`portcullis ledger dump`). */
export const DUMP_FILES = {
  rows: 'ledger-rows.jsonl',
  checkpoints: 'checkpoints.jsonl',
  partitionLog: 'partition-log.jsonl',
} as const;

interface DbRow {
  event_id: string;
  call_id: string | null;
  event_type: string;
  event_version: number;
  occurred_at: Date;
  recorded_at: Date;
  payload: unknown;
  source_topic: string;
  source_partition: number;
  source_offset: string;
  chain_id: string;
  chain_seq: string;
  prev_hash: string;
  row_hash: string;
}

const ROW_COLUMNS = `event_id, call_id, event_type, event_version, occurred_at, recorded_at, payload,
  source_topic, source_partition, source_offset, chain_id, chain_seq, prev_hash, row_hash`;

export function fromDbRow(r: DbRow): HashedRow {
  return {
    eventId: r.event_id,
    callId: r.call_id,
    eventType: r.event_type,
    eventVersion: r.event_version,
    occurredAt: r.occurred_at.toISOString(),
    recordedAt: r.recorded_at.toISOString(),
    payload: r.payload,
    sourceTopic: r.source_topic,
    sourcePartition: r.source_partition,
    sourceOffset: r.source_offset,
    chainId: r.chain_id,
    chainSeq: Number(r.chain_seq),
    prevHash: r.prev_hash,
    rowHash: r.row_hash,
  };
}

/** Reads the ledger straight from Postgres, a page at a time, in the order verification needs. */
export function databaseSource(pool: pg.Pool, pageSize = 5000): LedgerSource {
  return {
    async chainIds() {
      const { rows } = await pool.query<{ chain_id: string }>(
        'SELECT DISTINCT chain_id FROM audit.ledger_events ORDER BY chain_id',
      );
      return rows.map((r) => r.chain_id);
    },
    async *rows(chainId) {
      let after: { seq: string; eventId: string } = {
        seq: '0',
        eventId: '00000000-0000-0000-0000-000000000000',
      };
      for (;;) {
        const { rows } = await pool.query<DbRow>(
          `SELECT ${ROW_COLUMNS} FROM audit.ledger_events
           WHERE chain_id = $1 AND (chain_seq, event_id) > ($2::bigint, $3::uuid)
           ORDER BY chain_seq, event_id LIMIT $4`,
          [chainId, after.seq, after.eventId, pageSize],
        );
        for (const row of rows) yield fromDbRow(row);
        if (rows.length < pageSize) return;
        const last = rows.at(-1)!;
        after = { seq: last.chain_seq, eventId: last.event_id };
      }
    },
    async checkpoints() {
      const { rows } = await pool.query<{ checkpoint_id: string; body: CheckpointBody; signature: string }>(
        'SELECT checkpoint_id, body, signature FROM audit.checkpoints ORDER BY checkpoint_id',
      );
      return rows.map((r) => ({
        checkpointId: Number(r.checkpoint_id),
        body: r.body,
        signature: r.signature,
      }));
    },
    async detachedDays() {
      const { rows } = await pool.query<{ day: string }>(
        "SELECT to_char(day, 'YYYY-MM-DD') AS day FROM audit.partition_log WHERE action = 'detached'",
      );
      return new Set(rows.map((r) => r.day));
    },
  };
}

/** Streams every ledger row in verification order, for `ledger dump`. */
export async function* allRows(pool: pg.Pool): AsyncIterable<HashedRow> {
  const source = databaseSource(pool);
  for (const chainId of await source.chainIds()) yield* source.rows(chainId);
}

/**
 * Reads a dump directory. Rows are grouped by chain in memory and sorted, so a reordered file
 * verifies the same as the original; memory grows with the export (fine for days to weeks).
 */
export async function exportSource(dir: string): Promise<LedgerSource> {
  const chains = new Map<string, HashedRow[]>();
  for await (const row of readJsonl<HashedRow>(join(dir, DUMP_FILES.rows))) {
    const list = chains.get(row.chainId) ?? [];
    list.push(row);
    chains.set(row.chainId, list);
  }
  for (const list of chains.values()) {
    list.sort((a, b) => a.chainSeq - b.chainSeq || a.eventId.localeCompare(b.eventId));
  }
  const checkpoints: Checkpoint[] = [];
  for await (const c of readJsonl<Checkpoint>(join(dir, DUMP_FILES.checkpoints))) checkpoints.push(c);
  checkpoints.sort((a, b) => a.checkpointId - b.checkpointId);
  const detached = new Set<string>();
  const logText = await readFile(join(dir, DUMP_FILES.partitionLog), 'utf8').catch(() => '');
  for (const line of logText.split('\n')) {
    if (!line.trim()) continue;
    const entry = JSON.parse(line) as { action: string; day: string };
    if (entry.action === 'detached') detached.add(entry.day);
  }
  return {
    chainIds: async () => [...chains.keys()].sort(),
    rows: async function* (chainId) {
      yield* chains.get(chainId) ?? [];
    },
    checkpoints: async () => checkpoints,
    detachedDays: async () => detached,
  };
}

async function* readJsonl<T>(path: string): AsyncIterable<T> {
  const lines = createInterface({
    input: createReadStream(path, 'utf8'),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of lines) {
    if (line.trim()) yield JSON.parse(line) as T;
  }
}
