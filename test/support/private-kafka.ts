import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, waitFor } from '@portcullis/testing';
import { Kafka, logLevel } from 'kafkajs';

const run = promisify(execFile);
/** The jars infra/local/up.sh installs (kafka_2.13 3.9.1 and its logging backend). */
const libs = join(
  process.env.PORTCULLIS_TOOLS_DIR ?? join(homedir(), '.cache/portcullis/tools'),
  'kafka-3.9.1/libs',
);

/**
 * A single-node KRaft Kafka of a suite's own, on its own ports and data dir, for tests that stop
 * and restart Kafka. The shared stack's Kafka is never touched. Same jars and settings as
 * infra/local (one broker, internal topics with one replica, no auto-creation).
 */
export class PrivateKafka {
  readonly brokers: string;
  readonly #dir: string;
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();

  private constructor(dir: string, port: number) {
    this.#dir = dir;
    this.brokers = `127.0.0.1:${port}`;
  }

  static async start(): Promise<PrivateKafka> {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-kafka-'));
    const [port, controller] = [await freePort(), await freePort()];
    const properties = [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${controller}`,
      `listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controller}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${port}`,
      'controller.listener.names=CONTROLLER',
      'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      'inter.broker.listener.name=PLAINTEXT',
      `log.dirs=${join(dir, 'data')}`,
      'offsets.topic.replication.factor=1',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'min.insync.replicas=1',
      'default.replication.factor=1',
      'offsets.topic.num.partitions=1',
      'transaction.state.log.num.partitions=1',
      'group.initial.rebalance.delay.ms=0',
      'auto.create.topics.enable=false',
      'num.partitions=3',
    ];
    await writeFile(join(dir, 'server.properties'), `${properties.join('\n')}\n`);
    await writeFile(
      join(dir, 'log4j.properties'),
      [
        'log4j.rootLogger=WARN, file',
        'log4j.appender.file=org.apache.log4j.FileAppender',
        `log4j.appender.file.File=${join(dir, 'kafka.log')}`,
        'log4j.appender.file.layout=org.apache.log4j.PatternLayout',
        'log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n',
        '',
      ].join('\n'),
    );
    // A base64url id may start with '-', which StorageTool would read as an option.
    let clusterId = randomBytes(16).toString('base64url');
    while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url');
    await run('java', [
      ...PrivateKafka.#jvm(dir),
      'kafka.tools.StorageTool',
      'format',
      '-t',
      clusterId,
      '-c',
      join(dir, 'server.properties'),
    ]);
    const kafka = new PrivateKafka(dir, port);
    await kafka.resume();
    return kafka;
  }

  static #jvm(dir: string): string[] {
    return [
      '-Xms128m',
      '-Xmx384m',
      `-Dlog4j.configuration=file:${join(dir, 'log4j.properties')}`,
      '-cp',
      `${libs}/*`,
    ];
  }

  /** Starts the broker process on the existing data and waits until it answers metadata requests. */
  async resume(): Promise<void> {
    const child = spawn(
      'java',
      [...PrivateKafka.#jvm(this.#dir), 'kafka.Kafka', join(this.#dir, 'server.properties')],
      {
        stdio: 'ignore',
      },
    );
    this.#child = child;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const probe = new Kafka({
      clientId: 'private-kafka-probe',
      brokers: [this.brokers],
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
      connectionTimeout: 1000,
    }).admin();
    try {
      await waitFor(
        `the private Kafka at ${this.brokers}`,
        async () => {
          try {
            await probe.connect();
            return (await probe.describeCluster()).brokers.length > 0;
          } catch {
            return false;
          }
        },
        { timeoutMs: 60000 },
      );
    } finally {
      await probe.disconnect();
    }
  }

  /** Kills the broker at once, as a crash would (its data dir stays for `resume`). */
  async kill(): Promise<void> {
    this.#child?.kill('SIGKILL');
    await this.#exited;
    this.#child = undefined;
  }

  /** Kills the broker and deletes its data. */
  async destroy(): Promise<void> {
    await this.kill();
    await rm(this.#dir, { recursive: true, force: true });
  }
}
