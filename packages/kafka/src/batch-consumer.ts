import type { Consumer, Kafka, KafkaMessage } from 'kafkajs';
import type { Logger } from 'pino';

export interface BatchContext {
  topic: string;
  partition: number;
}

export interface BatchConsumerOptions {
  kafka: Kafka;
  groupId: string;
  topics: string[];
  logger: Logger;
  /**
   * Makes the batch's effect durable (e.g. one database transaction) and only then resolves.
   * Offsets are committed after it resolves; if it throws, nothing is committed and the batch is
   * delivered again, so the handler must be idempotent.
   */
  handleBatch: (messages: KafkaMessage[], context: BatchContext) => Promise<void>;
  /**
   * How many partitions' batches may be handled at once (default 1). Order within a partition is
   * kept either way; more lets one partition's database round trip overlap another's parsing.
   */
  partitionsConsumedConcurrently?: number;
}

/**
 * Consumes in batches with at-least-once delivery: offsets are committed only after the handler's
 * effect is durable. Per-partition order is kept because each batch holds one partition.
 */
export async function startBatchConsumer(options: BatchConsumerOptions): Promise<Consumer> {
  const { kafka, groupId, topics, logger, handleBatch, partitionsConsumedConcurrently = 1 } = options;
  const consumer = kafka.consumer({
    groupId,
    allowAutoTopicCreation: false,
    // Wait briefly for more data so batches fill up under load without adding much latency.
    maxWaitTimeInMs: 100,
    sessionTimeout: 30000,
    heartbeatInterval: 3000,
  });
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    partitionsConsumedConcurrently,
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      if (!isRunning() || isStale() || batch.messages.length === 0) return;
      await handleBatch(batch.messages, { topic: batch.topic, partition: batch.partition });
      const last = batch.messages[batch.messages.length - 1]!;
      resolveOffset(last.offset);
      // With autoCommit off, commitOffsetsIfNecessary does nothing: commit explicitly. The committed
      // offset is the next one to read.
      const next = (BigInt(last.offset) + 1n).toString();
      await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }]);
      await heartbeat();
      logger.debug(
        { topic: batch.topic, partition: batch.partition, count: batch.messages.length },
        'batch committed',
      );
    },
  });
  return consumer;
}
