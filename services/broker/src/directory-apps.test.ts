import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { after, before, test } from 'node:test';
import { type DirectoryRecordV1, Topics, topicName } from '@portcullis/contracts';
import { createKafka, createProducer, ensureTopics } from '@portcullis/kafka';
import { PolicyEngine } from '@portcullis/policy-engine';
import { createLogger } from '@portcullis/runtime';
import { deleteTopicsWithPrefix, stackEnv, uniqueName, waitFor } from '@portcullis/testing';
import type { Producer } from 'kafkajs';
import { DirectoryFeed } from './directory.ts';

// The broker's DirectoryFeed keeps `app_connection` records (transport, auth, tool pins) beside the
// policy engine, never in data.directory; tombstones remove them; listeners hear which apps changed.

const logger = createLogger({ service: 'test', level: 'silent', destination: new PassThrough() });
const prefix = uniqueName('feed');
const kafka = createKafka({ clientId: 'feed-test', brokers: stackEnv().kafkaBrokers.split(','), logger });
const topic = topicName(prefix, Topics.directory);
let producer: Producer;
let feed: DirectoryFeed;
let engine: PolicyEngine;
const heard: string[][] = [];

const base = { type: 'directory.record', version: 1 } as const;
const connection = (id: string, revision: number, tools: Record<string, string>): DirectoryRecordV1 => ({
  ...base,
  revision,
  kind: 'app_connection',
  id,
  data: { transport: { type: 'http', url: `http://127.0.0.1:9/${id}` }, auth: { scheme: 'none' }, tools },
});
const send = (messages: { key: string; value: unknown }[]) =>
  producer.send({
    topic,
    acks: -1,
    messages: messages.map((m) => ({ key: m.key, value: m.value === null ? null : JSON.stringify(m.value) })),
  });
const marker = (revision: number) => ({
  key: 'revision:current',
  value: { ...base, revision, kind: 'revision', id: 'current', data: { revision } },
});

before(async () => {
  await ensureTopics(kafka, prefix, [Topics.directory, Topics.policy]);
  producer = createProducer(kafka);
  await producer.connect();
  await send([
    { key: 'app:alpha', value: { ...base, revision: 2, kind: 'app', id: 'alpha', data: {} } },
    { key: 'app_connection:alpha', value: connection('alpha', 2, { echo: 'a'.repeat(64) }) },
    marker(2),
  ]);
  engine = new PolicyEngine();
  feed = new DirectoryFeed(engine, prefix, logger);
  feed.onAppsChanged((ids) => heard.push(ids));
  await feed.start(kafka);
});

after(async () => {
  await feed?.stop();
  await producer?.disconnect();
  await deleteTopicsWithPrefix(prefix);
});

test('bootstrap: the connection is held by the feed and absent from the policy data', () => {
  assert.deepEqual(feed.appConnection('alpha'), {
    appId: 'alpha',
    transport: { type: 'http', url: 'http://127.0.0.1:9/alpha' },
    auth: { scheme: 'none' },
    tools: { echo: 'a'.repeat(64) },
  });
  assert.equal(feed.appConnections().length, 1);
  assert.deepEqual(heard, [['alpha']]);
  const directory = engine.directory as Record<string, unknown>;
  assert.deepEqual(directory.apps, { alpha: {} });
  assert.equal('app_connection' in directory, false);
  assert.equal(JSON.stringify(directory).includes('127.0.0.1'), false);
});

test('updates, additions and tombstones reach the accessors and the listeners', async () => {
  heard.length = 0;
  await send([
    { key: 'app_connection:alpha', value: connection('alpha', 3, { echo: 'b'.repeat(64) }) },
    { key: 'app_connection:beta', value: connection('beta', 3, {}) },
    marker(3),
  ]);
  await waitFor('revision 3', async () => feed.revision === 3);
  assert.equal(feed.appConnection('alpha')?.tools.echo, 'b'.repeat(64));
  assert.deepEqual(feed.appConnection('beta')?.tools, {});
  assert.deepEqual(heard.flat().sort(), ['alpha', 'beta']);

  heard.length = 0;
  await send([{ key: 'app_connection:alpha', value: null }, marker(4)]);
  await waitFor('revision 4', async () => feed.revision === 4);
  assert.equal(feed.appConnection('alpha'), undefined);
  assert.deepEqual(
    feed.appConnections().map((c) => c.appId),
    ['beta'],
  );
  assert.deepEqual(heard, [['alpha']]);
});

