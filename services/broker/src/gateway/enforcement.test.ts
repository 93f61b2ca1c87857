import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import type { AuditEvent } from '@portcullis/contracts';
import { createKafka, createProducer } from '@portcullis/kafka';
import { PolicyEngine, readBundle } from '@portcullis/policy-engine';
import { createLogger } from '@portcullis/runtime';
import { Spool } from '@portcullis/spool';
import { freePort } from '@portcullis/testing';
import { DurableAuditPublisher } from '../durable-audit.ts';
import { type Caller, Enforcement, endsOnRecord, type Operation } from './enforcement.ts';

// A call whose handling throws after its admission (a bug path) still ends on record: the real
// policy, the real audit sink and its spool (Kafka unreachable, so every event stays in the spool
// where the test reads it back).

const logger = createLogger({ service: 'test', level: 'silent', destination: new PassThrough() });
const caller: Caller = { agent: { id: 'agt_a', name: 'a', owner: 'a@example.com', state: 'active' } };
const read: Operation = { appId: 'demo', tool: 'lookup', actionClass: 'read', arguments: { q: 'x' } };

async function enforcementWithSpool(maxRecords: number) {
  const engine = new PolicyEngine();
  await engine.loadBundle(
    await readBundle(readFileSync(new URL('../../../../rego/build/bundle.tar.gz', import.meta.url))),
  );
  engine.setDirectory({
    agents: { agt_a: { state: 'active', owner: 'a@example.com' } },
    apps: { demo: {} },
    entitlements: { agt_a: { demo: [{ actions: ['read'] }] } },
  });
  const dir = await mkdtemp(join(tmpdir(), 'enforcement-'));
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords });
  const kafka = createKafka({
    clientId: 'enforcement-test',
    brokers: [`127.0.0.1:${await freePort()}`],
    logger,
  });
  const audit = new DurableAuditPublisher({
    producer: createProducer(kafka), // never connects: every event goes to the spool
    topicPrefix: 'unused',
    spool,
    sendTimeoutMs: 200,
    retryIntervalMs: 60_000,
    agentShare: 1,
    logger,
  });
  const enforcement = new Enforcement({ engine, audit, logger, instanceId: 'test' });
  const spooled = async () =>
    (await spool.peek(100)).records.map((record) => JSON.parse(record.toString('utf8')) as AuditEvent);
  const close = async () => {
    await audit.stop();
    await spool.close();
  };
  return { enforcement, spooled, close };
}

test('a call whose handling throws after admission is recorded as ended, once, and gives its room back', async () => {
  // Four records: this call's two, then room for one more call's request and reserved outcome,
  // but not for a third reservation, the one a leaked open call would keep.
  const { enforcement, spooled, close } = await enforcementWithSpool(4);
  try {
    const cleared = await enforcement.judge(caller, read);
    assert.ok('admitted' in cleared);
    await assert.rejects(
      endsOnRecord(cleared.admitted, 'failed', async () => {
        throw new TypeError('a bug after the upstream answered');
      }),
      TypeError,
    );
    // A later report of the same call (a handler that finished after all) changes nothing.
    (await cleared.admitted).finish('succeeded');
    await enforcement.settled();
    const events = await spooled();
    assert.deepEqual(
      events.map((event) => [event.type, 'outcome' in event ? event.outcome : undefined]),
      [
        ['tool_call.requested', undefined],
        ['tool_call.completed', 'failed'],
      ],
    );
    const outcome = events[1] as Extract<AuditEvent, { type: 'tool_call.completed' }>;
    assert.equal(outcome.error?.code, 'internal_error');

    // Its reserved room was given back: the spool takes one more call (a leaked open call would
    // have it refused as audit_unavailable).
    const next = await enforcement.admit(caller, read);
    assert.ok('finish' in next, 'the next call is admitted');
  } finally {
    await close();
  }
});
