import { Kafka, type KafkaConfig, logLevel, Partitioners, type Producer } from 'kafkajs';
import type { Logger } from 'pino';

export interface KafkaClientOptions {
  clientId: string;
  brokers: string[];
  logger: Logger;
}

const levels: Record<number, KafkaLogLevel> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

export type KafkaLogLevel = 'error' | 'warn' | 'info' | 'debug';

/** Receives kafkajs's log entries: its level, namespace, message and remaining fields. */
export type KafkaLogSink = (
  level: KafkaLogLevel,
  namespace: string,
  message: string,
  fields: Record<string, unknown>,
) => void;

/** A kafkajs client whose logs go through the service's redacting pino logger. */
export function createKafka({ clientId, brokers, logger }: KafkaClientOptions): Kafka {
  const kafkaLogger = logger.child({ component: 'kafkajs' });
  return createKafkaClient(clientId, brokers, (level, namespace, message, fields) =>
    kafkaLogger[level]({ namespace, ...fields }, message),
  );
}

/**
 * The same client as `createKafka`, for a thread without the service's logger (a worker): its log
 * entries go to `log`, which forwards them to a thread that has one.
 */
export function createKafkaClient(clientId: string, brokers: string[], log: KafkaLogSink): Kafka {
  const config: KafkaConfig = {
    clientId,
    brokers,
    // Fail a connection attempt quickly; the retry policy below decides how long we keep trying.
    connectionTimeout: 3000,
    requestTimeout: 30000,
    // Bounded exponential backoff: ~30 s of retries covers a broker restart without hanging forever.
    retry: { initialRetryTime: 200, maxRetryTime: 5000, retries: 8 },
    logLevel: logLevel.WARN,
    logCreator:
      () =>
      ({ level, namespace, log: { message, ...fields } }) =>
        log(levels[level] ?? 'info', namespace, message, fields),
  };
  return new Kafka(config);
}

/**
 * An idempotent producer with acks=all (set per send by `sendDurably`). One request in flight per
 * broker keeps per-partition order even across retries, which the ledger's chains rely on.
 */
export function createProducer(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    // The default partitioner (murmur2, as in the Java client) keeps a key on one partition.
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
}

/** Sends with acks=all and resolves only when every in-sync replica has the messages. */
export async function sendDurably(
  producer: Producer,
  topic: string,
  messages: { key: string; value: string | Buffer; headers?: Record<string, string> }[],
): Promise<void> {
  await producer.send({ topic, acks: -1, messages });
}