test('an unreadable connection record removes the app (fail closed) instead of keeping old pins', async () => {
  heard.length = 0;
  await send([
    {
      key: 'app_connection:beta',
      value: {
        ...connection('beta', 5, {}),
        data: { transport: { type: 'http', url: 'x' }, auth: { scheme: 'vault' } },
      },
    },
    marker(5),
  ]);
  await waitFor('revision 5', async () => feed.revision === 5);
  assert.equal(feed.appConnection('beta'), undefined);
  assert.deepEqual(heard, [['beta']]);
});

/** An agent's directory record, keyed as the publisher keys it; `state` may be one no broker knows. */
const agentRecord = (id: string, revision: number, state: string) => ({
  key: `agent:${id}`,
  value: {
    ...base,
    revision,
    kind: 'agent',
    id,
    name: id,
    data: { state, owner: 'o@example.com' },
    keys: [],
    oauthClients: [],
  },
});

const entitlementsOf = (agentId: string) =>
  ((engine.directory?.entitlements ?? {}) as Record<string, unknown>)[agentId];

test('an unreadable agent or entitlements record removes them (fail closed) instead of keeping the last state', async () => {
  await send([
    agentRecord('agt_x', 6, 'active'),
    {
      key: 'entitlements:agt_x',
      value: {
        ...base,
        revision: 6,
        kind: 'entitlements',
        id: 'agt_x',
        data: { alpha: [{ actions: ['read'] }] },
      },
    },
    marker(6),
  ]);
  await waitFor('revision 6', async () => feed.revision === 6);
  assert.equal(feed.agent('agt_x')?.state, 'active');
  assert.ok(entitlementsOf('agt_x'));
  // Records this version cannot read: a grant expiring before 1970, an agent in a state it does not know.
  await send([
    agentRecord('agt_x', 7, 'dormant'),
    {
      key: 'entitlements:agt_x',
      value: {
        ...base,
        revision: 7,
        kind: 'entitlements',
        id: 'agt_x',
        data: { alpha: [{ actions: ['read'], expires_at: -1 }] },
      },
    },
    marker(7),
  ]);
  await waitFor('revision 7', async () => feed.revision === 7);
  assert.equal(feed.agent('agt_x'), undefined);
  assert.equal(entitlementsOf('agt_x'), undefined);
});

test('a publication takes effect as a whole, when its revision marker arrives', async () => {
  await send([agentRecord('agt_y', 8, 'active')]);
  // The rest of the publication (its last batch, with the marker) has not arrived yet.
  await new Promise((resolve) => setTimeout(resolve, 750));
  assert.equal(feed.agent('agt_y'), undefined, 'applied before its publication was complete');
  await send([marker(8)]);
  await waitFor('revision 8', async () => feed.revision === 8);
  assert.equal(feed.agent('agt_y')?.state, 'active');
});

test('a replica that has not heard from Kafka for longer than its bound turns unready', async () => {
  const quiet = new DirectoryFeed(new PolicyEngine(), prefix, logger, 500);
  await quiet.start(kafka);
  try {
    quiet.check(); // fetching every 250 ms: ready
    await new Promise((resolve) => setTimeout(resolve, 600));
    quiet.check();
  } finally {
    await quiet.stop(); // no more fetches from here on, as with Kafka away
  }
  await new Promise((resolve) => setTimeout(resolve, 700));
  assert.throws(() => quiet.check(), /not refreshed from kafka for \d+ s \(bound 0.5 s\)/);
});
