import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { promisify } from 'node:util';
import { migrate } from '@portcullis/db';
import { createLogger } from '@portcullis/runtime';
import { completedEvent, createTestDatabase, freePort, requestedEvent, waitFor } from '@portcullis/testing';
import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import type { KafkaMessage } from 'kafkajs';
import pg from 'pg';
import { LedgerWriter } from '../ledger-writer.ts';
import { AUDIT_SCHEMA, MIGRATIONS_DIR } from '../schema.ts';
import { SiemExporter } from './exporter.ts';
import type { OcsfEvent } from './ocsf.ts';
import { SplunkHecDestination } from './splunk-hec.ts';
import { SyslogDestination } from './syslog.ts';
import { LocalHec } from './testing/local-hec.ts';

// SIEM export against local servers that speak the real protocols: a Splunk HEC endpoint with
// channels and indexer acknowledgement, and RFC 5424 syslog receivers over TCP and TLS. Every
// event is validated against the OCSF 1.3.0 API Activity (6003) JSON schema kept beside this test.

const logger = createLogger({ service: 'siem-test', level: 'silent', instanceId: 'test', redact: [] });
const schema = JSON.parse(
  readFileSync(new URL('./testing/ocsf-api-activity-6003.schema.json', import.meta.url), 'utf8'),
);
const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false });
(addFormats as unknown as (a: Ajv) => void)(ajv);
const validateOcsf = ajv.compile(schema);

let pool: pg.Pool;
let writer: LedgerWriter;
let dropDatabase: () => Promise<void>;
let offset = 0;
/** OCSF uids (= ledger event ids) the exporters must deliver. */
const expected = new Set<string>();

async function writeCalls(count: number): Promise<void> {
  const events: unknown[] = [];
  for (let i = 0; i < count; i++) {
    const denied = i % 4 === 0;
    const requested = requestedEvent({
      actionClass: i % 3 === 0 ? 'delete' : 'read',
      decision: {
        decisionId: randomUUID(),
        outcome: denied ? 'deny' : 'allow',
        reasons: [denied ? 'no_entitlement' : 'allowed'],
        policyRevision: 'r7',
      },
      ...(i % 5 === 0 ? { onBehalfOf: { userId: 'bob@example.com' } } : {}),
    });
    const completed = completedEvent(
      requested,
      i % 7 === 1 ? { outcome: 'failed', error: { code: 'upstream_error', message: 'boom' } } : {},
    );
    events.push(requested, completed);
    expected.add(completed.eventId);
    if (i % 50 === 0) {
      const approvalId = randomUUID();
      const decided = {
        type: 'approval.decided',
        version: 1,
        eventId: randomUUID(),
        occurredAt: new Date().toISOString(),
        callId: requested.callId,
        source: requested.source,
        approvalId,
        outcome: i % 100 === 0 ? 'approved' : 'denied',
        decidedBy: 'alice@example.com',
        channel: 'slack',
      };
      events.push(decided);
      expected.add(decided.eventId);
    }
  }
  const messages = events.map(
    (event) =>
      ({
        key: null,
        value: Buffer.from(JSON.stringify(event)),
        offset: String(offset++),
        timestamp: '0',
        attributes: 0,
        headers: {},
      }) as KafkaMessage,
  );
  await writer.writeBatch(messages, { topic: 'siem.portcullis.audit.v1', partition: 0 });
}

before(async () => {
  const database = await createTestDatabase();
  dropDatabase = database.drop;
  await migrate({ databaseUrl: database.url, schema: AUDIT_SCHEMA, dir: MIGRATIONS_DIR, logger });
  pool = new pg.Pool({ connectionString: database.url, max: 4 });
  writer = new LedgerWriter(pool, async () => {}, { retentionDays: 30 });
  await writeCalls(200);
});

after(async () => {
  await pool?.end();
  await dropDatabase?.();
});

function assertValid(event: OcsfEvent): void {
  assert.ok(
    validateOcsf(event),
    `${JSON.stringify(validateOcsf.errors, null, 2)}\n${JSON.stringify(event, null, 2)}`,
  );
}

