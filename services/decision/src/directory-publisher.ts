import { type DirectoryRecordV1, Topics, topicName } from '@portcullis/contracts';
import { startCompactedReader } from '@portcullis/kafka';
import type { Logger } from '@portcullis/runtime';
import type { Kafka, Message, Producer } from 'kafkajs';
import type pg from 'pg';
import { type DirectorySnapshot, readDirectorySnapshot } from './directory-records.ts';

/**
 * Publishes the directory on the compacted topic: whenever the Postgres revision counter moves
 * (any write, from the API or the CLI), it reads a consistent snapshot, and sends the records that
 * changed and tombstones for entities that disappeared, followed by a `revision:current` marker.
 *
 * At start it reads the topic back, so it knows what is already published: nothing is re-sent
 * needlessly and entities deleted while the service was down still get their tombstone.
 */
export class DirectoryPublisher {
  readonly #pool: pg.Pool;
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #logger: Logger;
  /** key → record JSON without the revision, as last published. */
  readonly #published = new Map<string, string>();
  #revision = -1;
  #timer: NodeJS.Timeout | undefined;
  #lastError: Error | undefined;
  #running: Promise<void> | undefined;

  readonly #onSnapshot: (snapshot: DirectorySnapshot) => void;

  constructor(
    pool: pg.Pool,
    producer: Producer,
    prefix: string,
    logger: Logger,
    onSnapshot: (snapshot: DirectorySnapshot) => void = () => {},
  ) {
    this.#onSnapshot = onSnapshot;
    this.#pool = pool;
    this.#producer = producer;
    this.#topic = topicName(prefix, Topics.directory);
    this.#logger = logger;
  }

  /** The directory revision last published (-1 before the first publication). */
  get publishedRevision(): number {
    return this.#revision;
  }

  /** Reads back what is on the topic, publishes the current state, then follows the database. */
  async start(kafka: Kafka, intervalMs: number): Promise<void> {
    const reader = await startCompactedReader({
      kafka,
      topics: [this.#topic],
      groupPrefix: 'decision-directory-readback',
      logger: this.#logger,
      apply: (records) => {
        for (const record of records) {
          if (record.value === null) this.#published.delete(record.key);
          else if (!record.key.startsWith('revision:'))
            this.#published.set(record.key, withoutRevision(record.value.toString('utf8')));
        }
      },
    });
    await reader.caughtUp;
    await reader.stop();
    await this.publishNow();
    const tick = () => {
      this.publishNow()
        .catch((error: Error) => {
          if (!this.#lastError) this.#logger.error({ err: error }, 'directory publication failed; retrying');
          this.#lastError = error;
        })
        .finally(() => {
          if (this.#timer) this.#timer = setTimeout(tick, intervalMs);
        });
    };
    this.#timer = setTimeout(tick, intervalMs);
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  check(): void {
    if (this.#revision < 0) throw new Error('directory not published yet');
    if (this.#lastError) throw new Error(`directory publication failing: ${this.#lastError.message}`);
  }

  /** Publishes the changes since the last publication, if the revision moved. Serialized. */
  publishNow(): Promise<void> {
    this.#running = (this.#running ?? Promise.resolve()).then(() => this.#publish());
    return this.#running;
  }

  async #publish(): Promise<void> {
    const { rows } = await this.#pool.query<{ value: string }>('SELECT value FROM directory.revision');
    if (Number(rows[0]?.value ?? 0) === this.#revision) return;
    const snapshot = await readDirectorySnapshot(this.#pool);
    const messages: Message[] = [];
    const next = new Map<string, string>();
    for (const [key, record] of snapshot.records) {
      const json = JSON.stringify(record);
      const comparable = withoutRevision(json);
      next.set(key, comparable);
      if (this.#published.get(key) !== comparable) messages.push({ key, value: json });
    }
    for (const key of this.#published.keys()) if (!next.has(key)) messages.push({ key, value: null });
    const marker: DirectoryRecordV1 = {
      type: 'directory.record',
      version: 1,
      revision: snapshot.revision,
      kind: 'revision',
      id: 'current',
      data: { revision: snapshot.revision },
    };
    messages.push({ key: 'revision:current', value: JSON.stringify(marker) });
    // In sends of bounded size (a broker takes at most max.message.bytes, 1 MB by default, per
    // record batch: the first publication of a large directory is several), the marker in the last.
    for (const chunk of chunkMessages(messages))
      await this.#producer.send({ topic: this.#topic, acks: -1, messages: chunk });
    this.#published.clear();
    for (const [key, value] of next) this.#published.set(key, value);
    this.#revision = snapshot.revision;
    this.#lastError = undefined;
    this.#onSnapshot(snapshot);
    this.#logger.info(
      { revision: snapshot.revision, records: messages.length - 1 },
      'directory changes published',
    );
  }
}

/** Well under Kafka's default max.message.bytes (1 MiB) per record batch, headers included. */
const MAX_SEND_BYTES = 512 * 1024;

/**
 * Splits messages, in order, into sends of at most `maxBytes` of keys and values (a single larger
 * message goes alone, and Kafka decides).
 */
export function chunkMessages(messages: readonly Message[], maxBytes = MAX_SEND_BYTES): Message[][] {
  const chunks: Message[][] = [];
  let current: Message[] = [];
  let bytes = 0;
  for (const message of messages) {
    const size =
      Buffer.byteLength(String(message.key ?? '')) + Buffer.byteLength(String(message.value ?? '')) + 64;
    if (current.length > 0 && bytes + size > maxBytes) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(message);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

function withoutRevision(json: string): string {
  const { revision: _revision, ...rest } = JSON.parse(json) as Record<string, unknown>;
  return JSON.stringify(rest);
}
