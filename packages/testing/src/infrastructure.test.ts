import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { deleteTopicsWithPrefix, freePort, stackEnv, uniqueName } from './infrastructure.ts';

const kafka = () =>
  new Kafka({
    clientId: 'infrastructure-test',
    brokers: stackEnv().kafkaBrokers.split(','),
    logLevel: logLevel.NOTHING,
  });

test('deleteTopicsWithPrefix deletes the topics under its prefix and nothing else', async (t) => {
  const mine = uniqueName('cleanup');
  // A name that merely starts with the same characters is another suite's prefix, not ours.
  const neighbour = `${mine}x`;
  const admin = kafka().admin();
  await admin.connect();
  t.after(async () => {
    await admin.deleteTopics({ topics: [`${neighbour}.audit`] }).catch(() => {});
    await admin.disconnect();
  });
  await admin.createTopics({
    topics: [`${mine}.audit`, `${mine}.directory`, `${neighbour}.audit`].map((topic) => ({ topic })),
  });

  const deleted = await deleteTopicsWithPrefix(mine);

  assert.deepEqual(deleted.sort(), [`${mine}.audit`, `${mine}.directory`]);
  const left = (await admin.listTopics()).filter((topic) => topic.startsWith(mine));
  assert.deepEqual(left, [`${neighbour}.audit`]);
});

test('deleteTopicsWithPrefix with Kafka out of reach reports it and returns, so teardown goes on', async () => {
  const nowhere = `127.0.0.1:${await freePort()}`;
  const started = performance.now();
  assert.deepEqual(await deleteTopicsWithPrefix(uniqueName('cleanup'), nowhere), []);
  assert.ok(performance.now() - started < 15_000, 'gives up within seconds');
});