test('OCSF events for tool calls, denials and approvals validate against the 6003 schema', async () => {
  const seen: OcsfEvent[] = [];
  const probe = new SiemExporter({
    pool,
    logger,
    destination: { name: 'probe', send: async (events) => void seen.push(...events), close: async () => {} },
  });
  await probe.runOnce();
  assert.equal(seen.length, expected.size);
  for (const event of seen) assertValid(event);
  const denial = seen.find((e) => (e.unmapped as { decision?: string }).decision === 'deny')!;
  assert.equal(denial.status_id, 2);
  assert.match(String(denial.status_detail), /denied by policy: no_entitlement/);
  const approval = seen.find(
    (e) => e.metadata && (e.metadata as { event_code: string }).event_code === 'approval.decided',
  )!;
  assert.equal((approval.actor as { user: { uid: string } }).user.uid, 'alice@example.com');
  const deleted = seen.find((e) => e.activity_id === 4)!;
  assert.equal(deleted.type_uid, 600304);
  // The schema is strict enough to fail: a missing required attribute is refused.
  const { api: _api, ...withoutApi } = seen[0]!;
  assert.equal(validateOcsf(withoutApi), false);
});

test('two replicas exporting to one destination send each event once', async () => {
  const seen: string[] = [];
  const destination = {
    name: 'shared',
    // Slow enough that both replicas' rounds overlap.
    send: async (events: OcsfEvent[]) => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      for (const event of events) seen.push((event.metadata as { uid: string }).uid);
    },
    close: async () => {},
  };
  const replicas = [0, 1].map(() => new SiemExporter({ pool, logger, destination, batchSize: 50 }));
  await Promise.all(replicas.map((replica) => replica.runOnce()));
  await Promise.all(replicas.map((replica) => replica.runOnce())); // whoever skipped finds nothing left
  assert.equal(seen.length, expected.size);
  assert.equal(new Set(seen).size, seen.length, 'no event sent twice');
});

test('Splunk HEC: indexer acknowledgement, retries with backoff, durable position across a restart', async (t) => {
  const hec = new LocalHec();
  await hec.start();
  t.after(() => hec.stop());
  hec.failNext = 3;
  hec.loseNext = 1;
  const exporterFor = () =>
    new SiemExporter({
      pool,
      logger,
      batchSize: 100,
      initialBackoffMs: 50,
      maxBackoffMs: 400,
      intervalMs: 100,
      destination: new SplunkHecDestination({
        url: hec.url,
        token: hec.token,
        ackTimeoutMs: 400,
        ackPollMs: 20,
      }),
    });
  let exporter = exporterFor();
  exporter.start();
  try {
    await waitFor('HEC to index every event', () => hec.uids().size === expected.size, { timeoutMs: 30000 });
  } finally {
    await exporter.stop();
  }
  assert.equal(hec.failNext, 0, 'the busy answers were retried');
  assert.ok(hec.eventPosts > 3);
  for (const event of hec.indexed) assertValid(event);
  assert.deepEqual(hec.uids(), expected);

  // A restart: a new process (new channel) resumes from the stored position and sends only what is new.
  const before = hec.indexed.length;
  const known = expected.size;
  await writeCalls(60);
  exporter = exporterFor();
  exporter.start();
  try {
    await waitFor('HEC to index the new events', () => hec.uids().size === expected.size, {
      timeoutMs: 30000,
    });
  } finally {
    await exporter.stop();
  }
  assert.equal(
    hec.indexed.length - before,
    expected.size - known,
    'only the new calls and approvals were sent',
  );
  assert.equal(hec.channels.size, 2);
});

/** Reads RFC 6587 octet-counted frames from a stream. */
function frameReader(onMessage: (message: string) => void): (chunk: Buffer) => void {
  let buffer = Buffer.alloc(0);
  return (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      const space = buffer.indexOf(0x20);
      if (space < 0) return;
      const length = Number(buffer.subarray(0, space).toString('ascii'));
      if (!Number.isInteger(length) || length <= 0) throw new Error('bad syslog frame');
      if (buffer.length < space + 1 + length) return;
      onMessage(buffer.subarray(space + 1, space + 1 + length).toString('utf8'));
      buffer = buffer.subarray(space + 1 + length);
    }
  };
}

