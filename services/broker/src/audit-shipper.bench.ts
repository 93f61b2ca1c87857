import { PassThrough } from 'node:stream';
import { Topics, topicName } from '@portcullis/contracts';
import { createKafka, createProducer, ensureTopics } from '@portcullis/kafka';
import { createLogger } from '@portcullis/runtime';
import {
  completedEvent,
  deleteTopicsWithPrefix,
  requestedEvent,
  stackEnv,
  uniqueName,
} from '@portcullis/testing';
import { type AuditShipper, ProducerShipper, WorkerShipper } from './audit-shipper.ts';

// Audit shipping benchmark: the broker main thread's CPU per audit event shipped to Kafka, through
// the worker thread (WorkerShipper: copy the batch into one buffer, post it, wait for the answer)
// beside its anchor, the same batches sent on the main thread (ProducerShipper: key parsing and
// kafkajs). Also the hand-off alone (the copy and the transfer). Batches of 20 events (what
// local-first gathers in 20 ms at 500 calls/s) and 200 (the most the replay peeks at once).
// Needs the local stack's Kafka. Run: pnpm bench:audit-shipper

const BATCHES = 150;
/** 20 events: what the 20 ms linger gathers at 500 calls/s (two events a call); 200: the most a batch holds. */
const BATCH_SIZES = [20, 200];
const logger = createLogger({ service: 'bench', level: 'silent', destination: new PassThrough() });
const brokers = stackEnv().kafkaBrokers.split(',');
const kafka = createKafka({ clientId: 'audit-shipper-bench', brokers, logger });
const prefix = uniqueName('shipbench');
await ensureTopics(kafka, prefix, [Topics.audit]);
const topic = topicName(prefix, Topics.audit);

function auditRecords(count: number): Buffer[] {
  const records: Buffer[] = [];
  while (records.length < count) {
    const request = requestedEvent();
    records.push(Buffer.from(JSON.stringify(request)), Buffer.from(JSON.stringify(completedEvent(request))));
  }
  return records;
}

/** Main-thread CPU (µs) per event and wall time per batch over BATCHES shipments, after a warm-up. */
async function measure(
  shipper: AuditShipper,
  records: Buffer[],
): Promise<{ cpuPerEventUs: number; msPerBatch: number }> {
  for (let i = 0; i < 20; i++) await shipper.ship(records);
  const cpu = process.threadCpuUsage();
  const started = performance.now();
  for (let i = 0; i < BATCHES; i++) await shipper.ship(records);
  const used = process.threadCpuUsage(cpu);
  return {
    cpuPerEventUs: (used.user + used.system) / (BATCHES * records.length),
    msPerBatch: (performance.now() - started) / BATCHES,
  };
}

/** Main-thread CPU (µs) of the hand-off alone: the copy into one buffer and its transfer-clone. */
function handoffUs(records: Buffer[]): number {
  const bytes = records.reduce((sum, record) => sum + record.length, 0);
  const rounds = 2000;
  const cpu = process.threadCpuUsage();
  for (let i = 0; i < rounds; i++) {
    const data = new Uint8Array(bytes);
    let at = 0;
    for (const record of records) {
      data.set(record, at);
      at += record.length;
    }
    structuredClone(
      { data: data.buffer, lengths: records.map((r) => r.length) },
      { transfer: [data.buffer] },
    );
  }
  const used = process.threadCpuUsage(cpu);
  return (used.user + used.system) / rounds;
}

const fmt = (n: number, digits = 1) => n.toFixed(digits);
const print = (line: string) => process.stdout.write(`${line}\n`);
const producer = createProducer(kafka);
await producer.connect();
const inThread = new ProducerShipper(producer, topic);
const worker = new WorkerShipper({ config: { clientId: 'audit-shipper-bench', brokers, topic }, logger });
print(`audit shipping, ${BATCHES} batches per row, shared Kafka; main-thread CPU per event shipped`);
print(
  `${'batch'.padEnd(14)} ${'main thread (anchor)'.padStart(22)} ${'worker'.padStart(10)} ${'ratio'.padStart(7)} ${'hand-off alone'.padStart(16)} ${'ms/batch main / worker'.padStart(24)}`,
);
for (const size of BATCH_SIZES) {
  const records = auditRecords(size);
  const bytes = records.reduce((sum, record) => sum + record.length, 0);
  const anchor = await measure(inThread, records);
  const off = await measure(worker, records);
  const handoff = handoffUs(records) / size;
  print(
    [
      `${size} (${Math.round(bytes / 1024)} KiB)`.padEnd(14),
      `${fmt(anchor.cpuPerEventUs)} µs`.padStart(22),
      `${fmt(off.cpuPerEventUs)} µs`.padStart(10),
      `${fmt(off.cpuPerEventUs / anchor.cpuPerEventUs, 2)}×`.padStart(7),
      `${fmt(handoff, 2)} µs`.padStart(16),
      `${fmt(anchor.msPerBatch, 2)} / ${fmt(off.msPerBatch, 2)}`.padStart(24),
    ].join(' '),
  );
}
await worker.close();
await producer.disconnect();
await deleteTopicsWithPrefix(prefix);
