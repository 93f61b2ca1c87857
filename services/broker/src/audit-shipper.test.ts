import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, type TestContext, test } from 'node:test';
import { type AuditEvent, Topics, topicName } from '@portcullis/contracts';
import { createKafka, ensureTopics } from '@portcullis/kafka';
import { createLogger } from '@portcullis/runtime';
import { Spool } from '@portcullis/spool';
import {
  completedEvent,
  deleteTopicsWithPrefix,
  freePort,
  requestedEvent,
  stackEnv,
  uniqueName,
  waitFor,
} from '@portcullis/testing';
import type { Kafka } from 'kafkajs';
import { PrivateKafka } from '../../../test/support/private-kafka.ts';
import { WorkerShipper } from './audit-shipper.ts';
import { DurableAuditPublisher } from './durable-audit.ts';

// Local-first audit shipping from a worker thread (WorkerShipper) against real Kafka: every event
// reaches the topic once and in order; a worker that dies mid-shipment loses nothing and is
// replaced; Kafka going away and coming back only delays shipping; shutdown ships what is left.
// What Kafka holds is read back with a consumer, so the worker's producer is judged by its result.

const logger = createLogger({ service: 'test', level: 'silent', destination: new PassThrough() });
const sharedBrokers = () => stackEnv().kafkaBrokers.split(',');

let privateKafka: PrivateKafka | undefined;
after(async () => {
  await privateKafka?.destroy();
});

interface Setup {
  kafka: Kafka;
  topic: string;
  spool: Spool;
  shipper: WorkerShipper;
  audit: DurableAuditPublisher;
}

/**
 * A local-first publisher shipping through a worker, on a fresh topic and spool; shut down when the
 * test ends, pass or fail (a live worker would keep the test file from exiting).
 */
async function setup(t: TestContext, name: string, brokers: string[], log = logger): Promise<Setup> {
  const kafka = createKafka({ clientId: `audit-shipper-${name}`, brokers, logger });
  const prefix = uniqueName(name);
  await ensureTopics(kafka, prefix, [Topics.audit]);
  const topic = topicName(prefix, Topics.audit);
  const dir = await mkdtemp(join(tmpdir(), 'audit-shipper-'));
  // As the broker opens it in local-first mode.
  const { spool } = await Spool.open({
    dir,
    maxBytes: 8 << 20,
    maxRecords: 10_000,
    drainedCompactionDelayMs: 1000,
    positionSyncDelayMs: 200,
  });
  const shipper = new WorkerShipper({
    config: { clientId: `audit-shipper-${name}`, brokers, topic },
    logger: log,
    restartDelayMs: 100,
  });
  const audit = new DurableAuditPublisher({
    // The main thread's producer would send only in kafka mode; local-first ships via the worker.
    producer: kafka.producer(),
    shipper,
    topicPrefix: prefix,
    spool,
    acceptance: 'local-first',
    sendTimeoutMs: 10_000,
    retryIntervalMs: 100,
    logger,
  });
  t.after(async () => {
    await audit.stop();
    await shipper.close();
    await spool.close().catch(() => {}); // already closed by the test
    // A private Kafka goes away with its data (and may be stopped by now): only the shared one keeps topics.
    if (brokers.join(',') === stackEnv().kafkaBrokers) await deleteTopicsWithPrefix(prefix);
  });
  return { kafka, topic, spool, shipper, audit };
}

/** Publishes `calls` calls one after the other (request, then outcome); returns the event ids in order. */
async function publishCalls(audit: DurableAuditPublisher, calls: number): Promise<string[]> {
  const published: string[] = [];
  for (let i = 0; i < calls; i++) {
    const request = requestedEvent();
    const events: AuditEvent[] = [request, completedEvent(request)];
    for (const event of events) {
      await audit.publish(event);
      published.push(event.eventId);
    }
  }
  return published;
}

/** Every message on the topic as [partition, eventId], per partition in log order, once `count` arrived. */
async function readTopic(kafka: Kafka, topic: string, count: number): Promise<[number, string][]> {
  const seen: [number, string][] = [];
  const consumer = kafka.consumer({ groupId: uniqueName('shipper-reader') });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      seen.push([partition, (JSON.parse(String(message.value)) as { eventId: string }).eventId]);
    },
  });
  try {
    await waitFor(`${count} events on ${topic}`, async () => seen.length >= count, { timeoutMs: 30_000 });
    // Room for a duplicate to show up, which the exactly-once case must not see.
    await new Promise((resolve) => setTimeout(resolve, 500));
  } finally {
    await consumer.disconnect();
  }
  return seen;
}

/** Asserts each published event is on the topic, and each partition holds its events in publish order. */
function assertAllInOrder(seen: [number, string][], published: string[]): void {
  const position = new Map(published.map((id, i) => [id, i]));
  assert.deepEqual(new Set(seen.map(([, id]) => id)), new Set(published), 'every event shipped');
  const lastByPartition = new Map<number, number>();
  for (const [partition, id] of seen) {
    const at = position.get(id) ?? -1;
    const last = lastByPartition.get(partition) ?? -1;
    // A re-sent batch may repeat older events after a crash; a first occurrence never overtakes.
    if (at > last) lastByPartition.set(partition, at);
    else assert.ok(seen.filter(([, other]) => other === id).length > 1, `event ${id} out of order`);
  }
}

test('shipped from the worker: every event once and in order, and the spool drains', async (t) => {
  const s = await setup(t, 'worker-once', sharedBrokers());
  const published = await publishCalls(s.audit, 150);
  await s.audit.flush(15_000);
  assert.equal(s.spool.pendingRecords, 0);
  const seen = await readTopic(s.kafka, s.topic, published.length);
  assert.equal(seen.length, published.length, 'no duplicates');
  assertAllInOrder(seen, published);
});

