import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Topics, topicName } from '@portcullis/contracts';
import { stackEnv, waitFor } from '@portcullis/testing';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import pg from 'pg';
import { ledgerCaughtUp, loadEvent } from '../support/ledger.ts';
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

test('a replayed event adds nothing; unparseable messages go to the dead-letter topic with a reason', async () => {
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const event = loadEvent(1);
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
  await waitFor('the audit service to commit every offset', () => ledgerCaughtUp(kafka, stack.prefix), {
    timeoutMs: 30000,
  });
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
