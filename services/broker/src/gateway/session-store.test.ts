import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { isolatedRedis, waitFor } from '@portcullis/testing';
import type { Redis } from 'ioredis';
import { SessionStore } from './session-store.ts';

// Against the real Redis of the test run, under a key prefix of this test's own.

let redis: Redis;
let prefix: string;
let drop: () => Promise<void>;

before(async () => {
  ({ redis, prefix, drop } = await isolatedRedis('sessions'));
});

after(() => drop());

const newSession = (agentId: string) => ({
  agentId,
  scope: { kind: 'aggregate' as const },
  protocolVersion: '2025-06-18',
  clientCapabilities: {},
  clientInfo: { name: 'test', version: '1' },
});
const agentSet = (agentId: string) => `${prefix}portcullis:mcp:agent-sessions:${agentId}`;

test('an agent beyond its bound loses its least recently used session, and only that one', async () => {
  const store = new SessionStore(redis, prefix, 3600, 3);
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const { record, ended } = await store.create(newSession('hoarder'));
    assert.deepEqual(ended, []);
    ids.push(record.id);
    // Uses are ordered by Redis-clock milliseconds: two in the same millisecond would tie.
    await new Promise((resolve) => setTimeout(resolve, 3));
  }
  const bystander = await store.create(newSession('bystander'));
  // The first session is used again (a read refreshes it), so the second is now the least recent.
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.ok(await store.load(ids[0]!));
  await waitFor('the read recorded as use', async () => {
    const [first, second] = await Promise.all(
      [ids[0]!, ids[1]!].map((id) => redis.zscore(agentSet('hoarder'), id)),
    );
    return Number(first) > Number(second);
  });

  // The second session opened an upstream session: the caller needs its id to close it.
  const upstream = { sessionId: 'upstream-1', initializeResult: { protocolVersion: '2025-06-18' } };
  await store.claimUpstream(ids[1]!, 'demo', upstream);
  const fourth = await store.create(newSession('hoarder'));
  assert.deepEqual(
    fourth.ended.map(({ id, upstreams }) => ({ id, upstreams })),
    [{ id: ids[1], upstreams: { demo: upstream } }],
  );
  assert.equal(await store.load(ids[1]!), undefined, 'the evicted session is gone');
  for (const id of [ids[0]!, ids[2]!, fourth.record.id]) assert.ok(await store.load(id), 'kept');
  assert.equal(await redis.zcard(agentSet('hoarder')), 3);
  assert.ok(await store.load(bystander.record.id), "another agent's session is untouched");
});

test('expired and deleted sessions do not count against the bound', async () => {
  const store = new SessionStore(redis, prefix, 1, 2);
  await store.create(newSession('expiring'));
  await store.create(newSession('expiring'));
  await new Promise((resolve) => setTimeout(resolve, 1100));
  const later = await store.create(newSession('expiring'));
  assert.deepEqual(later.ended, [], 'expired sessions make room without an eviction');

  const lasting = new SessionStore(redis, prefix, 3600, 2);
  const first = await lasting.create(newSession('deleting'));
  await lasting.create(newSession('deleting'));
  await lasting.drop(first.record.id, 'deleting');
  assert.deepEqual((await lasting.create(newSession('deleting'))).ended, []);
  assert.equal(await redis.zcard(agentSet('deleting')), 2);
});

test('concurrent initializes of one agent never leave it above its bound', async () => {
  const store = new SessionStore(redis, prefix, 3600, 5);
  const created = await Promise.all(Array.from({ length: 40 }, () => store.create(newSession('racer'))));
  assert.equal(await redis.zcard(agentSet('racer')), 5);
  const live = await Promise.all(created.map(({ record }) => store.load(record.id)));
  assert.equal(live.filter(Boolean).length, 5);
  assert.equal(created.flatMap(({ ended }) => ended).length, 35);
});

test('a write racing the end of a session does not bring it back', async () => {
  const store = new SessionStore(redis, prefix, 3600, 1);
  const first = await store.create(newSession('raced'));
  await store.create(newSession('raced')); // the bound is 1: the first one ends
  // What a replica still serving the first session from its local copy may write meanwhile.
  await store.setLogLevel(first.record.id, 'debug');
  assert.equal(await store.reserveSubscription(first.record.id, 'demo://r/1'), 'gone');
  await store.setUpstream(first.record.id, 'demo', { sessionId: 'u', initializeResult: {} });
  const claimed = { sessionId: 'u2', initializeResult: {} };
  assert.deepEqual(await store.claimUpstream(first.record.id, 'demo', claimed), claimed);
  assert.equal(await redis.exists(`${prefix}portcullis:mcp:session:${first.record.id}`), 0);
  assert.equal(await store.load(first.record.id), undefined);
});

test('subscriptions arriving at once never take a session past its bound', async () => {
  const store = new SessionStore(redis, prefix, 3600);
  const { record } = await store.create(newSession('subscriber'));
  const max = SessionStore.MAX_SUBSCRIPTIONS;
  // Every subscribe in flight at once, as from many replicas: each sees the others' places.
  const outcomes = await Promise.all(
    Array.from({ length: max + 30 }, (_, i) => store.reserveSubscription(record.id, `demo://r/${i}`)),
  );
  assert.equal(outcomes.filter((outcome) => outcome === 'added').length, max);
  assert.equal(outcomes.filter((outcome) => outcome === 'full').length, 30);
  assert.equal((await store.load(record.id))?.subscriptions.length, max);
  // One already held is no new place; one given back makes room for another.
  assert.equal(await store.reserveSubscription(record.id, 'demo://r/0'), 'held');
  assert.equal(await store.reserveSubscription(record.id, 'demo://r/new'), 'full');
  await store.unsubscribed(record.id, 'demo://r/0');
  assert.equal(await store.reserveSubscription(record.id, 'demo://r/new'), 'added');
});

test('keeping a session alive says whether it still exists', async () => {
  const store = new SessionStore(redis, prefix, 3600, 1);
  const first = await store.create(newSession('listener'));
  assert.equal(await store.keepAlive(first.record.id, 'listener'), true);
  await store.create(newSession('listener')); // the bound is 1: the first one ends
  assert.equal(await store.keepAlive(first.record.id, 'listener'), false);
});
