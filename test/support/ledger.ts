import { execFile } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { consumerGroupName, type ToolCallRequestedV1, Topics, topicName } from '@portcullis/contracts';
import { requestedEvent } from '@portcullis/testing';
import { type Kafka, Partitioners, type Producer } from 'kafkajs';
import type pg from 'pg';
import { LedgerWriter } from '../../services/audit/src/ledger-writer.ts';
import { repoRoot } from './stack.ts';

const run = promisify(execFile);

/** An Ed25519 key pair for a test: the private key as the service reads it, the public key on disk. */
export async function ledgerKeys(): Promise<{ signingKey: string; publicKeyFile: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-ledger-key-'));
  const publicKeyFile = join(dir, 'public-key.pem');
  await writeFile(publicKeyFile, publicKey.export({ format: 'pem', type: 'spki' }));
  return { signingKey: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(), publicKeyFile };
}

/** Runs `portcullis ledger …` as a process; resolves with its exit code and output. */
export async function ledgerCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(join(repoRoot, 'bin/portcullis'), ['ledger', ...args], {
      env: { PATH: process.env.PATH ?? '', ...env },
      maxBuffer: 256 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** A tool-call request event for load tests: small, valid, unique. */
export function loadEvent(i: number): ToolCallRequestedV1 {
  return requestedEvent({
    source: { service: 'broker', instanceId: 'load' },
    agent: { id: `agt_${i % 7}`, name: `agent-${i % 7}`, owner: 'owner@example.com' },
    tool: { name: i % 5 === 0 ? 'delete_record' : 'read_record' },
    actionClass: i % 5 === 0 ? 'delete' : 'read',
    argumentsDigest: 'a'.repeat(64),
    decision: {
      decisionId: randomUUID(),
      outcome: i % 3 === 0 ? 'deny' : 'allow',
      reasons: [i % 3 === 0 ? 'no_entitlement' : 'allowed'],
      policyRevision: 'r1',
    },
    ...(i % 4 === 0 ? { onBehalfOf: { userId: `user-${i % 3}` } } : {}),
  });
}

/** An idempotent producer to the audit topic of a prefix. */
export async function auditProducer(kafka: Kafka): Promise<Producer> {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  return producer;
}

/** Produces `count` events in chunks, returning their ids; `onChunk` runs after each chunk. */
export async function produceEvents(
  producer: Producer,
  prefix: string,
  count: number,
  {
    chunk = 500,
    start = 0,
    onChunk,
  }: { chunk?: number; start?: number; onChunk?: (sent: number) => Promise<void> } = {},
): Promise<string[]> {
  const ids: string[] = [];
  for (let sent = 0; sent < count; sent += chunk) {
    const events = Array.from({ length: Math.min(chunk, count - sent) }, (_, i) =>
      loadEvent(start + sent + i),
    );
    await producer.send({
      topic: topicName(prefix, Topics.audit),
      acks: -1,
      messages: events.map((e) => ({ key: e.callId, value: JSON.stringify(e) })),
    });
    ids.push(...events.map((e) => e.eventId));
    await onChunk?.(sent + events.length);
  }
  return ids;
}

/** True when the ledger's consumer group has committed up to the end of every audit partition. */
export async function ledgerCaughtUp(kafka: Kafka, prefix: string): Promise<boolean> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const topic = topicName(prefix, Topics.audit);
    const ends = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({
      groupId: consumerGroupName(prefix, 'portcullis.audit.ledger'),
      topics: [topic],
    });
    return ends.every(({ partition, offset }) => {
      const done = committed?.partitions.find((p) => p.partition === partition)?.offset ?? '-1';
      return offset === '0' || done === offset;
    });
  } finally {
    await admin.disconnect();
  }
}

/** A ledger writer for benchmarks: every event they produce is valid, so a dead letter is a bug. */
export function benchLedgerWriter(pool: pg.Pool): LedgerWriter {
  return new LedgerWriter(
    pool,
    async (letters) => {
      throw new Error(`unexpected dead letters: ${letters[0]?.reason}`);
    },
    { retentionDays: 30 },
  );
}
