import { type TopicDefinition, topicName } from '@portcullis/contracts';
import type { Kafka } from 'kafkajs';

/**
 * Creates the given topics with the partitions and configs their contracts declare. Idempotent:
 * existing topics are left alone. Our brokers disable auto-creation, so producers call this first.
 */
export async function ensureTopics(
  kafka: Kafka,
  prefix: string,
  topics: readonly TopicDefinition[],
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((topic) => !existing.has(topicName(prefix, topic)));
    if (missing.length === 0) return;
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((topic) => ({
        topic: topicName(prefix, topic),
        numPartitions: topic.partitions,
        replicationFactor: -1, // the cluster's default.replication.factor
        configEntries: Object.entries(topic.configs).map(([name, value]) => ({ name, value })),
      })),
    });
  } finally {
    await admin.disconnect();
  }
}

/**
 * A readiness check that asks the cluster for its metadata over a long-lived admin connection.
 * Returns the check and a close function for the shutdown path.
 */
export function kafkaReadinessCheck(kafka: Kafka): {
  check: () => Promise<void>;
  close: () => Promise<void>;
} {
  const admin = kafka.admin();
  let connected: Promise<void> | undefined;
  return {
    check: async () => {
      connected ??= admin.connect().catch((error: unknown) => {
        connected = undefined;
        throw error;
      });
      await connected;
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length === 0) throw new Error('kafka cluster reports no brokers');
    },
    close: () => admin.disconnect(),
  };
}
