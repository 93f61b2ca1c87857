import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort, type ServiceProcess, startProcess, uniqueName, waitFor } from '@portcullis/testing';
import { Kafka, logLevel, type Producer } from 'kafkajs';
import pg from 'pg';
import { auditProducer, ledgerCaughtUp, ledgerCli, ledgerKeys, produceEvents } from '../support/ledger.ts';
import { PrivateStack } from '../support/private-stack.ts';
import { repoRoot } from '../support/stack.ts';

// Infrastructure faults under load, on a Postgres and Kafka of this suite's own (never the shared
// stack): Kafka stopped and restarted, then Postgres stopped and restarted, while thousands of
// events flow through the audit service. Afterwards the ledger holds every event exactly once and
// `portcullis ledger verify` passes.

let infra: PrivateStack;
let kafka: Kafka;
let ledger: pg.Pool;
let audit: ServiceProcess;
let keys: { signingKey: string; publicKeyFile: string };
const prefix = uniqueName('faults');
const produced = new Set<string>();

before(async () => {
  infra = await PrivateStack.start();
  keys = await ledgerKeys();
  const port = await freePort();
  audit = await startProcess({
    name: 'audit',
    script: join(repoRoot, 'services/audit/src/main.ts'),
    env: {
      DATABASE_URL: infra.databaseUrl,
      KAFKA_BROKERS: infra.kafkaBrokers,
      KAFKA_TOPIC_PREFIX: prefix,
      HTTP_PORT: String(port),
      LOG_LEVEL: 'warn',
      SHUTDOWN_DRAIN_MS: '0',
      AUDIT_SIGNING_KEY: keys.signingKey,
      CHECKPOINT_INTERVAL_MS: '500',
    },
    readyUrl: `http://127.0.0.1:${port}/readyz`,
    readyTimeoutMs: 60000,
  });
  ledger = new pg.Pool({ connectionString: infra.databaseUrl, max: 2 });
  // The pool outlives a Postgres restart; errors on its idle clients are expected then.
  ledger.on('error', () => {});
  kafka = new Kafka({ clientId: 'ledger-faults', brokers: [infra.kafkaBrokers], logLevel: logLevel.NOTHING });
});

after(async () => {
  await audit?.stop('SIGTERM');
  await ledger?.end().catch(() => {});
  await infra?.destroy();
});

/** Produces `count` events, retrying a chunk until Kafka takes it (a retried chunk may duplicate). */
async function produceThrough(count: number, start: number, duringFault: (sent: number) => Promise<void>) {
  let producer: Producer = await auditProducer(kafka);
  const chunk = 250;
  for (let sent = 0; sent < count; sent += chunk) {
    await waitFor(
      'Kafka to accept a chunk',
      async () => {
        try {
          const ids = await produceEvents(producer, prefix, Math.min(chunk, count - sent), {
            start: start + sent,
          });
          for (const id of ids) produced.add(id);
          return true;
        } catch {
          await producer.disconnect().catch(() => {});
          producer = await auditProducer(kafka).catch(() => producer);
          return false;
        }
      },
      { timeoutMs: 120000, intervalMs: 500 },
    );
    await duringFault(sent + chunk);
  }
  await producer.disconnect();
}

async function assertLedgerComplete(): Promise<void> {
  await waitFor('the ledger to catch up', () => ledgerCaughtUp(kafka, prefix).catch(() => false), {
    timeoutMs: 120000,
    intervalMs: 500,
  }).catch((error) => {
    throw new Error(`${(error as Error).message}\n--- audit output ---\n${audit.output().slice(-6000)}`);
  });
  const { rows } = await ledger.query<{ rows: number; distinct: number; missing: number }>(
    `SELECT count(*)::int AS rows, count(DISTINCT event_id)::int AS distinct,
       (SELECT count(*)::int FROM unnest($1::uuid[]) AS p(id)
         WHERE NOT EXISTS (SELECT 1 FROM audit.ledger_events e WHERE e.event_id = p.id)) AS missing
     FROM audit.ledger_events`,
    [[...produced]],
  );
  assert.deepEqual(rows[0], { rows: produced.size, distinct: produced.size, missing: 0 });
  await waitFor(
    'a checkpoint covering every row',
    async () => {
      const result = await ledgerCli(['verify', '--public-key', keys.publicKeyFile, '--json'], {
        DATABASE_URL: infra.databaseUrl,
      });
      const report = JSON.parse(result.stdout || '{}');
      return result.code === 0 && report.unsignedRows === 0 && report.rows === produced.size;
    },
    { timeoutMs: 30000, intervalMs: 500 },
  );
}

test('Kafka stopped and restarted mid-load: every event once, chains intact', async () => {
  let restarted = false;
  await produceThrough(3000, 0, async (sent) => {
    if (!restarted && sent >= 1000) {
      restarted = true;
      await infra.stopKafka();
      await new Promise((resolve) => setTimeout(resolve, 2000));
      await infra.up();
    }
  });
  await assertLedgerComplete();
  assert.equal(audit.child.exitCode, null, `the audit service exited:\n${audit.output().slice(-3000)}`);
});

test('Postgres stopped and restarted mid-load: every event once, chains intact', async () => {
  let restarted = false;
  await produceThrough(3000, 3000, async (sent) => {
    if (!restarted && sent >= 1000) {
      restarted = true;
      await infra.stopPostgres();
      await new Promise((resolve) => setTimeout(resolve, 3000));
      await infra.up();
    }
  });
  await assertLedgerComplete();
  assert.equal(audit.child.exitCode, null, `the audit service exited:\n${audit.output().slice(-3000)}`);
});
