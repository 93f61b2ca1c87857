import { consumerGroupName, Topics, topicName } from '@portcullis/contracts';
import { startBatchConsumer } from '@portcullis/kafka';
import type { Logger } from '@portcullis/runtime';
import type { Consumer, Kafka } from 'kafkajs';
import type { AppConnections } from './app-connections.ts';

/**
 * Follows `portcullis.tool-definitions.v1` and records what brokers report (ToolDefinitionChangedV1)
 * as pending tool changes. A batch is one transaction, committed before its offsets; recording is
 * idempotent per (app, tool, observed fingerprint), so a redelivered batch changes nothing.
 * Unreadable events are logged and skipped: they must not block the partition, and the broker
 * keeps the tool blocked whatever happens here.
 */
export async function startToolChangeConsumer(options: {
  kafka: Kafka;
  prefix: string;
  apps: AppConnections;
  logger: Logger;
}): Promise<Consumer> {
  const { kafka, prefix, apps, logger } = options;
  return startBatchConsumer({
    kafka,
    groupId: consumerGroupName(prefix, 'decision-tool-definitions'),
    topics: [topicName(prefix, Topics.toolDefinitions)],
    logger,
    handleBatch: async (messages) => {
      const events = messages.map((message) => {
        try {
          return message.value === null ? null : (JSON.parse(message.value.toString('utf8')) as unknown);
        } catch {
          return null;
        }
      });
      const outcomes = await apps.recordChanges(events);
      outcomes.forEach((outcome, index) => {
        const message = messages[index]!;
        if (outcome === 'invalid' || outcome === 'unknown_app')
          logger.warn(
            { offset: message.offset, key: message.key?.toString('utf8'), outcome },
            'tool definition report skipped',
          );
        else if (outcome === 'recorded')
          logger.info(
            { key: message.key?.toString('utf8') },
            'tool definition change recorded; an admin must approve it',
          );
      });
    },
  });
}
