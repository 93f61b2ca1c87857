import { parentPort, workerData } from 'node:worker_threads';
import { createKafkaClient, createProducer, sendDurably } from '@portcullis/kafka';
import type { Producer } from 'kafkajs';
import type { FromShipper, ShipperWorkerConfig, ToShipper } from './audit-shipper.ts';
import { keyedMessages } from './audit-shipper.ts';

// The audit shipper's thread (see WorkerShipper): one idempotent producer, configured as the
// broker's own, that sends what the main thread peeked from the spool and answers once Kafka
// acknowledged it. Shipments are sent one after another, in the order they arrive, so the spool's
// order reaches Kafka unchanged.

const port = parentPort;
if (!port) throw new Error('audit-shipper-worker.ts runs as a worker thread only');
const config = workerData as ShipperWorkerConfig;
const post = (message: FromShipper) => port.postMessage(message);

const kafka = createKafkaClient(config.clientId, config.brokers, (level, namespace, message, fields) => {
  try {
    post({ type: 'log', level, namespace, message, fields });
  } catch {
    // A field that cannot be cloned (a function, a socket): the message alone still says what happened.
    post({ type: 'log', level, namespace, message, fields: {} });
  }
});
const producer: Producer = createProducer(kafka);
let connected: Promise<void> | undefined;
/** Connects once; a failed attempt is forgotten so that the next shipment tries again. */
function connect(): Promise<void> {
  connected ??= producer.connect().catch((error: unknown) => {
    connected = undefined;
    throw error;
  });
  return connected;
}
// Connect ahead of the first shipment; if Kafka is away, that shipment reports it.
void connect().catch(() => {});

let queue: Promise<void> = Promise.resolve();

port.on('message', (message: ToShipper) => {
  if (message.type === 'close') {
    queue = queue.then(async () => {
      await producer.disconnect().catch(() => {});
      // Ends this thread only, with code 0: the supervisor knows it asked for it.
      process.exit(0);
    });
    return;
  }
  queue = queue.then(() => ship(message));
});

async function ship({ id, data, lengths }: Extract<ToShipper, { type: 'ship' }>): Promise<void> {
  try {
    const buffer = Buffer.from(data);
    const records: Buffer[] = [];
    let at = 0;
    for (const length of lengths) {
      records.push(buffer.subarray(at, at + length));
      at += length;
    }
    await connect();
    await sendDurably(producer, config.topic, keyedMessages(records));
    post({ type: 'shipped', id });
  } catch (error) {
    const { name, message } = error instanceof Error ? error : new Error(String(error));
    post({ type: 'failed', id, error: { name, message } });
  }
}
