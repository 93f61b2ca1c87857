import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { consumerGroupName, type ToolCallRequestedV1, Topics, topicName } from '@portcullis/contracts';
import { stackEnv, waitFor } from '@portcullis/testing';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import pg from 'pg';
import { TestStack } from '../support/stack.ts';

// The audit service as a process: idempotent by event id, dead-letters what it cannot place,
// and the ledger refuses changes.

let stack: TestStack;
let ledger: pg.Pool;
let kafka: Kafka;

before(async () => {
  stack = await TestStack.create();
  await stack.startAudit();
  ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  kafka = new Kafka({
    clientId: 'audit-ingest-test',
    brokers: [stackEnv().kafkaBrokers],
    logLevel: logLevel.NOTHING,
  });
});

after(async () => {
  await ledger?.end();
  await stack?.stop();
});

function requestedEvent(): ToolCallRequestedV1 {
  return {
    type: 'tool_call.requested',
    version: 1,
    eventId: randomUUID(),
    occurredAt: new Date().toISOString(),
    callId: randomUUID(),
    source: { service: 'broker', instanceId: 'test' },
    agent: { id: 'agt_1', name: 'agent', owner: 'owner@example.com' },
    app: { id: 'demo' },
    tool: { name: 'read_record' },
    actionClass: 'read',
    argumentsDigest: 'b'.repeat(64),
    decision: { decisionId: randomUUID(), outcome: 'allow', reasons: ['allowed'], policyRevision: 'r' },
  };
}

test('a replayed event adds nothing; unparseable messages go to the dead-letter topic with a reason', async () => {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const event = requestedEvent();
  const message = { key: event.callId, value: JSON.stringify(event) };
  await producer.send({
    topic: topicName(stack.prefix, Topics.audit),
    acks: -1,
    messages: [
      message,
      message,
      { key: 'garbage', value: 'this is not json' },
      { key: 'wrong-shape', value: JSON.stringify({ ...event, eventId: randomUUID(), version: 99 }) },
    ],
  });
  await producer.send({ topic: topicName(stack.prefix, Topics.audit), acks: -1, messages: [message] });
  await producer.disconnect();

  const letters: { key: string; reason: string }[] = [];
  const consumer = kafka.consumer({ groupId: `${stack.prefix}.dlq-reader` });
  await consumer.connect();
  await consumer.subscribe({ topic: topicName(stack.prefix, Topics.auditDeadLetter), fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message: m }) => {
      letters.push({ key: String(m.key), reason: String(m.headers?.['x-dead-letter-reason']) });
    },
  });
  try {
    await waitFor('two dead letters', () => letters.length === 2, { timeoutMs: 30000 });
  } finally {
    await consumer.disconnect();
  }
  assert.deepEqual(letters.map((l) => l.key).sort(), ['garbage', 'wrong-shape']);
  assert.match(letters.find((l) => l.key === 'garbage')!.reason, /not JSON/);
  assert.match(letters.find((l) => l.key === 'wrong-shape')!.reason, /version/);

  // Once the audit service has committed everything produced, exactly one row may exist.
  await waitFor('the audit service to commit every offset', () => fullyConsumed(), { timeoutMs: 30000 });
  const { rows } = await ledger.query('SELECT event_id FROM audit.ledger_events');
  assert.deepEqual(rows, [{ event_id: event.eventId }]);
});

test('the ledger refuses UPDATE, DELETE and TRUNCATE', async () => {
  await waitFor(
    'a ledger row',
    async () => (await ledger.query('SELECT 1 FROM audit.ledger_events')).rowCount,
  );
  for (const sql of [
    "UPDATE audit.ledger_events SET event_type = 'tampered'",
    'DELETE FROM audit.ledger_events',
    'TRUNCATE audit.ledger_events',
  ]) {
    await assert.rejects(ledger.query(sql), /append-only/, sql);
  }
});

/** True when the ledger's consumer group has committed up to the end of every audit partition. */
async function fullyConsumed(): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topic = topicName(stack.prefix, Topics.audit);
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({
      groupId: consumerGroupName(stack.prefix, 'portcullis.audit.ledger'),
      topics: [topic],
    });
    return ends.every(({ partition, offset }) => {
      const done = committed?.partitions.find((p) => p.partition === partition)?.offset ?? '-1';
      return offset === '0' || done === offset;
    });
  } finally {
    await admin.disconnect();
  }
}
