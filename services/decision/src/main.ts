import { Topics, topicName } from '@portcullis/contracts';
import { createPool, migrate } from '@portcullis/db';
import { createKafka, createProducer, ensureTopics, kafkaReadinessCheck } from '@portcullis/kafka';
import { PolicyEngine, readBundle } from '@portcullis/policy-engine';
import { runService } from '@portcullis/runtime';
import { createApi } from './api.ts';
import { AppConnections } from './app-connections.ts';
import { BundleService } from './bundles.ts';
import { DirectoryPublisher } from './directory-publisher.ts';
import { policyDirectory } from './directory-records.ts';
import { DirectoryAdmin, DirectoryStore } from './directory-store.ts';
import { readEnv } from './env.ts';
import { DIRECTORY_SCHEMA, MIGRATIONS_DIR } from './schema.ts';
import { startToolChangeConsumer } from './tool-change-consumer.ts';
import { listUpstreamTools } from './upstream-tools.ts';

// Composition root of the decision service, the policy administration point: owns the directory
// and the policy bundles in Postgres, publishes both on compacted Kafka topics, serves the admin
// API and an OPA-compatible Data API.
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
  async ({ logger, health, shutdown, app }) => {
    await migrate({ databaseUrl: env.DATABASE_URL, schema: DIRECTORY_SCHEMA, dir: MIGRATIONS_DIR, logger });
    const pool = createPool({
      connectionString: env.DATABASE_URL,
      applicationName: 'portcullis-decision',
      logger,
    });
    shutdown.add('close', 'postgres pool', () => pool.end());
    // Simulation reads the audit service's ledger view; by default it is in the same database.
    const ledger = env.LEDGER_DATABASE_URL
      ? createPool({
          connectionString: env.LEDGER_DATABASE_URL,
          applicationName: 'portcullis-decision-ledger',
          logger,
          max: 2,
        })
      : pool;
    if (ledger !== pool) shutdown.add('close', 'ledger pool', () => ledger.end());
    health.addCheck('postgres', async () => void (await pool.query('SELECT 1')));

    const kafka = createKafka({
      clientId: `decision-${env.INSTANCE_ID}`,
      brokers: env.KAFKA_BROKERS,
      logger,
    });
    await ensureTopics(kafka, env.KAFKA_TOPIC_PREFIX, [
      Topics.directory,
      Topics.policy,
      Topics.decisionLog,
      Topics.toolDefinitions,
    ]);
    const decisionLogTopic = topicName(env.KAFKA_TOPIC_PREFIX, Topics.decisionLog);
    const producer = createProducer(kafka);
    await producer.connect();
    shutdown.add('flush', 'kafka producer', () => producer.disconnect());
    const kafkaHealth = kafkaReadinessCheck(kafka);
    health.addCheck('kafka', kafkaHealth.check);
    shutdown.add('close', 'kafka admin', kafkaHealth.close);

    const bundles = new BundleService({
      pool,
      producer,
      topicPrefix: env.KAFKA_TOPIC_PREFIX,
      opaBin: env.OPA_BIN,
      logger,
    });
    // Publishes an activation an earlier attempt left unpublished (Kafka away, a crash).
    bundles.startPublishing(env.POLICY_PUBLISH_RETRY_MS);
    shutdown.add('stop-intake', 'policy activation publisher', async () => bundles.stopPublishing());
    // The Data API's engine: the active bundle with the directory as last published.
    const engine = new PolicyEngine();
    const loadActive = async () => {
      const active = await bundles.activeBundleId();
      if (active !== undefined) await engine.loadBundle(await readBundle(await bundles.bundleBytes(active)));
    };
    await loadActive();

    const publisher = new DirectoryPublisher(pool, producer, env.KAFKA_TOPIC_PREFIX, logger, (snapshot) =>
      engine.setDirectory(policyDirectory(snapshot.records)),
    );
    await publisher.start(kafka, env.DIRECTORY_PUBLISH_INTERVAL_MS);
    shutdown.add('stop-intake', 'directory publisher', () => publisher.stop());
    health.addCheck('directory-publisher', async () => publisher.check());

    const apps = new AppConnections(pool);
    const toolChanges = await startToolChangeConsumer({
      kafka,
      prefix: env.KAFKA_TOPIC_PREFIX,
      apps,
      logger,
    });
    shutdown.add('stop-intake', 'tool definition consumer', () => toolChanges.disconnect());

    app.use(
      createApi({
        tokens: env.API_TOKENS,
        store: new DirectoryStore(pool),
        admin: new DirectoryAdmin(pool),
        bundles,
        publisher,
        engine,
        onActivated: loadActive,
        instanceId: env.INSTANCE_ID,
        ledger,
        apps,
        listTools: (transport) => listUpstreamTools(transport, { timeoutMs: env.UPSTREAM_LIST_TIMEOUT_MS }),
        logDecision: async (entry) => {
          await producer.send({
            topic: decisionLogTopic,
            acks: -1,
            messages: [{ key: entry.decision_id, value: JSON.stringify(entry) }],
          });
        },
      }),
    );
  },
);
