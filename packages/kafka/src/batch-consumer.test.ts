import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { topicName } from '@portcullis/contracts';
import { deleteTopicsWithPrefix, stackEnv, uniqueName, waitFor } from '@portcullis/testing';
import type { Kafka, KafkaMessage } from 'kafkajs';
import { pino } from 'pino';
import { ensureTopics } from './admin.ts';
import { startBatchConsumer } from './batch-consumer.ts';
import { createKafka, createProducer, sendDurably } from './client.ts';

// Against the real Kafka of the test run, on topics of its own.
const logger = pino({ level: 'silent' }, new PassThrough());
const prefix = uniqueName('t');
const topic = { name: 'consumer-test.v1', partitions: 2, configs: {}, description: 'test' };
let kafka: Kafka;

before(async () => {
  kafka = createKafka({ clientId: 'consumer-test', brokers: [stackEnv().kafkaBrokers], logger });
  await ensureTopics(kafka, prefix, [topic]);
  await ensureTopics(kafka, prefix, [topic]); // idempotent
});

after(async () => {
  await deleteTopicsWithPrefix(prefix);
});

test('offsets are committed only after the handler succeeds, and order holds per partition', async () => {
  const producer = createProducer(kafka);
  await producer.connect();
  const name = topicName(prefix, topic);
  const messages = Array.from({ length: 40 }, (_, i) => ({ key: `k${i % 4}`, value: String(i) }));
  await sendDurably(producer, name, messages);

  const seen: string[] = [];
  let failuresLeft = 1;
  const groupId = `${prefix}.group`;
  const handle = async (batch: KafkaMessage[]) => {
    if (failuresLeft-- > 0) throw new Error('simulated database outage');
    seen.push(...batch.map((m) => `${m.key}:${m.value}`));
  };
  const consumer = await startBatchConsumer({ kafka, groupId, topics: [name], logger, handleBatch: handle });
  try {
    await waitFor('all 40 messages', () => new Set(seen).size === 40, { timeoutMs: 30000 });
  } finally {
    await consumer.disconnect();
  }
  // Within one key (one partition), values arrive in the order they were produced.
  for (const key of ['k0', 'k1', 'k2', 'k3']) {
    const values = seen.filter((s) => s.startsWith(`${key}:`)).map((s) => Number(s.split(':')[1]));
    assert.deepEqual(
      values,
      [...values].sort((a, b) => a - b),
      `order of ${key}: ${values.join(',')}`,
    );
  }

  // A new consumer in the same group resumes after the committed offsets: only new messages arrive.
  await sendDurably(producer, name, [{ key: 'k0', value: 'after-restart' }]);
  const resumed: string[] = [];
  const again = await startBatchConsumer({
    kafka,
    groupId,
    topics: [name],
    logger,
    handleBatch: async (batch) => void resumed.push(...batch.map((m) => String(m.value))),
  });
  try {
    await waitFor('the message produced after the restart', () => resumed.includes('after-restart'), {
      timeoutMs: 30000,
    });
  } finally {
    await again.disconnect();
    await producer.disconnect();
  }
  assert.deepEqual(resumed, ['after-restart']);
});
