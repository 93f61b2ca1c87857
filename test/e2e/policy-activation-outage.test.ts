import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, test } from 'node:test';
import { type PolicyActivatedV1, Topics, topicName } from '@portcullis/contracts';
import { waitFor } from '@portcullis/testing';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { PrivateKafka } from '../support/private-kafka.ts';
import { bundlePath, TestStack } from '../support/stack.ts';

// The activation history is the outbox of the policy topic: an activation made while Kafka is away
// is recorded at once, answered 202 `published: false`, and reaches the topic — and so every
// broker — when Kafka is back, without anyone repeating it.

let kafka: PrivateKafka;
let stack: TestStack;
let db: pg.Client;
let bundleId: number;

before(async () => {
  kafka = await PrivateKafka.start();
  stack = await TestStack.create({ kafkaBrokers: kafka.brokers });
  await stack.startDecision({ POLICY_PUBLISH_RETRY_MS: '500' });
  db = new pg.Client({ connectionString: stack.databaseUrl });
  await db.connect();
  const uploaded = await stack.api(
    'POST',
    '/v1/bundles?kind=built',
    await readFile(bundlePath),
    'application/gzip',
  );
  assert.equal(uploaded.status, 201);
  bundleId = ((await uploaded.json()) as { id: number }).id;
});

after(async () => {
  await db?.end();
  await stack?.stop();
  await kafka?.destroy();
});

interface Activation {
  activationId: number;
  published: boolean;
}

/** The newest activation as the history has it. */
async function newestActivation(): Promise<{ id: number; eventId: string; published: boolean }> {
  const { rows } = await db.query<{ id: string; event_id: string; published_at: Date | null }>(
    'SELECT id, event_id, published_at FROM directory.policy_activations ORDER BY id DESC LIMIT 1',
  );
  const row = rows[0]!;
  return { id: Number(row.id), eventId: row.event_id, published: row.published_at !== null };
}

/** Every activation event on the policy topic, read from its start. */
async function publishedEvents(): Promise<PolicyActivatedV1[]> {
  const client = new Kafka({ clientId: 'outage-test', brokers: [kafka.brokers], logLevel: logLevel.NOTHING });
  const admin = client.admin();
  const topic = topicName(stack.prefix, Topics.policy);
  await admin.connect();
  const [offsets] = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const end = Number(offsets!.high);
  const events: PolicyActivatedV1[] = [];
  if (end === 0) return events;
  const consumer = client.consumer({ groupId: `outage-test-${Date.now()}-${Math.random()}` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    consumer
      .run({
        eachMessage: async ({ message }) => {
          events.push(JSON.parse(String(message.value)) as PolicyActivatedV1);
          if (Number(message.offset) + 1 >= end) resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  return events;
}

test('an activation while Kafka is away is recorded at once and published when Kafka is back', async () => {
  // With Kafka up: published before the answer.
  const first = await stack.api('POST', `/v1/bundles/${bundleId}/activate`);
  assert.equal(first.status, 200);
  assert.equal(((await first.json()) as Activation).published, true);
  const published = await newestActivation();
  assert.equal(published.published, true);
  assert.ok((await publishedEvents()).some((event) => event.eventId === published.eventId));

  await kafka.kill();
  const started = performance.now();
  const during = await stack.api('POST', `/v1/bundles/${bundleId}/activate`);
  const elapsedMs = performance.now() - started;
  assert.equal(during.status, 202, await during.clone().text());
  const answer = (await during.json()) as Activation;
  assert.equal(answer.published, false);
  // Loose: the activation waits 5 s for Kafka's acknowledgement, not for its ~30 s of retries.
  assert.ok(elapsedMs < 15_000, `answered after ${Math.round(elapsedMs)} ms`);
  const pending = await newestActivation();
  assert.equal(pending.id, answer.activationId, 'the activation is recorded');
  assert.equal(pending.published, false);

  await kafka.resume();
  await waitFor('the activation marked published', async () => (await newestActivation()).published, {
    timeoutMs: 90_000,
  });
  const events = await publishedEvents();
  assert.equal(events.at(-1)?.eventId, pending.eventId, 'the topic ends on the recorded activation');
  assert.equal(events.at(-1)?.bundleId, bundleId);
});
