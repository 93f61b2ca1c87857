import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { AuditEvent } from '@portcullis/contracts';
import { createKafka, createProducer } from '@portcullis/kafka';
import { PolicyEngine, readBundle } from '@portcullis/policy-engine';
import { createLogger } from '@portcullis/runtime';
import { Spool } from '@portcullis/spool';
import { freePort } from '@portcullis/testing';
import { DurableAuditPublisher } from '../durable-audit.ts';
import { type Caller, Enforcement } from './enforcement.ts';

export const silentLogger = createLogger({
  service: 'test',
  level: 'silent',
  destination: new PassThrough(),
});

/** The agent the enforcement below knows: active, with a read grant on the app `demo`. */
export const readerOfDemo: Caller = {
  agent: { id: 'agt_a', name: 'a', owner: 'a@example.com', state: 'active' },
};

/**
 * Enforcement as the broker builds it — the real policy bundle (rego/build), the real audit sink
 * and its spool — with Kafka unreachable, so that every event stays in the spool, where `spooled`
 * reads them back. `maxRecords` bounds the spool.
 */
export async function enforcementOverSpool(maxRecords = 100) {
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
    logger: silentLogger,
  });
  const audit = new DurableAuditPublisher({
    producer: createProducer(kafka), // never connects: every event goes to the spool
    topicPrefix: 'unused',
    spool,
    sendTimeoutMs: 200,
    retryIntervalMs: 60_000,
    agentShare: 1,
    logger: silentLogger,
  });
  const enforcement = new Enforcement({ engine, audit, logger: silentLogger, instanceId: 'test' });
  /** Every event in the spool, once the outcomes started so far are recorded. */
  const spooled = async () => {
    await enforcement.settled();
    return (await spool.peek(maxRecords)).records.map(
      (record) => JSON.parse(record.toString('utf8')) as AuditEvent,
    );
  };
  const close = async () => {
    await audit.stop();
    await spool.close();
  };
  return { enforcement, spooled, close };
}
