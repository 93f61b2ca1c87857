import { type TopicDefinition, topicName } from '@portcullis/contracts';
import type { Admin, Kafka } from 'kafkajs';

/**
 * Creates the given topics with the partitions and configs their contracts declare, then waits
 * until every partition of every given topic has a leader. Idempotent: existing topics are left
 * alone, and services racing to create the same topic both succeed. Our brokers disable
 * auto-creation, so producers and consumers call this first.
 */
export async function ensureTopics(
  kafka: Kafka,
  prefix: string,
  topics: readonly TopicDefinition[],
  { timeoutMs = 30_000 }: { timeoutMs?: number } = {},
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const names = topics.map((topic) => topicName(prefix, topic));
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((topic) => !existing.has(topicName(prefix, topic)));
    if (missing.length > 0) {
      try {
        await admin.createTopics({
          // Leaders are awaited below: kafkajs's own wait gives up on a topic the controller
          // created but the broker's metadata does not list yet (UNKNOWN_TOPIC_OR_PARTITION).
          waitForLeaders: false,
          topics: missing.map((topic) => ({
            topic: topicName(prefix, topic),
            numPartitions: topic.partitions,
            replicationFactor: -1, // the cluster's default.replication.factor
            configEntries: Object.entries(topic.configs).map(([name, value]) => ({ name, value })),
          })),
        });
      } catch (error) {
        // Another service created it between our list and our create: that is the goal reached.
        if (!isTopicAlreadyExists(error)) throw error;
      }
    }
    await waitForLeaders(admin, names, timeoutMs);
  } finally {
    await admin.disconnect();
  }
}

async function waitForLeaders(admin: Admin, topics: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const { topics: metadata } = await admin.fetchTopicMetadata({ topics });
      const ready =
        metadata.length === topics.length &&
        metadata.every(
          (topic) => topic.partitions.length > 0 && topic.partitions.every((p) => p.leader >= 0),
        );
      if (ready) return;
    } catch (error) {
      if (!(error as { retriable?: boolean }).retriable) throw error;
    }
    if (Date.now() > deadline)
      throw new Error(`topics have no leaders after ${timeoutMs} ms: ${topics.join(', ')}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function isTopicAlreadyExists(error: unknown): boolean {
  const failure = error as { type?: string; errors?: { type?: string }[] };
  if (failure.type === 'TOPIC_ALREADY_EXISTS') return true;
  return (
    Array.isArray(failure.errors) &&
    failure.errors.length > 0 &&
    failure.errors.every((e) => e.type === 'TOPIC_ALREADY_EXISTS')
  );
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
