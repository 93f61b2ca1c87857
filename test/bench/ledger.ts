/**
 * pnpm bench:ledger — the ledger's ingest, measured against its anchor in the same run.
 *
 * Both contestants consume the same workload from real Kafka (own topics on the stack's broker)
 * into their own database on the stack's Postgres, through the same batch consumer that commits
 * offsets after the database:
 *   - ledger:   LedgerWriter, the audit service's code: one COPY per batch in a transaction
 *               that also extends the hash chains (canonical JSON + SHA-256 per row);
 *   - baseline: one plain INSERT … ON CONFLICT DO NOTHING per event, no chain.
 * Phase 1 (throughput): N events are produced first, then the consumer starts; events/s is N over
 * the time from its first batch to its last commit.
 * Phase 1 also reports CPU per event: the bench process's (Node: kafkajs, parsing, hashing, the
 * driver) and the contestant's Postgres sessions' (read from /proc). On a machine shared with other
 * work, events/s swings with the load; CPU per event is much steadier and tells where the time goes.
 * Phase 2 (lag): events are produced at a fixed rate while the consumer runs; lag is the time from
 * the send of an event to the commit of the transaction holding it, p50/p99 over all events.
 * After each phase the bench counts the contestant's rows: a figure counts only if every event
 * produced was stored exactly once.
 *
 * Options (env): BENCH_EVENTS (default 60000), BENCH_RATE (events/s in phase 2, default 5000),
 * BENCH_SECONDS (phase 2 length, default 10), BENCH_CONCURRENCY (partitions handled at once, default 3,
 * as the audit service's PARTITIONS_CONSUMED_CONCURRENTLY). For profiling: BENCH_ONLY (ledger or baseline)
 * runs one contestant, BENCH_SKIP_LAG=1 skips phase 2.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { consumerGroupName, Topics, topicName } from '@portcullis/contracts';
import { migrate } from '@portcullis/db';
import { createKafka, ensureTopics, startBatchConsumer } from '@portcullis/kafka';
import { createLogger } from '@portcullis/runtime';
import {
  createTestDatabase,
  databaseBackendsCpuMs,
  deleteTopicsWithPrefix,
  stackEnv,
  uniqueName,
} from '@portcullis/testing';
import { type Consumer, type KafkaMessage, Partitioners } from 'kafkajs';
import pg from 'pg';
import { AUDIT_SCHEMA, MIGRATIONS_DIR } from '../../services/audit/src/schema.ts';
import { benchLedgerWriter, loadEvent } from '../support/ledger.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 60000);
const RATE = Number(process.env.BENCH_RATE ?? 5000);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 3);
const SKIP_LAG = process.env.BENCH_SKIP_LAG === '1';

const logger = createLogger({ service: 'bench', level: 'warn', instanceId: 'bench', redact: [] });
const infra = stackEnv();
const kafka = createKafka({ clientId: 'bench-ledger', brokers: [infra.kafkaBrokers], logger });

type Handler = (messages: KafkaMessage[], topic: string, partition: number) => Promise<number>;

interface Contestant {
  name: string;
  handler: Handler;
  /** CPU time (ms) the contestant's Postgres backends have used since they started. */
  backendCpuMs: () => Promise<number>;
  /** Rows the contestant has stored: after each phase it must equal the events produced. */
  storedRows: () => Promise<number>;
  close: () => Promise<void>;
}

