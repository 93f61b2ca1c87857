import { fileURLToPath } from 'node:url';
import { createPool, migrate } from '@portcullis/db';
import { createKafka, createProducer, kafkaReadinessCheck } from '@portcullis/kafka';
import { runService } from '@portcullis/runtime';
import { readEnv } from './env.ts';
import { CREDENTIAL_REDACT_PATHS } from './redaction.ts';

// Composition root of the credential service. It owns the vault schema; issuing leases to brokers
// comes with the credential issue.
const env = readEnv();
const MIGRATIONS_DIR = fileURLToPath(new URL('../migrations', import.meta.url));

await runService(
  {
    service: 'credential',
    logLevel: env.LOG_LEVEL,
    instanceId: env.INSTANCE_ID,
    httpHost: env.HTTP_HOST,
    httpPort: env.HTTP_PORT,
    drainDelayMs: env.SHUTDOWN_DRAIN_MS,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
    redact: CREDENTIAL_REDACT_PATHS,
  },
  async ({ logger, health, shutdown }) => {
    await migrate({ databaseUrl: env.DATABASE_URL, schema: 'credential', dir: MIGRATIONS_DIR, logger });
    const pool = createPool({
      connectionString: env.DATABASE_URL,
      applicationName: 'portcullis-credential',
      logger,
    });
    shutdown.add('close', 'postgres pool', () => pool.end());
    health.addCheck('postgres', async () => void (await pool.query('SELECT 1')));

    const kafka = createKafka({
      clientId: `credential-${env.INSTANCE_ID}`,
      brokers: env.KAFKA_BROKERS,
      logger,
    });
    const producer = createProducer(kafka);
    await producer.connect();
    shutdown.add('flush', 'kafka producer', () => producer.disconnect());
    const kafkaHealth = kafkaReadinessCheck(kafka);
    health.addCheck('kafka', kafkaHealth.check);
    shutdown.add('close', 'kafka admin', kafkaHealth.close);
  },
);
