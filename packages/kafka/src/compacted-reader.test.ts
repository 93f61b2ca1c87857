import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { topicName } from '@portcullis/contracts';
import { deleteTopicsWithPrefix, stackEnv, uniqueName, waitFor } from '@portcullis/testing';
import type { Kafka } from 'kafkajs';
import { pino } from 'pino';
import { ensureTopics } from './admin.ts';
import { createKafka, createProducer, sendDurably } from './client.ts';
import { startCompactedReader } from './compacted-reader.ts';

// Against the real Kafka of the test run, on a topic of its own.
const logger = pino({ level: 'silent' }, new PassThrough());
const prefix = uniqueName('t');
const topic = {
  name: 'compacted-test.v1',
  partitions: 1,
  configs: { 'cleanup.policy': 'compact' },
  description: 'test',
};
let kafka: Kafka;

before(async () => {
  kafka = createKafka({ clientId: 'compacted-test', brokers: [stackEnv().kafkaBrokers], logger });
  await ensureTopics(kafka, prefix, [topic]);
});

after(async () => {
  await deleteTopicsWithPrefix(prefix);
});

test('a replay from the start (a group rejoin) applies nothing already applied: no stale state comes back', async () => {
  const name = topicName(prefix, topic);
  const producer = createProducer(kafka);
  await producer.connect();
  const applied: string[] = [];
  try {
    await sendDurably(producer, name, [
      { key: 'agent', value: 'active, keys k1 k2' },
      { key: 'agent', value: 'active, keys k2' },
    ]);
    const reader = await startCompactedReader({
      kafka,
      topics: [name],
      groupPrefix: prefix,
      logger,
      apply: (records) => void applied.push(...records.map((r) => String(r.value))),
    });
    try {
      await reader.caughtUp;
      assert.deepEqual(applied, ['active, keys k1 k2', 'active, keys k2']);
      await reader.replayFromStart();
      await sendDurably(producer, name, [{ key: 'agent', value: 'suspended' }]);
      await waitFor('the new record', () => applied.includes('suspended'), { timeoutMs: 15000 });
      // The revoked key k1 never came back, not even for a moment.
      assert.deepEqual(applied, ['active, keys k1 k2', 'active, keys k2', 'suspended']);
    } finally {
      await reader.stop();
    }
  } finally {
    await producer.disconnect();
  }
});