async function countRows(pool: pg.Pool, table: string): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table}`);
  return rows[0]!.n;
}

/** A phase counts only if every event it produced is in the contestant's table, once. */
async function assertStored(contestant: Contestant, expected: number): Promise<void> {
  const stored = await contestant.storedRows();
  if (stored !== expected) throw new Error(`${contestant.name}: ${stored} rows stored, ${expected} expected`);
}

async function ledgerContestant(): Promise<Contestant> {
  const db = await createTestDatabase();
  await migrate({ databaseUrl: db.url, schema: AUDIT_SCHEMA, dir: MIGRATIONS_DIR, logger });
  const pool = new pg.Pool({ connectionString: db.url, max: 8 });
  const writer = benchLedgerWriter(pool);
  return {
    name: 'ledger (batched, hash-chained)',
    handler: (messages, topic, partition) => writer.writeBatch(messages, { topic, partition }),
    backendCpuMs: () => databaseBackendsCpuMs(pool),
    storedRows: () => countRows(pool, 'audit.ledger_events'),
    close: async () => {
      await pool.end();
      await db.drop();
    },
  };
}

async function baselineContestant(): Promise<Contestant> {
  const db = await createTestDatabase();
  const pool = new pg.Pool({ connectionString: db.url, max: 8 });
  await pool.query(`CREATE TABLE baseline_events (
    event_id uuid PRIMARY KEY, call_id uuid, event_type text NOT NULL, occurred_at timestamptz NOT NULL,
    payload jsonb NOT NULL, source_topic text NOT NULL, source_partition int NOT NULL, source_offset bigint NOT NULL)`);
  return {
    name: 'baseline (one INSERT per event)',
    handler: async (messages, topic, partition) => {
      let added = 0;
      for (const message of messages) {
        const event = JSON.parse(message.value!.toString('utf8'));
        const result = await pool.query(
          `INSERT INTO baseline_events VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING`,
          [
            event.eventId,
            event.callId,
            event.type,
            event.occurredAt,
            JSON.stringify(event),
            topic,
            partition,
            message.offset,
          ],
        );
        added += result.rowCount ?? 0;
      }
      return added;
    },
    backendCpuMs: () => databaseBackendsCpuMs(pool),
    storedRows: () => countRows(pool, 'baseline_events'),
    close: async () => {
      await pool.end();
      await db.drop();
    },
  };
}

/** Sends events tagged with their send time; `rate` 0 means as fast as possible. */
async function produce(
  prefix: string,
  count: number,
  rate: number,
  sentAt: Map<string, number>,
): Promise<void> {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  const chunk = rate === 0 ? 2000 : Math.max(1, Math.round(rate / 50));
  const start = performance.now();
  try {
    for (let sent = 0; sent < count; sent += chunk) {
      if (rate > 0) {
        const due = start + (sent / rate) * 1000;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      }
      const events = Array.from({ length: Math.min(chunk, count - sent) }, (_, i) => loadEvent(sent + i));
      const now = performance.now();
      for (const e of events) sentAt.set(e.callId, now);
      await producer.send({
        topic: topicName(prefix, Topics.audit),
        acks: -1,
        messages: events.map((e) => ({ key: e.callId, value: JSON.stringify(e) })),
      });
    }
  } finally {
    await producer.disconnect();
  }
}

/** Consumes until `expected` events are committed; returns per-event commit times. */
async function consume(
  prefix: string,
  contestant: Contestant,
  expected: number,
  committedAt: Map<string, number>,
  track: boolean,
): Promise<{ consumer: Consumer; done: Promise<number>; firstBatchAt: () => number }> {
  let committed = 0;
  let first = 0;
  let resolveDone: (at: number) => void = () => {};
  const done = new Promise<number>((resolve) => {
    resolveDone = resolve;
  });
  const consumer = await startBatchConsumer({
    kafka,
    groupId: consumerGroupName(prefix, 'bench'),
    topics: [topicName(prefix, Topics.audit)],
    logger,
    partitionsConsumedConcurrently: CONCURRENCY,
    handleBatch: async (messages, context) => {
      if (first === 0) first = performance.now();
      await contestant.handler(messages, context.topic, context.partition);
      const now = performance.now();
      // Keyed by the Kafka key (each load event has its own callId): no second JSON parse here.
      if (track) for (const m of messages) committedAt.set(m.key!.toString('latin1'), now);
      committed += messages.length;
      if (committed >= expected) resolveDone(now);
    },
  });
  return { consumer, done, firstBatchAt: () => first };
}

async function throughput(
  contestant: Contestant,
): Promise<{ eps: number; nodeUsPerEvent: number; pgUsPerEvent: number }> {
  const prefix = uniqueName('bench');
  await ensureTopics(kafka, prefix, [Topics.audit]);
  await produce(prefix, EVENTS, 0, new Map());
  const pgBefore = await contestant.backendCpuMs();
  const cpuBefore = process.cpuUsage();
  // Timed from the first batch, so the consumer group's join is not counted.
  const { consumer, done, firstBatchAt } = await consume(prefix, contestant, EVENTS, new Map(), false);
  const end = await done;
  const cpu = process.cpuUsage(cpuBefore);
  const pgAfter = await contestant.backendCpuMs();
  await consumer.disconnect();
  await deleteTopicsWithPrefix(prefix);
  await assertStored(contestant, EVENTS);
  return {
    eps: EVENTS / ((end - firstBatchAt()) / 1000),
    // Node's CPU includes the consumer group's join; Postgres's, sessions opened during the phase.
    nodeUsPerEvent: (cpu.user + cpu.system) / EVENTS,
    pgUsPerEvent: ((pgAfter - pgBefore) * 1000) / EVENTS,
  };
}

async function lag(
  contestant: Contestant,
): Promise<{ p50: number; p99: number; max: number; achieved: number }> {
  const prefix = uniqueName('bench');
  await ensureTopics(kafka, prefix, [Topics.audit]);
  const count = RATE * SECONDS;
  const sentAt = new Map<string, number>();
  const committedAt = new Map<string, number>();
  // Warm the consumer up (group join, first fetch) before the clock starts.
  const { consumer, done } = await consume(prefix, contestant, count, committedAt, true);
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const start = performance.now();
  await produce(prefix, count, RATE, sentAt);
  const end = await done;
  await consumer.disconnect();
  await deleteTopicsWithPrefix(prefix);
  // The throughput phase stored EVENTS rows in the same database before.
  await assertStored(contestant, EVENTS + count);
  const lags = [...sentAt]
    .map(([id, sent]) => (committedAt.get(id) ?? Number.NaN) - sent)
    .sort((a, b) => a - b);
  if (lags.some(Number.isNaN)) throw new Error('an event was never committed');
  const at = (q: number) => lags[Math.min(lags.length - 1, Math.floor(q * lags.length))]!;
  return { p50: at(0.5), p99: at(0.99), max: lags.at(-1)!, achieved: count / ((end - start) / 1000) };
}

async function main(): Promise<void> {
  console.log(
    `ledger ingest benchmark: ${EVENTS} events for throughput; ${RATE} events/s for ${SECONDS} s for lag; ` +
      `Kafka ${infra.kafkaBrokers}, ${Topics.audit.partitions} partitions (run ${randomUUID().slice(0, 8)})`,
  );
  const results: {
    name: string;
    eps: number;
    nodeUsPerEvent: number;
    pgUsPerEvent: number;
    p50: number;
    p99: number;
    max: number;
    achieved: number;
  }[] = [];
  // BENCH_ONLY=ledger runs one contestant alone, for profiling; the report needs both.
  const only = process.env.BENCH_ONLY;
  const contestants = [ledgerContestant, baselineContestant].filter(
    (make) => !only || (make === ledgerContestant ? only === 'ledger' : only === 'baseline'),
  );
  for (const make of contestants) {
    const contestant = await make();
    try {
      const t = await throughput(contestant);
      const l = SKIP_LAG
        ? { p50: Number.NaN, p99: Number.NaN, max: Number.NaN, achieved: 0 }
        : await lag(contestant);
      results.push({ name: contestant.name, ...t, ...l });
    } finally {
      await contestant.close();
    }
  }
  const pad = (s: string, n: number) => s.padEnd(n);
  console.log(
    `\n${pad('contestant', 34)} ${pad('events/s', 10)} ${pad('node µs/ev', 11)} ${pad('pg µs/ev', 9)} ` +
      `${pad('lag p50 ms', 11)} ${pad('lag p99 ms', 11)} lag max ms`,
  );
  for (const r of results) {
    console.log(
      `${pad(r.name, 34)} ${pad(r.eps.toFixed(0), 10)} ${pad(r.nodeUsPerEvent.toFixed(1), 11)} ` +
        `${pad(r.pgUsPerEvent.toFixed(1), 9)} ${pad(r.p50.toFixed(0), 11)} ${pad(r.p99.toFixed(0), 11)} ${r.max.toFixed(0)}`,
    );
  }
  if (results.length < 2) return;
  const [ledger, baseline] = results as [(typeof results)[0], (typeof results)[0]];
  console.log(
    `\nratio ledger/baseline: throughput ×${(ledger.eps / baseline.eps).toFixed(2)}, lag p99 ×${(ledger.p99 / baseline.p99).toFixed(2)}`,
  );
  console.log(
    `goal: ≥ 20000 events/s and lag p99 < 1000 ms at ${RATE} events/s → ${ledger.eps >= 20000 && ledger.p99 < 1000 ? 'met' : 'NOT met'}`,
  );
}

await main();
