import { consumerGroupName, Topics, topicName } from '@portcullis/contracts';
import { createPool, migrate } from '@portcullis/db';
import {
  createKafka,
  createProducer,
  ensureTopics,
  kafkaReadinessCheck,
  sendDurably,
  startBatchConsumer,
} from '@portcullis/kafka';
import { runService } from '@portcullis/runtime';
import { Counter } from 'prom-client';
import { parseSigningKey, writeCheckpoint } from './checkpoints.ts';
import { readEnv } from './env.ts';
import { LedgerWriter } from './ledger-writer.ts';
import { startMaintenance } from './maintenance.ts';
import { mountQueryApi } from './query-api.ts';
import { AUDIT_SCHEMA, LEDGER_CONSUMER_GROUP, MIGRATIONS_DIR } from './schema.ts';
import { startSiemExport } from './siem/wiring.ts';

// Composition root of the audit service: audit topic → ledger rows in Postgres.
const env = readEnv();

await runService(
  {
    service: 'audit',
    logLevel: env.LOG_LEVEL,
    instanceId: env.INSTANCE_ID,
    httpHost: env.HTTP_HOST,
    httpPort: env.HTTP_PORT,
    drainDelayMs: env.SHUTDOWN_DRAIN_MS,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
  },
  async ({ logger, health, shutdown, metrics, app }) => {
    // Parse the key before anything else, so a bad key fails start-up instead of the first checkpoint.
    const signingKey = env.AUDIT_SIGNING_KEY ? parseSigningKey(env.AUDIT_SIGNING_KEY) : undefined;
    await migrate({ databaseUrl: env.DATABASE_URL, schema: AUDIT_SCHEMA, dir: MIGRATIONS_DIR, logger });
    // Migrations need the schema's owner; the service's work needs no more than the writer role
    // (INSERT and SELECT on the ledger, no UPDATE, DELETE, DETACH or DDL), so every connection
    // takes that role: a compromised service cannot rewrite the ledger with the owner's rights.
    const pool = createPool({
      connectionString: env.DATABASE_URL,
      applicationName: 'portcullis-audit',
      logger,
      role: 'portcullis_audit_writer',
    });
    shutdown.add('close', 'postgres pool', () => pool.end());
    health.addCheck('postgres', async () => void (await pool.query('SELECT 1')));

    const kafka = createKafka({ clientId: `audit-${env.INSTANCE_ID}`, brokers: env.KAFKA_BROKERS, logger });
    await ensureTopics(kafka, env.KAFKA_TOPIC_PREFIX, [Topics.audit, Topics.auditDeadLetter]);
    const kafkaHealth = kafkaReadinessCheck(kafka);
    health.addCheck('kafka', kafkaHealth.check);
    shutdown.add('close', 'kafka admin', kafkaHealth.close);

    const deadLetterProducer = createProducer(kafka);
    await deadLetterProducer.connect();
    const deadLetterTopic = topicName(env.KAFKA_TOPIC_PREFIX, Topics.auditDeadLetter);
    const written = new Counter({
      name: 'portcullis_audit_ledger_rows_total',
      help: 'Ledger rows written (replayed events are not counted twice)',
      registers: [metrics],
    });
    const deadLettered = new Counter({
      name: 'portcullis_audit_dead_letters_total',
      help: 'Audit messages sent to the dead-letter topic',
      registers: [metrics],
    });

    const maintenance = await startMaintenance({
      pool,
      logger,
      daysAhead: env.PARTITIONS_AHEAD_DAYS,
      retentionDays: env.RETENTION_DAYS,
      intervalMs: env.MAINTENANCE_INTERVAL_MS,
    });
    shutdown.add('close', 'partition maintenance', maintenance.stop);

    if (signingKey) {
      const checkpoint = async () => {
        const written = await writeCheckpoint(pool, signingKey);
        if (written)
          logger.info(
            { checkpointId: written.checkpointId, chains: written.body.heads.length },
            'checkpoint signed',
          );
      };
      const timer = setInterval(() => {
        checkpoint().catch((error) => logger.error({ err: error }, 'checkpoint failed; will retry'));
      }, env.CHECKPOINT_INTERVAL_MS);
      // After the consumer stopped, sign what it wrote last, so a clean stop leaves no unsigned tail.
      shutdown.add('flush', 'final checkpoint', async () => {
        clearInterval(timer);
        await checkpoint();
      });
    } else {
      logger.warn(
        'AUDIT_SIGNING_KEY is not set: no signed checkpoints, so truncation of a chain tail is not detectable',
      );
    }

    // The auditors' API reads as the auditor role, read-only, on a small pool of its own: its
    // queries can neither write nor take the connections ingestion needs.
    const queryPool = createPool({
      connectionString: env.DATABASE_URL,
      applicationName: 'portcullis-audit-query',
      logger,
      max: 4,
      role: 'portcullis_auditor',
      readOnly: true,
    });
    shutdown.add('close', 'postgres query pool', () => queryPool.end());
    mountQueryApi(app, queryPool, env.QUERY_API_TOKEN_SHA256);

    const siem = await startSiemExport(env, pool, logger);
    shutdown.add('flush', 'SIEM exporters', siem.stop);

    const writer = new LedgerWriter(
      pool,
      async (letters, context) => {
        await sendDurably(
          deadLetterProducer,
          deadLetterTopic,
          letters.map(({ message, reason }) => ({
            key: message.key?.toString('utf8') ?? '',
            value: message.value?.toString('utf8') ?? '',
            headers: {
              'x-dead-letter-reason': reason.slice(0, 2000),
              'x-source-topic': context.topic,
              'x-source-partition': String(context.partition),
              'x-source-offset': message.offset,
            },
          })),
        );
        deadLettered.inc(letters.length);
        logger.warn({ count: letters.length, ...context }, 'audit messages dead-lettered');
      },
      { retentionDays: env.RETENTION_DAYS },
    );

    const consumer = await startBatchConsumer({
      kafka,
      groupId: consumerGroupName(env.KAFKA_TOPIC_PREFIX, LEDGER_CONSUMER_GROUP),
      topics: [topicName(env.KAFKA_TOPIC_PREFIX, Topics.audit)],
      logger,
      partitionsConsumedConcurrently: env.PARTITIONS_CONSUMED_CONCURRENTLY,
      handleBatch: async (messages, context) => {
        written.inc(await writer.writeBatch(messages, context));
      },
    });
    // Stop intake first: the consumer finishes its current batch and commits before disconnecting.
    shutdown.add('stop-intake', 'kafka consumer', () => consumer.disconnect());
    shutdown.add('flush', 'dead-letter producer', () => deadLetterProducer.disconnect());
  },
);
