import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import { type AuditEvent, AuditEvent as AuditEventSchema, Topics, topicName } from '@portcullis/contracts';
import { createKafka, createProducer, ensureTopics } from '@portcullis/kafka';
import { createLogger } from '@portcullis/runtime';
import { Spool, type SpoolOptions, spoolFaults } from '@portcullis/spool';
import { deleteTopicsWithPrefix, freePort, stackEnv, uniqueName } from '@portcullis/testing';
import type { Kafka, Producer, ProducerRecord, RecordMetadata } from 'kafkajs';
import { z } from 'zod';
import { generate, mutate, random } from '../../../test/support/generated-events.ts';
import { AuditUnavailableError, type DurableAuditOptions, DurableAuditPublisher } from './durable-audit.ts';

// The audit sink with Kafka up (group commit) and with Kafka unreachable (a real kafkajs producer pointed at a port nobody listens
// on): events go to the spool in order, and admission keeps room for every admitted call's outcome.
// Replay to a Kafka that comes back is proven end to end in test/e2e/audit-spool.test.ts.

const logger = createLogger({ service: 'test', level: 'silent', destination: new PassThrough() });

/** A publisher in local-first mode with Kafka up; `options` override the test defaults. */
const localFirst = (
  producer: Producer,
  topicPrefix: string,
  spool: Spool,
  options: Partial<DurableAuditOptions> = {},
) =>
  new DurableAuditPublisher({
    producer,
    topicPrefix,
    spool,
    acceptance: 'local-first',
    sendTimeoutMs: 10_000,
    retryIntervalMs: 100,
    logger,
    ...options,
  });

/** A spool in a fresh temporary directory (1 MiB). */
async function tempSpool(options: Omit<SpoolOptions, 'dir' | 'maxBytes'>): Promise<Spool> {
  const dir = await mkdtemp(join(tmpdir(), 'durable-audit-'));
  return (await Spool.open({ dir, maxBytes: 1 << 20, ...options })).spool;
}

/** The topic prefixes this file used on the shared Kafka: their topics are deleted when it ends. */
const sharedPrefixes: string[] = [];
after(async () => {
  await Promise.all(sharedPrefixes.map((prefix) => deleteTopicsWithPrefix(prefix)));
});

/** A connected producer on the shared Kafka, with a topic prefix of its own; `around` wraps each send. */
async function sharedKafkaProducer(
  name: string,
  around: (record: ProducerRecord, send: Producer['send']) => Promise<RecordMetadata[]>,
): Promise<{ kafka: Kafka; prefix: string; producer: Producer }> {
  const kafka = createKafka({
    clientId: `durable-audit-${name}`,
    brokers: stackEnv().kafkaBrokers.split(','),
    logger,
  });
  const prefix = uniqueName(name);
  await ensureTopics(kafka, prefix, [Topics.audit]);
  sharedPrefixes.push(prefix);
  const producer = createProducer(kafka);
  await producer.connect();
  const send = producer.send.bind(producer);
  producer.send = (record) => around(record, send);
  return { kafka, prefix, producer };
}
const envelope = (callId: string) => ({
  version: 1 as const,
  eventId: randomUUID(),
  occurredAt: new Date().toISOString(),
  callId,
  source: { service: 'broker', instanceId: 'test' },
});
const requested = (callId: string): AuditEvent => ({
  ...envelope(callId),
  type: 'tool_call.requested',
  agent: { id: 'a-1', name: 'agent', owner: 'o@example.com' },
  app: { id: 'demo' },
  tool: { name: 'read_record' },
  actionClass: 'read',
  argumentsDigest: '0'.repeat(64),
  decision: {
    outcome: 'allow',
    reasons: ['allowed'],
    policyRevision: '0123456789abcdef',
    decisionId: randomUUID(),
  },
});
const completed = (callId: string): AuditEvent => ({
  ...envelope(callId),
  type: 'tool_call.completed',
  outcome: 'succeeded',
  durationMs: 1,
});

test('with Kafka unreachable: spooled in order, and admission keeps room for outcomes', async () => {
  const spool = await tempSpool({ maxRecords: 4 });
  const audit = await unreachableKafkaPublisher(spool);
  const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
  await audit.publish(requested(a));
  assert.equal(audit.spooling, true);
  await audit.publish(requested(b));
  // A third call would leave no room for the outcomes of a and b: refused, retryable.
  await assert.rejects(audit.publish(requested(c)), AuditUnavailableError);
  assert.throws(() => audit.check(), /audit spool is full/);
  // The outcomes of the admitted calls always fit.
  await audit.publish(completed(a));
  await audit.publish(completed(b));
  const batch = await spool.peek(10);
  assert.deepEqual(
    batch.records.map((r) => {
      const event = JSON.parse(r.toString('utf8')) as AuditEvent;
      return [event.callId, event.type];
    }),
    [
      [a, 'tool_call.requested'],
      [b, 'tool_call.requested'],
      [a, 'tool_call.completed'],
      [b, 'tool_call.completed'],
    ],
  );
  await audit.stop();
  await spool.close();
});