const RFC5424 =
  /^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) (\S+) (\S+) (\S+) (\[ocsf@32473 class_uid="6003" uid="[0-9a-f-]{36}"\]) (\{.*\})$/s;

function parseSyslog(message: string): OcsfEvent {
  const match = RFC5424.exec(message);
  assert.ok(match, `not RFC 5424: ${message.slice(0, 200)}`);
  const pri = Number(match[1]);
  assert.equal(Math.floor(pri / 8), 13, 'facility log audit');
  return JSON.parse(match[8]!) as OcsfEvent;
}

class LocalSyslog {
  readonly received: OcsfEvent[] = [];
  readonly #sockets = new Set<Socket>();
  #server: NetServer | undefined;

  readonly port: number;
  readonly tls: { key: string; cert: string } | undefined;

  constructor(port: number, tls?: { key: string; cert: string }) {
    this.port = port;
    this.tls = tls;
  }

  async start(): Promise<void> {
    const onConnection = (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {});
      socket.on(
        'data',
        frameReader((message) => this.received.push(parseSyslog(message))),
      );
    };
    this.#server = this.tls
      ? createTlsServer({ key: this.tls.key, cert: this.tls.cert }, onConnection)
      : createNetServer(onConnection);
    await new Promise<void>((resolve) => this.#server!.listen(this.port, '127.0.0.1', resolve));
  }

  /** Closes gracefully, as a receiver being restarted does. */
  async stop(): Promise<void> {
    for (const socket of this.#sockets) socket.end();
    await new Promise<void>((resolve) => this.#server?.close(() => resolve()) ?? resolve());
  }

  uids(): Set<string> {
    return new Set(this.received.map((e) => (e.metadata as { uid: string }).uid));
  }
}

test('syslog RFC 5424 over TCP: waits out a receiver that is down, survives its restart', async () => {
  const port = await freePort();
  const receiver = new LocalSyslog(port);
  const exporter = new SiemExporter({
    pool,
    logger,
    batchSize: 150,
    initialBackoffMs: 50,
    maxBackoffMs: 300,
    intervalMs: 100,
    destination: new SyslogDestination({ host: '127.0.0.1', port, hostname: 'audit-1' }),
  });
  exporter.start();
  try {
    // Nothing listens yet: sends fail and back off; nothing is marked as sent.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(exporter.sent, 0);
    await receiver.start();
    await waitFor('syslog to receive every event', () => receiver.uids().size === expected.size, {
      timeoutMs: 30000,
    });
    await receiver.stop();
    await writeCalls(40);
    await receiver.start();
    await waitFor(
      'syslog to receive the new events after its restart',
      () => receiver.uids().size === expected.size,
      {
        timeoutMs: 30000,
      },
    );
  } finally {
    await exporter.stop();
    await receiver.stop();
  }
  for (const event of receiver.received) assertValid(event);
  assert.deepEqual(receiver.uids(), expected);
});

test('syslog over TLS (RFC 5425) to a receiver whose certificate is pinned', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-syslog-tls-'));
  await promisify(execFile)('openssl', [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ]);
  const key = await readFile(join(dir, 'key.pem'), 'utf8');
  const cert = await readFile(join(dir, 'cert.pem'), 'utf8');
  const port = await freePort();
  const receiver = new LocalSyslog(port, { key, cert });
  await receiver.start();
  const destination = new SyslogDestination({
    host: '127.0.0.1',
    port,
    tls: { ca: cert, servername: 'localhost' },
    name: 'syslog-tls',
  });
  const exporter = new SiemExporter({ pool, logger, destination });
  try {
    await exporter.runOnce();
    await waitFor('TLS syslog to receive every event', () => receiver.uids().size === expected.size, {
      timeoutMs: 15000,
    });
    // Without the pinned issuer, the receiver's self-signed certificate is refused.
    const unpinned = new SyslogDestination({ host: '127.0.0.1', port, tls: { servername: 'localhost' } });
    await assert.rejects(unpinned.send([]), /self.signed|certificate/i);
  } finally {
    await exporter.stop();
    await receiver.stop();
  }
  for (const event of receiver.received) assertValid(event);
});
