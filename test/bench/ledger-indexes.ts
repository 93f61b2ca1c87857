/**
 * pnpm bench:ledger-indexes — what the auditor indexes cost the ledger's ingest on the partition
 * it writes (ADR 0012), measured against its anchor in the same run.
 *
 * Two databases on the stack's Postgres, each migrated as the audit service does:
 *   - settled-only: today's partition as the ledger has it (primary key, chain key, BRIN, call_id);
 *   - anchor:       the same plus the four auditor B-tree indexes (event type, agent, acting user,
 *                   approval id), i.e. every partition as it was before they moved to settled days.
 * The same batches go through LedgerWriter (no Kafka: the writer and Postgres alone), alternating
 * which database goes first, and the run prints Postgres CPU per event (the sessions' user + system
 * time from /proc; Postgres runs on this machine) and wall time per event for both, with the ratio.
 * Alternating batch by batch keeps a shared machine's load swings out of the comparison.
 *
 * Options (env): BENCH_BATCHES (default 30), BENCH_BATCH (events per batch, default 1700, about one
 * Kafka fetch of one partition), BENCH_ARGUMENT_WORDS (default 0: the small load events of
 * pnpm bench:ledger; e.g. 500 adds ~4 KB of redacted arguments, which Postgres stores compressed
 * out of line, so every expression index has to decompress the payload again).
 */
import { performance } from 'node:perf_hooks';
import { Topics } from '@portcullis/contracts';
import { migrate } from '@portcullis/db';
import { createLogger } from '@portcullis/runtime';
import { createTestDatabase, databaseBackendsCpuMs } from '@portcullis/testing';
import type { KafkaMessage } from 'kafkajs';
import pg from 'pg';
import type { LedgerWriter } from '../../services/audit/src/ledger-writer.ts';
import { AUDIT_SCHEMA, MIGRATIONS_DIR } from '../../services/audit/src/schema.ts';
import { benchLedgerWriter, loadEvent } from '../support/ledger.ts';

const BATCHES = Number(process.env.BENCH_BATCHES ?? 30);
const BATCH = Number(process.env.BENCH_BATCH ?? 1700);
const WORDS = Number(process.env.BENCH_ARGUMENT_WORDS ?? 0);

const logger = createLogger({ service: 'bench', level: 'warn', instanceId: 'bench', redact: [] });

interface Contestant {
  name: string;
  pool: pg.Pool;
  writer: LedgerWriter;
  drop: () => Promise<void>;
  pgMs: number;
  wallMs: number;
}

async function contestant(name: string, auditorIndexes: boolean): Promise<Contestant> {
  const db = await createTestDatabase();
  await migrate({ databaseUrl: db.url, schema: AUDIT_SCHEMA, dir: MIGRATIONS_DIR, logger });
  const pool = new pg.Pool({ connectionString: db.url, max: 2 });
  if (auditorIndexes) {
    // The definitions index_settled_partitions uses, on today's partition.
    const today = `audit.ledger_events_p${new Date().toISOString().slice(0, 10).replaceAll('-', '')}`;
    await pool.query(`CREATE INDEX ON ${today} (event_type, occurred_at)
      WHERE event_type NOT IN ('tool_call.requested', 'tool_call.completed')`);
    await pool.query(`CREATE INDEX ON ${today} ((payload -> 'agent' ->> 'id'), occurred_at)`);
    await pool.query(`CREATE INDEX ON ${today} ((payload -> 'onBehalfOf' ->> 'userId'), occurred_at)
      WHERE payload ? 'onBehalfOf'`);
    await pool.query(`CREATE INDEX ON ${today} ((payload ->> 'approvalId')) WHERE payload ? 'approvalId'`);
  }
  const writer = benchLedgerWriter(pool);
  return {
    name,
    pool,
    writer,
    drop: async () => {
      await pool.end();
      await db.drop();
    },
    pgMs: 0,
    wallMs: 0,
  };
}

function batch(first: number): KafkaMessage[] {
  return Array.from({ length: BATCH }, (_, i) => {
    const n = first + i;
    const event =
      WORDS > 0
        ? {
            ...loadEvent(n),
            // Varied words, so the text compresses like prose rather than like one repeated letter.
            redactedArguments: {
              text: Array.from({ length: WORDS }, (_, w) => `word${(w * 7919 + n) % 1000}`).join(' '),
            },
          }
        : loadEvent(n);
    return {
      key: null,
      value: Buffer.from(JSON.stringify(event)),
      offset: String(n),
      timestamp: String(Date.now()),
      attributes: 0,
      headers: {},
    } as unknown as KafkaMessage;
  });
}

async function main(): Promise<void> {
  console.log(
    `ledger index cost: ${BATCHES} batches of ${BATCH} events` +
      (WORDS > 0 ? ` with ${WORDS} words of redacted arguments` : '') +
      ', written alternately into both databases',
  );
  const settled = await contestant('settled-only (today as ingest has it)', false);
  const anchor = await contestant('anchor (+ 4 auditor indexes)', true);
  try {
    for (let b = 0; b < BATCHES; b++) {
      const messages = batch(b * BATCH);
      for (const c of b % 2 === 0 ? [settled, anchor] : [anchor, settled]) {
        const cpuBefore = await databaseBackendsCpuMs(c.pool);
        const start = performance.now();
        await c.writer.writeBatch(messages, { topic: Topics.audit.name, partition: 0 });
        c.wallMs += performance.now() - start;
        c.pgMs += (await databaseBackendsCpuMs(c.pool)) - cpuBefore;
      }
    }
    const events = BATCHES * BATCH;
    const perEvent = (ms: number) => ((ms * 1000) / events).toFixed(1);
    console.log(`\n${'contestant'.padEnd(40)} ${'pg CPU µs/event'.padEnd(16)} wall µs/event`);
    for (const c of [settled, anchor]) {
      console.log(`${c.name.padEnd(40)} ${perEvent(c.pgMs).padEnd(16)} ${perEvent(c.wallMs)}`);
    }
    console.log(
      `\nratio settled-only/anchor: pg CPU ×${(settled.pgMs / anchor.pgMs).toFixed(2)}, wall ×${(settled.wallMs / anchor.wallMs).toFixed(2)}`,
    );
  } finally {
    await settled.drop();
    await anchor.drop();
  }
}

await main();
