import { type AuditEvent, parseAuditEvent } from '@portcullis/contracts';
import { withTransaction } from '@portcullis/db';
import type { BatchContext } from '@portcullis/kafka';
import type { KafkaMessage } from 'kafkajs';
import type pg from 'pg';

export interface DeadLetter {
  message: KafkaMessage;
  reason: string;
}

interface Placed {
  event: AuditEvent;
  offset: string;
}

/**
 * Turns one Kafka batch into ledger rows in one transaction. Rows are keyed by event id, so a batch
 * delivered twice (after a crash before the offset commit) adds nothing the second time.
 * Messages that are not valid audit events are handed to `deadLetter` first, never dropped.
 */
export class LedgerWriter {
  readonly #pool: pg.Pool;
  readonly #deadLetter: (letters: DeadLetter[], context: BatchContext) => Promise<void>;

  constructor(pool: pg.Pool, deadLetter: (letters: DeadLetter[], context: BatchContext) => Promise<void>) {
    this.#pool = pool;
    this.#deadLetter = deadLetter;
  }

  /** Returns how many new rows the batch added. */
  async writeBatch(messages: KafkaMessage[], context: BatchContext): Promise<number> {
    const placed: Placed[] = [];
    const rejected: DeadLetter[] = [];
    for (const message of messages) {
      const parsed = parseAuditEvent(message.value);
      if (parsed.ok) placed.push({ event: parsed.event, offset: message.offset });
      else rejected.push({ message, reason: parsed.reason });
    }
    if (rejected.length > 0) await this.#deadLetter(rejected, context);
    if (placed.length === 0) return 0;
    return withTransaction(this.#pool, async (client) => {
      const result = await client.query(
        insertSql(placed.length),
        placed.flatMap((p) => rowValues(p, context)),
      );
      return result.rowCount ?? 0;
    });
  }
}

const COLUMNS = [
  'event_id',
  'call_id',
  'event_type',
  'event_version',
  'occurred_at',
  'payload',
  'source_topic',
  'source_partition',
  'source_offset',
] as const;

function insertSql(rows: number): string {
  const tuples = Array.from(
    { length: rows },
    (_, row) => `(${COLUMNS.map((_, column) => `$${row * COLUMNS.length + column + 1}`).join(', ')})`,
  );
  return `INSERT INTO audit.ledger_events (${COLUMNS.join(', ')}) VALUES ${tuples.join(', ')}
          ON CONFLICT (event_id) DO NOTHING`;
}

function rowValues({ event, offset }: Placed, { topic, partition }: BatchContext): unknown[] {
  return [
    event.eventId,
    event.callId,
    event.type,
    event.version,
    event.occurredAt,
    JSON.stringify(event),
    topic,
    partition,
    offset,
  ];
}
