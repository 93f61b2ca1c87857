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
    const { record, evicted } = await store.create(newSession('hoarder'));
    assert.deepEqual(evicted, []);
    ids.push(record.id);
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

  const fourth = await store.create(newSession('hoarder'));
  assert.deepEqual(fourth.evicted, [ids[1]]);
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
  assert.deepEqual(later.evicted, [], 'expired sessions make room without an eviction');

  const lasting = new SessionStore(redis, prefix, 3600, 2);
  const first = await lasting.create(newSession('deleting'));
  await lasting.create(newSession('deleting'));
  await lasting.drop(first.record.id, 'deleting');
  assert.deepEqual((await lasting.create(newSession('deleting'))).evicted, []);
  assert.equal(await redis.zcard(agentSet('deleting')), 2);
});

test('concurrent initializes of one agent never leave it above its bound', async () => {
  const store = new SessionStore(redis, prefix, 3600, 5);
  const created = await Promise.all(Array.from({ length: 40 }, () => store.create(newSession('racer'))));
  assert.equal(await redis.zcard(agentSet('racer')), 5);
  const live = await Promise.all(created.map(({ record }) => store.load(record.id)));
  assert.equal(live.filter(Boolean).length, 5);
  assert.equal(created.flatMap(({ evicted }) => evicted).length, 35);
});
