import { createPool, migrate } from '@portcullis/db';
import { createKafka, createProducer, kafkaReadinessCheck } from '@portcullis/kafka';
import { runService } from '@portcullis/runtime';
import { readEnv } from './env.ts';
import { DIRECTORY_SCHEMA, MIGRATIONS_DIR } from './schema.ts';

// Composition root of the decision service. For now it owns and migrates the directory schema;
// the policy administration API, bundle lifecycle and directory topics come with the policy issue.
const env = readEnv();

await runService(
  {
    service: 'decision',
    logLevel: env.LOG_LEVEL,
    instanceId: env.INSTANCE_ID,
    httpHost: env.HTTP_HOST,
    httpPort: env.HTTP_PORT,
    drainDelayMs: env.SHUTDOWN_DRAIN_MS,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
  },
  async ({ logger, health, shutdown }) => {
    await migrate({ databaseUrl: env.DATABASE_URL, schema: DIRECTORY_SCHEMA, dir: MIGRATIONS_DIR, logger });
    const pool = createPool({
      connectionString: env.DATABASE_URL,
      applicationName: 'portcullis-decision',
      logger,
    });
    shutdown.add('close', 'postgres pool', () => pool.end());
    health.addCheck('postgres', async () => void (await pool.query('SELECT 1')));

    const kafka = createKafka({
      clientId: `decision-${env.INSTANCE_ID}`,
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
