import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { Redis } from 'ioredis';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';

/** Where the shared test infrastructure is; the test command exports these from stack.env. */
export interface StackEnv {
  databaseUrl: string;
  redisUrl: string;
  kafkaBrokers: string;
}

/** Reads the stack started by infra/local/up.sh, with a clear error when it is not there. */
export function stackEnv(): StackEnv {
  const databaseUrl = process.env.PORTCULLIS_DATABASE_URL;
  const redisUrl = process.env.PORTCULLIS_REDIS_URL;
  const kafkaBrokers = process.env.PORTCULLIS_KAFKA_BROKERS;
  if (!databaseUrl || !redisUrl || !kafkaBrokers) {
    throw new Error(
      'PORTCULLIS_DATABASE_URL, PORTCULLIS_REDIS_URL and PORTCULLIS_KAFKA_BROKERS are not set: ' +
        'run the tests with scripts/test.sh, or `bash infra/local/up.sh && source .portcullis/stack.env`.',
    );
  }
  return { databaseUrl, redisUrl, kafkaBrokers };
}

/** A short random name part, so tests sharing one Postgres, Kafka and Redis never collide. */
export function uniqueName(prefix = 't'): string {
  return `${prefix}${randomBytes(5).toString('hex')}`;
}

/**
 * Deletes the Kafka topics named `<prefix>.…` (what a suite created under its topic prefix), so a
 * long-lived local stack does not pile up partitions run after run: thousands of them slow Kafka's
 * start by minutes and add to its background CPU (docs/gateway.md, "The tail, thread by thread").
 * Cleanup only: when Kafka cannot be reached (a suite that stopped it), it says so on stderr and
 * returns, so a suite's teardown never fails over its leftovers. Returns the topics it deleted.
 */
export async function deleteTopicsWithPrefix(
  prefix: string,
  brokers = stackEnv().kafkaBrokers,
): Promise<string[]> {
  const admin = new Kafka({
    clientId: 'portcullis-test-cleanup',
    brokers: brokers.split(','),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 2000,
    retry: { retries: 1 },
  }).admin();
  try {
    await admin.connect();
    const topics = (await admin.listTopics()).filter((topic) => topic.startsWith(`${prefix}.`));
    if (topics.length > 0) await admin.deleteTopics({ topics, timeout: 10_000 });
    return topics;
  } catch (error) {
    process.stderr.write(`test cleanup: the topics under ${prefix}. stay in Kafka (${String(error)})\n`);
    return [];
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

/** A database of its own for one test suite, dropped (with its connections) by `drop`. */
export async function createTestDatabase(): Promise<{
  url: string;
  name: string;
  drop: () => Promise<void>;
}> {
  const admin = stackEnv().databaseUrl;
  const name = uniqueName('portcullis_test_');
  await withClient(admin, (client) => client.query(`CREATE DATABASE ${name}`));
  const url = new URL(admin);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () =>
      withClient(admin, (client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(
        () => {},
      ),
  };
}

async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A connection to the test run's Redis and a key prefix of the caller's own, so tests sharing the
 * one Redis never see each other's keys. `drop` deletes every key under the prefix and disconnects.
 */
export async function isolatedRedis(
  name: string,
): Promise<{ redis: Redis; prefix: string; drop: () => Promise<void> }> {
  const redis = new Redis(stackEnv().redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  await redis.connect();
  const prefix = `${uniqueName(name)}:`;
  return {
    redis,
    prefix,
    drop: async () => {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    },
  };
}