test('the worker dies with a shipment in flight: logged, replaced, nothing lost', async (t) => {
  const lines = new PassThrough();
  const logged: string[] = [];
  lines.on('data', (chunk: Buffer) => logged.push(chunk.toString('utf8')));
  const s = await setup(
    t,
    'worker-crash',
    sharedBrokers(),
    createLogger({ service: 'test', level: 'error', destination: lines }),
  );
  // Ends the worker right after it was handed its first shipment: whether or not Kafka got it,
  // the shipment must fail and its records stay in the spool.
  const ship = s.shipper.ship.bind(s.shipper);
  let crashes = 0;
  s.shipper.ship = (records) => {
    const shipped = ship(records);
    if (crashes++ === 0) void s.shipper.terminateWorker();
    return shipped;
  };
  const first = await publishCalls(s.audit, 50);
  await waitFor('the worker to be replaced', async () => crashes > 1 && s.shipper.running, {
    timeoutMs: 10_000,
  });
  assert.match(logged.join(''), /audit shipper worker died; restarting it/);
  const second = await publishCalls(s.audit, 50);
  await s.audit.flush(15_000);
  assert.equal(s.spool.pendingRecords, 0, 'shipping resumed and drained the spool');
  const published = [...first, ...second];
  assertAllInOrder(await readTopic(s.kafka, s.topic, published.length), published);
});

test('Kafka away, then back: events stay spooled, then ship in order', async (t) => {
  privateKafka = await PrivateKafka.start();
  const s = await setup(t, 'worker-kafka-away', [privateKafka.brokers]);
  const before = await publishCalls(s.audit, 20);
  await s.audit.flush(15_000);
  assert.equal(s.spool.pendingRecords, 0);
  await privateKafka.kill();
  const during = await publishCalls(s.audit, 20);
  // Accepted (fsync'd), but nothing can leave while Kafka is away.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(s.spool.pendingRecords, during.length, 'held in the spool');
  await privateKafka.resume();
  await s.audit.flush(60_000);
  assert.equal(s.spool.pendingRecords, 0, 'drained once Kafka was back');
  const published = [...before, ...during];
  assertAllInOrder(await readTopic(s.kafka, s.topic, published.length), published);
});

test('shutdown: flush ships what is spooled, close ends the worker, later shipments are refused', async (t) => {
  const s = await setup(t, 'worker-shutdown', sharedBrokers());
  const published = await publishCalls(s.audit, 30);
  // Straight to the shutdown sequence, as main.ts runs it in the flush phase.
  await s.audit.flush(15_000);
  await s.audit.stop();
  await s.shipper.close();
  assert.equal(s.spool.pendingRecords, 0, 'flushed before the worker was closed');
  assert.equal(s.shipper.running, false);
  await assert.rejects(s.shipper.ship([Buffer.from('{}')]), /closed/);
  await s.spool.close();
  const seen = await readTopic(s.kafka, s.topic, published.length);
  assert.equal(seen.length, published.length);
  assertAllInOrder(seen, published);
});

test('a worker that keeps dying makes the replica unready while it is down; a shipment clears it', async (t) => {
  const prefix = uniqueName('worker-unready');
  const kafka = createKafka({ clientId: 'audit-shipper-unready', brokers: sharedBrokers(), logger });
  await ensureTopics(kafka, prefix, [Topics.audit]);
  const topic = topicName(prefix, Topics.audit);
  const shipper = new WorkerShipper({
    config: { clientId: 'audit-shipper-unready', brokers: sharedBrokers(), topic },
    logger,
    restartDelayMs: 300,
  });
  t.after(async () => {
    await shipper.close();
    await deleteTopicsWithPrefix(prefix);
  });
  for (let death = 1; death <= 3; death++) {
    await waitFor('a running worker', async () => shipper.running, { timeoutMs: 10_000 });
    assert.doesNotThrow(() => shipper.check(), `ready before death ${death}`);
    await shipper.terminateWorker();
    await waitFor('the death to be noticed', async () => !shipper.running, { timeoutMs: 10_000 });
  }
  // Third death in a row, replacement 1.2 s away: not ready meanwhile.
  assert.throws(() => shipper.check(), /3 failures in a row/);
  await waitFor('the replacement', async () => shipper.running, { timeoutMs: 10_000 });
  assert.doesNotThrow(() => shipper.check());
  // A shipment that Kafka takes ends the streak: a later single crash is forgiven again.
  await shipper.ship([Buffer.from(JSON.stringify(requestedEvent()))]);
  await shipper.terminateWorker();
  assert.doesNotThrow(() => shipper.check());
});

test('abandon ends a shipment stuck in retries at once, and nothing restarts', async (t) => {
  // Nothing listens there: kafkajs would retry for tens of seconds.
  const brokers = [`127.0.0.1:${await freePort()}`];
  const shipper = new WorkerShipper({
    config: { clientId: 'audit-shipper-abandon', brokers, topic: 'nowhere.audit' },
    logger,
    restartDelayMs: 100,
  });
  t.after(() => shipper.close());
  await waitFor('a running worker', async () => shipper.running, { timeoutMs: 10_000 });
  const stuck = shipper.ship([Buffer.from(JSON.stringify(requestedEvent()))]);
  const settled = stuck.then(
    () => 'shipped',
    () => 'rejected',
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  const started = performance.now();
  await shipper.abandon();
  assert.equal(await settled, 'rejected');
  assert.ok(performance.now() - started < 5_000, 'abandoned without waiting for the retries');
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(shipper.running, false, 'no replacement worker');
  await assert.rejects(shipper.ship([Buffer.from('{}')]), /closed/);
});
