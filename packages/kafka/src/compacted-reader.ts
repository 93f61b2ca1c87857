import { randomUUID } from 'node:crypto';
import type { Consumer, Kafka } from 'kafkajs';
import type { Logger } from 'pino';

export interface CompactedRecord {
  topic: string;
  key: string;
  /** null for a tombstone: the key was removed. */
  value: Buffer | null;
}

export interface CompactedReaderOptions {
  kafka: Kafka;
  /** Full topic names (prefix applied). */
  topics: string[];
  /** Names the throwaway consumer group, for operators reading group listings. */
  groupPrefix: string;
  logger: Logger;
  /** Applies records in order; called once per fetched batch. Must not throw for bad records. */
  apply: (records: CompactedRecord[]) => void | Promise<void>;
}

export interface CompactedReader {
  /** Resolves once everything that was on the topics when the reader started has been applied. */
  caughtUp: Promise<void>;
  stop(): Promise<void>;
  /**
   * Milliseconds since the consumer last completed a fetch from Kafka (empty ones included: an idle
   * reader fetches every 250 ms). Grows while Kafka is away or the consumer has crashed.
   */
  sinceLastFetchMs(): number;
  /**
   * Test seam: moves the consumer back to the start of every partition, as a consumer-group
   * rejoin does (no offsets are ever committed, so kafkajs starts over from the beginning).
   */
  replayFromStart(): Promise<void>;
}

/**
 * Reads compacted state topics from the beginning and keeps following them: every replica gets
 * the whole state, so the consumer group is unique per reader and never commits offsets.
 */
export async function startCompactedReader(options: CompactedReaderOptions): Promise<CompactedReader> {
  const { kafka, topics, groupPrefix, logger, apply } = options;
  const admin = kafka.admin();
  await admin.connect();
  // What "caught up" means: the end offsets at start, per partition.
  const targets = new Map<string, bigint>();
  try {
    for (const topic of topics) {
      for (const { partition, high } of await endOffsets(admin, topic))
        if (BigInt(high) > 0n) targets.set(`${topic}/${partition}`, BigInt(high));
    }
  } finally {
    await admin.disconnect();
  }
  let markCaughtUp: () => void = () => {};
  const caughtUp = new Promise<void>((resolve) => {
    markCaughtUp = resolve;
  });
  const check = () => {
    if (targets.size === 0) markCaughtUp();
  };
  check();

  const consumer: Consumer = kafka.consumer({
    groupId: `${groupPrefix}.${randomUUID()}`,
    allowAutoTopicCreation: false,
    // How long Kafka holds a fetch that finds nothing new. A change still arrives at once (the fetch
    // returns as soon as there is a byte to read: 3 ms from produce to applied, measured with 50,
    // 500 and 1000 alike); the wait only sets how often an idle reader polls (each poll wakes the
    // broker's event loop between calls) and how long stop() waits for the fetch in flight.
    maxWaitTimeInMs: 250,
    sessionTimeout: 30000,
    heartbeatInterval: 3000,
  });
  let lastFetch = performance.now();
  consumer.on(consumer.events.FETCH, () => {
    lastFetch = performance.now();
  });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  // The last offset applied, per partition. A consumer-group rejoin (Kafka away long enough for
  // the session to expire, a coordinator moving) starts over from the beginning, and a compacted
  // topic still holds its history in the segment being written: without this, every old record —
  // an agent's keys before a revocation, a bundle before the active one — would be applied again,
  // live, until the replay reached the present. Offsets only grow within a partition.
  const applied = new Map<string, bigint>();
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch, heartbeat }) => {
      const partitionKey = `${batch.topic}/${batch.partition}`;
      const done = applied.get(partitionKey) ?? -1n;
      const records: CompactedRecord[] = [];
      for (const message of batch.messages) {
        if (!message.key || BigInt(message.offset) <= done) continue;
        records.push({ topic: batch.topic, key: message.key.toString('utf8'), value: message.value });
      }
      if (records.length > 0) await apply(records);
      const last = batch.messages[batch.messages.length - 1];
      if (last && BigInt(last.offset) > done) applied.set(partitionKey, BigInt(last.offset));
      const target = targets.get(partitionKey);
      if (last && target !== undefined && BigInt(last.offset) + 1n >= target) {
        targets.delete(partitionKey);
        check();
      }
      await heartbeat();
    },
  });
  logger.info({ topics }, 'following compacted topics');
  return {
    caughtUp,
    stop: () => consumer.disconnect(),
    sinceLastFetchMs: () => performance.now() - lastFetch,
    replayFromStart: async () => {
      for (const key of applied.keys()) {
        const slash = key.lastIndexOf('/');
        consumer.seek({ topic: key.slice(0, slash), partition: Number(key.slice(slash + 1)), offset: '0' });
      }
    },
  };
}

/**
 * The end offsets of a topic. Right after a topic is created the cluster may briefly answer "not
 * the leader" (metadata still propagating); such retriable errors are retried for up to 15 s.
 */
async function endOffsets(
  admin: ReturnType<Kafka['admin']>,
  topic: string,
): Promise<{ partition: number; high: string }[]> {
  const deadline = Date.now() + 15_000;
  for (let attempt = 0; ; attempt++) {
    try {
      return await admin.fetchTopicOffsets(topic);
    } catch (error) {
      if (!(error as { retriable?: boolean }).retriable || Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 50 * 2 ** attempt)));
    }
  }
}