test("with Kafka unreachable: one agent fills its share of the spool, and another agent's calls go on", async () => {
  const spool = await tempSpool({ maxRecords: 20 });
  const audit = await unreachableKafkaPublisher(spool, 0.5); // 10 records per agent
  const as = (agentId: string, callId: string): AuditEvent =>
    ({
      ...requested(callId),
      agent: { id: agentId, name: agentId, owner: 'o@example.com' },
    }) as AuditEvent;
  const flooder: string[] = [];
  // Each call: its request, and room for its outcome. The flooder's calls end (outcome) as they go.
  for (;;) {
    const callId = randomUUID();
    try {
      await audit.publish(as('flooder', callId));
    } catch (error) {
      assert.ok(error instanceof AuditUnavailableError, String(error));
      assert.match(error.message, /this agent's share of the audit spool is full/);
      break;
    }
    flooder.push(callId);
    await audit.publish(completed(callId));
  }
  assert.equal(flooder.length, 5, 'five calls, request and outcome each: its ten records');
  assert.doesNotThrow(() => audit.check(), 'the replica stays ready: the spool is not full');
  const other = randomUUID();
  await audit.publish(as('quiet', other));
  await audit.publish(completed(other));
  await audit.stop();
  await spool.close();
});

test('with Kafka unreachable: an outcome on its way to disk is not counted twice against the room', async () => {
  // Four records: call a's request and outcome, and call b's request with room for its outcome.
  const spool = await tempSpool({ maxRecords: 4 });
  const audit = await unreachableKafkaPublisher(spool);
  try {
    const [a, b] = [randomUUID(), randomUUID()];
    await audit.publish(requested(a));
    // a's outcome is queued for the disk (the spool holds its room from now on) but not written
    // yet: b is admitted meanwhile, where counting a's room twice would have refused it.
    const outcome = audit.publish(completed(a));
    await audit.publish(requested(b));
    await outcome;
    await audit.publish(completed(b));
    assert.equal(spool.pendingRecords, 4);
  } finally {
    await audit.stop();
    await spool.close();
  }
});

test("with Kafka unreachable: an agent's calls in flight at once count their outcomes against its share", async () => {
  const spool = await tempSpool({ maxRecords: 40 });
  const audit = await unreachableKafkaPublisher(spool, 0.25); // 10 records per agent
  const as = (agentId: string, callId: string): AuditEvent =>
    ({
      ...requested(callId),
      agent: { id: agentId, name: agentId, owner: 'o@example.com' },
    }) as AuditEvent;
  try {
    // Calls that all start before any ends: each holds its request and will add its outcome.
    const open: string[] = [];
    for (;;) {
      const callId = randomUUID();
      try {
        await audit.publish(as('busy', callId));
      } catch (error) {
        assert.ok(error instanceof AuditUnavailableError, String(error));
        assert.match(error.message, /this agent's share of the audit spool is full/);
        break;
      }
      open.push(callId);
    }
    assert.equal(open.length, 5, 'five open calls: five requests and the five outcomes to come');
    for (const callId of open) await audit.publish(completed(callId));
    assert.equal(spool.pendingRecords, 10, 'all of them recorded, within the share');
  } finally {
    await audit.stop();
    await spool.close();
  }
});

test("local-first: an agent's hold on the spool is released as Kafka acknowledges its events", async () => {
  const { prefix, producer } = await sharedKafkaProducer('share', (record, send) => send(record));
  const spool = await tempSpool({ maxRecords: 20 });
  const audit = localFirst(producer, prefix, spool, { agentShare: 0.25 }); // 5 records
  // Far more than five calls, one after another: each is admitted once the earlier ones shipped.
  for (let n = 0; n < 30; n++) {
    const callId = randomUUID();
    const deadline = Date.now() + 5000;
    for (;;) {
      try {
        await audit.publish(requested(callId));
        break;
      } catch (error) {
        assert.ok(error instanceof AuditUnavailableError, String(error));
        assert.ok(Date.now() < deadline, `call ${n} never admitted: the hold was not released`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    await audit.publish(completed(callId));
  }
  await audit.flush(10_000);
  assert.equal(spool.pendingRecords, 0);
  await audit.stop();
  await producer.disconnect();
  await spool.close();
});

test("an agent's hold is released even when the spool's position write after an acknowledgement fails", async () => {
  const { prefix, producer } = await sharedKafkaProducer('share-fault', (record, send) => send(record));
  const spool = await tempSpool({ maxRecords: 20 });
  // 5 records: two calls and room for a third's request and outcome.
  const audit = localFirst(producer, prefix, spool, { agentShare: 0.25, retryIntervalMs: 50 });
  let injected = 0;
  spoolFaults.afterPositionRename = () => {
    spoolFaults.afterPositionRename = undefined; // once
    injected++;
    return new Error('injected: the position file could not be made durable');
  };
  try {
    for (let n = 0; n < 2; n++) {
      const callId = randomUUID();
      await audit.publish(requested(callId));
      await audit.publish(completed(callId));
    }
    await audit.flush(10_000);
    assert.equal(spool.pendingRecords, 0, 'shipped and acknowledged');
    assert.equal(injected, 1, 'the acknowledgement met the fault');
    // The four records left the spool: the agent holds none, so two more calls fit again.
    for (let n = 0; n < 2; n++) {
      const callId = randomUUID();
      await audit.publish(requested(callId));
      await audit.publish(completed(callId));
    }
  } finally {
    spoolFaults.afterPositionRename = undefined;
    await audit.stop();
    await producer.disconnect();
    await spool.close();
  }
});

test('a malformed event is refused before it reaches Kafka or the spool', async () => {
  const spool = await tempSpool({ maxRecords: 10 });
  const audit = await unreachableKafkaPublisher(spool);
  await assert.rejects(audit.publish({ ...completed(randomUUID()), durationMs: -1 } as AuditEvent));
  assert.equal(spool.pendingRecords, 0);
  await audit.stop();
  await spool.close();
});

test('a malformed outcome still ends its call: the room kept for it is released', async () => {
  // Three records: one call's request, and room for its outcome and one more request.
  const spool = await tempSpool({ maxRecords: 3 });
  const audit = await unreachableKafkaPublisher(spool);
  try {
    const first = randomUUID();
    await audit.publish(requested(first));
    await assert.rejects(audit.publish({ ...completed(first), durationMs: -1 } as AuditEvent));
    // Had the first call stayed open, a second would need room for two outcomes: four records.
    await audit.publish(requested(randomUUID()));
  } finally {
    await audit.stop();
    await spool.close();
  }
});

test('the compiled check refuses exactly what zod refuses, with its error, and publishes what zod outputs', async () => {
  // Events generated from the schema and mutated (a value replaced, a member removed, an unknown
  // member added), published through the spool: each is refused with the error AuditEvent.parse
  // throws, before anything is written, or spooled as zod's output (unknown keys stripped), and
  // the caller's event is never modified.
  const dir = await mkdtemp(join(tmpdir(), 'durable-audit-'));
  const { spool } = await Spool.open({ dir, maxBytes: 64 << 20, maxRecords: 10_000 });
  const audit = await unreachableKafkaPublisher(spool);
  try {
    const rand = random(7);
    let refused = 0;
    let published = 0;
    for (let i = 0; i < 600; i++) {
      const generated = generate(AuditEventSchema.options[i % 2], rand) as Record<string, unknown>;
      const event = i % 3 === 0 ? generated : mutate(generated, rand);
      const before = structuredClone(event);
      let expected: AuditEvent | undefined;
      let zodError: unknown;
      try {
        expected = AuditEventSchema.parse(event);
      } catch (error) {
        zodError = error;
      }
      const pending = spool.pendingRecords;
      const failure = await audit.publish(event as AuditEvent).then(
        () => undefined,
        (error: unknown) => error,
      );
      if (failure === undefined) {
        assert.ok(expected, `published what zod refuses: ${JSON.stringify(event)}`);
        const batch = await spool.peek(pending + 1);
        assert.deepStrictEqual(
          JSON.parse(batch.records[pending]!.toString('utf8')),
          JSON.parse(JSON.stringify(expected)),
        );
        published++;
      } else {
        assert.ok(
          zodError instanceof z.ZodError,
          `refused what zod accepts: ${JSON.stringify(event)}: ${failure}`,
        );
        assert.ok(failure instanceof z.ZodError, String(failure));
        assert.equal(failure.message, zodError.message);
        assert.equal(spool.pendingRecords, pending, 'a refused event wrote nothing');
        refused++;
      }
      assert.deepStrictEqual(event, before, 'publish modified its event');
      // Keep admission out of the way: every opened call is closed.
      if (expected?.type === 'tool_call.requested') await audit.publish(completed(expected.callId));
    }
    assert.ok(refused > 100 && published > 200, `refused ${refused}, published ${published}`);
  } finally {
    await audit.stop();
    await spool.close();
  }
});

test('with Kafka up: concurrent events share produce requests, each resolves once acknowledged, order per call kept', async () => {
  let requests = 0;
  const { kafka, prefix, producer } = await sharedKafkaProducer('group', (record, send) => {
    requests++;
    return send(record);
  });
  const spool = await tempSpool({ maxRecords: 100 });
  const audit = new DurableAuditPublisher({
    producer,
    topicPrefix: prefix,
    spool,
    sendTimeoutMs: 10_000,
    retryIntervalMs: 100,
    logger,
  });
  const calls = Array.from({ length: 200 }, () => randomUUID());
  await Promise.all(
    calls.map(async (callId) => {
      await audit.publish(requested(callId));
      await audit.publish(completed(callId));
    }),
  );
  assert.ok(requests < 200, `400 events took ${requests} produce requests`);
  assert.equal(spool.pendingRecords, 0, 'nothing was spooled');

  const consumer = kafka.consumer({ groupId: uniqueName('group-reader') });
  await consumer.connect();
  await consumer.subscribe({ topic: topicName(prefix, Topics.audit), fromBeginning: true });
  const seen = new Map<string, string[]>();
  let total = 0;
  await new Promise<void>((resolve) => {
    void consumer.run({
      eachMessage: async ({ message }) => {
        const event = JSON.parse(message.value!.toString()) as { callId: string; type: string };
        seen.set(event.callId, [...(seen.get(event.callId) ?? []), event.type]);
        if (++total === 400) resolve();
      },
    });
  });
  await consumer.disconnect();
  await audit.stop();
  await producer.disconnect();
  await spool.close();
  for (const callId of calls)
    assert.deepEqual(seen.get(callId), ['tool_call.requested', 'tool_call.completed']);
});

test('local-first: a call waits for the spool only, and the spool ships to Kafka behind it', async () => {
  let kafkaAcknowledged = 0;
  const { prefix, producer } = await sharedKafkaProducer('local', async (record, send) => {
    // Kafka is made slow on purpose: a call must not wait for it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const result = await send(record);
    kafkaAcknowledged += record.messages.length;
    return result;
  });
  const spool = await tempSpool({ maxRecords: 1000 });
  const audit = localFirst(producer, prefix, spool);
  const callId = randomUUID();
  const started = performance.now();
  await audit.publish(requested(callId));
  assert.ok(performance.now() - started < 250, 'accepted before Kafka could have acknowledged it');
  assert.equal(kafkaAcknowledged, 0);
  await audit.publish(completed(callId));
  await audit.flush(10_000);
  assert.equal(kafkaAcknowledged, 2, 'both events shipped');
  assert.equal(spool.pendingRecords, 0);
  await audit.stop();
  await producer.disconnect();
  await spool.close();
});

test('local-first: events gather into few produce requests, each shipped once and in order', async () => {
  const shipped: string[] = [];
  let requests = 0;
  const { prefix, producer } = await sharedKafkaProducer('gather', async (record, send) => {
    requests++;
    const result = await send(record);
    for (const message of record.messages) shipped.push(JSON.parse(String(message.value)).eventId);
    return result;
  });
  // As the broker opens it in local-first mode.
  const spool = await tempSpool({
    maxRecords: 1000,
    drainedCompactionDelayMs: 1000,
    positionSyncDelayMs: 200,
  });
  const audit = localFirst(producer, prefix, spool);
  // 100 calls one after the other, as an agent at concurrency 1 makes them.
  const started = performance.now();
  const published: string[] = [];
  for (let i = 0; i < 100; i++) {
    const callId = randomUUID();
    for (const event of [requested(callId), completed(callId)]) {
      await audit.publish(event);
      published.push(event.eventId);
    }
  }
  await audit.flush(10_000);
  assert.deepEqual(shipped, published, 'every event shipped once, in the order it was accepted');
  // The shipper sends at most once per linger (20 ms) plus a Kafka round trip: ≈ 4 requests here,
  // ≈ 30 without the linger. Bounded by the time the appends took, so a slow disk cannot fail it.
  const elapsedMs = performance.now() - started;
  assert.ok(
    requests <= elapsedMs / 20 + 2,
    `200 events in ${requests} produce requests over ${elapsedMs} ms`,
  );
  await audit.stop();
  await spool.close();
  await producer.disconnect();
});

/** A publisher whose Kafka never answers (nothing listens on its port): every event goes to `spool`. */
async function unreachableKafkaPublisher(spool: Spool, agentShare = 1): Promise<DurableAuditPublisher> {
  const kafka = createKafka({
    clientId: 'durable-audit-test',
    brokers: [`127.0.0.1:${await freePort()}`],
    logger,
  });
  return new DurableAuditPublisher({
    producer: createProducer(kafka), // never connects: every send fails at once
    topicPrefix: 'unused',
    spool,
    sendTimeoutMs: 200,
    retryIntervalMs: 60_000,
    agentShare,
    logger,
  });
}
