import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, test } from 'node:test';
import { createPool, migrate } from '@portcullis/db';
import { createLogger } from '@portcullis/runtime';
import { completedEvent, createTestDatabase, requestedEvent } from '@portcullis/testing';
import type { KafkaMessage } from 'kafkajs';
import pg from 'pg';
import { rowHash } from './chain.ts';
import { writeCheckpoint } from './checkpoints.ts';
import { databaseSource } from './ledger-source.ts';
import { type DeadLetter, LedgerWriter } from './ledger-writer.ts';
import { AUDIT_SCHEMA, MIGRATIONS_DIR } from './schema.ts';
import { verifyLedger } from './verify.ts';

// The ledger writer and verifier against a real Postgres: chains, idempotency, and tamper
// detection for rows changed, deleted or inserted by a superuser who bypasses the triggers.

const logger = createLogger({ service: 'audit-test', level: 'silent', instanceId: 'test', redact: [] });
const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

const TOPIC = 't.portcullis.audit.v1';

interface Ledger {
  pool: pg.Pool;
  writer: LedgerWriter;
  letters: DeadLetter[];
  /** Writes `events` as one batch of `partition`, with offsets continuing that partition's log. */
  write: (events: unknown[], partition?: number) => Promise<number>;
  replay: (partition: number, from: number, to: number) => Promise<number>;
}

async function freshLedger(): Promise<Ledger> {
  const database = await createTestDatabase();
  await migrate({ databaseUrl: database.url, schema: AUDIT_SCHEMA, dir: MIGRATIONS_DIR, logger });
  const pool = new pg.Pool({ connectionString: database.url, max: 4 });
  cleanups.push(async () => {
    // The drop terminates the database's backends (WITH FORCE); a connection the pool is still
    // closing hears of it as an error, which without a listener would fail the whole file.
    pool.on('error', () => {});
    await pool.end();
    await database.drop();
  });
  const letters: DeadLetter[] = [];
  const writer = new LedgerWriter(pool, async (l) => void letters.push(...l), { retentionDays: 30 });
  const logs = new Map<number, KafkaMessage[]>();
  const write = async (events: unknown[], partition = 0) => {
    const log = logs.get(partition) ?? [];
    const batch = events.map(
      (event, i) =>
        ({
          key: null,
          value: Buffer.from(typeof event === 'string' ? event : JSON.stringify(event)),
          offset: String(log.length + i),
          timestamp: String(Date.now()),
          attributes: 0,
          headers: {},
        }) as KafkaMessage,
    );
    log.push(...batch);
    logs.set(partition, log);
    return writer.writeBatch(batch, { topic: TOPIC, partition });
  };
  const replay = (partition: number, from: number, to: number) =>
    writer.writeBatch((logs.get(partition) ?? []).slice(from, to), { topic: TOPIC, partition });
  return { pool, writer, letters, write, replay };
}

function calls(count: number): unknown[] {
  const events: unknown[] = [];
  for (let i = 0; i < count; i++) {
    const requested = requestedEvent();
    events.push(requested, completedEvent(requested));
  }
  return events;
}

async function verify(pool: pg.Pool) {
  return verifyLedger(databaseSource(pool, 37), publicKey);
}

async function asSuperuser(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('SET session_replication_role = replica');
    await client.query(sql, params);
  } finally {
    await client.query('RESET session_replication_role');
    client.release();
  }
}

async function chainOf(pool: pg.Pool, partition = 0): Promise<string> {
  const { rows } = await pool.query<{ chain_id: string }>(
    'SELECT chain_id FROM audit.ledger_events WHERE source_partition = $1 LIMIT 1',
    [partition],
  );
  return rows[0]!.chain_id;
}

test('batches extend one chain per day and Kafka partition; replays add nothing', async () => {
  const ledger = await freshLedger();
  assert.equal(await ledger.write(calls(100), 0), 200);
  assert.equal(await ledger.write(calls(50), 1), 100);
  assert.equal(await ledger.write(calls(20), 0), 40);
  // A crash before the offset commit: the same batches come again, whole or overlapping.
  assert.equal(await ledger.replay(0, 0, 240), 0);
  assert.equal(await ledger.replay(1, 50, 100), 0);
  const { rows } = await ledger.pool.query(
    'SELECT chain_id, count(*)::int AS n, max(chain_seq)::int AS top FROM audit.ledger_events GROUP BY chain_id ORDER BY chain_id',
  );
  assert.equal(rows.length, 2);
  assert.deepEqual(
    rows.map((r) => [r.n, r.top]),
    [
      [240, 240],
      [100, 100],
    ],
  );
  const report = await verify(ledger.pool);
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.equal(report.rows, 340);
});

test('the same event published twice at different offsets is stored once', async () => {
  const ledger = await freshLedger();
  const event = requestedEvent();
  assert.equal(await ledger.write([event, event, requestedEvent()]), 2);
  assert.equal(await ledger.write([event]), 0);
  assert.equal((await verify(ledger.pool)).ok, true);
});

test('an event id reused with another occurredAt is another event; redeliveries of both add nothing', async () => {
  const ledger = await freshLedger();
  const event = requestedEvent();
  const reused = { ...event, occurredAt: new Date(Date.parse(event.occurredAt) + 1000).toISOString() };
  assert.equal(await ledger.write([event]), 1);
  // The key is the event id with its occurredAt as stored: the same id at another time is recorded
  // (not skipped silently), in another batch and inside one.
  assert.equal(await ledger.write([reused, requestedEvent()]), 2);
  const twice = requestedEvent();
  assert.equal(
    await ledger.write([
      twice,
      { ...twice, occurredAt: new Date(Date.parse(twice.occurredAt) - 1).toISOString() },
    ]),
    2,
  );
  // A batch holding stored events and a new one: the optimistic insert hits the key, the batch is
  // redone with the lookup and adds only the new event, with no gap in the chain.
  assert.equal(await ledger.write([event, reused, requestedEvent(), twice]), 1);
  assert.equal(await ledger.replay(0, 0, 3), 0);
  const { rows } = await ledger.pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM audit.ledger_events WHERE event_id = $1',
    [event.eventId],
  );
  assert.equal(rows[0]!.n, 2);
  const report = await verify(ledger.pool);
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.equal(report.rows, 6);
});

test("the service's pools act as the writer role and as the read-only auditor, never as the owner", async () => {
  const ledger = await freshLedger();
  const database = (ledger.pool as unknown as { options: { connectionString: string } }).options
    .connectionString;
  const writer = createPool({
    connectionString: database,
    applicationName: 't',
    logger,
    role: 'portcullis_audit_writer',
  });
  const auditor = createPool({
    connectionString: database,
    applicationName: 't',
    logger,
    role: 'portcullis_auditor',
    readOnly: true,
  });
  cleanups.push(
    () => writer.end(),
    () => auditor.end(),
  );
  await ledger.write([requestedEvent()]);
  assert.equal((await writer.query('SELECT current_user AS u')).rows[0].u, 'portcullis_audit_writer');
  // What the owner could do and the writer cannot: rewrite history, or take a partition away.
  await assert.rejects(writer.query('DELETE FROM audit.ledger_events'), /permission denied/);
  await assert.rejects(
    writer.query('SELECT audit.maintain_partitions(400, 400)'),
    /days_ahead must be between 0 and 31/,
  );
  assert.equal((await auditor.query('SELECT count(*)::int AS n FROM audit.tool_calls')).rows[0].n, 1);
  await assert.rejects(
    auditor.query(
      "INSERT INTO audit.partition_log (action, partition_name, day) VALUES ('detached', 'x', now())",
    ),
    /read-only transaction/,
  );
  assert.throws(() =>
    createPool({ connectionString: database, applicationName: 't', logger, role: 'x; DROP' }),
  );
});

test('the writer needs no more than the writer role: COPY into the ledger, replays, new partitions', async () => {
  const ledger = await freshLedger();
  const database = (ledger.pool as unknown as { options: { connectionString: string } }).options
    .connectionString;
  const pool = new pg.Pool({ connectionString: database, max: 2 });
  pool.on('connect', (client) => void client.query('SET ROLE portcullis_audit_writer'));
  cleanups.push(() => pool.end());
  const letters: DeadLetter[] = [];
  const writer = new LedgerWriter(pool, async (l) => void letters.push(...l), { retentionDays: 30 });
  const batch = (events: unknown[], from: number) =>
    events.map(
      (event, i) =>
        ({
          key: null,
          value: Buffer.from(JSON.stringify(event)),
          offset: String(from + i),
          timestamp: String(Date.now()),
          attributes: 0,
          headers: {},
        }) as KafkaMessage,
    );
  const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000).toISOString();
  const events = [...calls(20), requestedEvent({ occurredAt: twoDaysAgo })];
  const context = { topic: TOPIC, partition: 0 };
  assert.equal(await writer.writeBatch(batch(events, 0), context), 41);
  assert.equal(await writer.writeBatch(batch([...events.slice(30), requestedEvent()], 30), context), 1);
  const role = await pool.query<{ role: string }>('SELECT current_user AS role');
  assert.equal(role.rows[0]!.role, 'portcullis_audit_writer');
  assert.deepEqual(letters, []);
  const report = await verify(ledger.pool);
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.equal(report.rows, 42);
});

test('two writers racing on one partition (a stale consumer) neither duplicate nor fork the chain', async () => {
  const ledger = await freshLedger();
  const events = calls(200);
  await Promise.all([
    ledger.write(events.slice(0, 300)),
    ledger.replay(0, 0, 300),
    ledger.replay(0, 100, 300),
  ]);
  await ledger.write(events.slice(300));
  const { rows } = await ledger.pool.query('SELECT count(*)::int AS n FROM audit.ledger_events');
  assert.equal(rows[0].n, 400);
  assert.equal((await verify(ledger.pool)).ok, true);
});

test('unparseable events and events outside the retention window are dead-lettered with a reason', async () => {
  const ledger = await freshLedger();
  const old = requestedEvent({ occurredAt: new Date(Date.now() - 40 * 86_400_000).toISOString() });
  const future = requestedEvent({ occurredAt: new Date(Date.now() + 3 * 86_400_000).toISOString() });
  assert.equal(await ledger.write(['not json', old, future, requestedEvent()]), 1);
  assert.deepEqual(
    ledger.letters.map((l) => l.message.offset),
    ['0', '1', '2'],
  );
  assert.match(ledger.letters[0]!.reason, /not JSON/);
  assert.match(ledger.letters[1]!.reason, /outside the ledger's window/);
});

test('an event with a lone surrogate is dead-lettered instead of blocking its partition', async () => {
  const ledger = await freshLedger();
  const poisoned = JSON.stringify(requestedEvent()).replace('"triage-bot"', '"triage\\ud800bot"');
  assert.match(poisoned, /\\ud800/);
  // A \u escape that is a whole character is fine and pays only for the check.
  const escapedButFine = JSON.stringify(requestedEvent()).replace('"triage-bot"', '"caf\\u00e9-bot"');
  assert.equal(await ledger.write([poisoned, requestedEvent(), escapedButFine]), 2);
  assert.deepEqual(
    ledger.letters.map((l) => [l.message.offset, l.reason]),
    [['0', 'has no RFC 8785 canonical form (a lone surrogate in a string)']],
  );
  assert.equal((await verify(ledger.pool)).ok, true);
});

test('an event with a NUL character is dead-lettered instead of blocking its partition', async () => {
  const ledger = await freshLedger();
  // jsonb refuses U+0000: written, the batch would fail on every redelivery.
  const poisoned = JSON.stringify(requestedEvent()).replace('"triage-bot"', '"triage\\u0000bot"');
  // The six characters backslash-u-0-0-0-0 as text are no NUL and are stored as they are.
  const textual = JSON.stringify(requestedEvent()).replace('"triage-bot"', '"triage\\\\u0000bot"');
  assert.equal(await ledger.write([poisoned, requestedEvent(), textual]), 2);
  assert.deepEqual(
    ledger.letters.map((l) => [l.message.offset, l.reason]),
    [['0', 'holds a NUL character (U+0000), which the ledger (jsonb) cannot store']],
  );
  assert.equal((await verify(ledger.pool)).ok, true);
});

test('approvals, credential events and admin changes land in the ledger and their views', async () => {
  const ledger = await freshLedger();
  const requested = requestedEvent({ actionClass: 'delete', onBehalfOf: { userId: 'bob' } });
  const approvalId = crypto.randomUUID();
  const now = new Date().toISOString();
  const envelope = { occurredAt: now, callId: requested.callId, source: requested.source };
  await ledger.write([
    requested,
    {
      type: 'approval.requested',
      version: 1,
      eventId: crypto.randomUUID(),
      ...envelope,
      approvalId,
      agent: requested.agent,
      app: requested.app,
      tool: requested.tool,
      requestDigest: 'c'.repeat(64),
      approvers: ['alice@example.com'],
      expiresAt: now,
    },
    {
      type: 'approval.decided',
      version: 1,
      eventId: crypto.randomUUID(),
      ...envelope,
      approvalId,
      outcome: 'approved',
      decidedBy: 'alice@example.com',
      channel: 'slack',
    },
    {
      type: 'credential.lease_issued',
      version: 1,
      eventId: crypto.randomUUID(),
      ...envelope,
      leaseId: 'lease-1',
      agentId: 'agt_1',
      appId: 'demo',
      credentialKind: 'personal',
      userId: 'bob',
      expiresAt: now,
    },
    completedEvent(requested, { approvalId, credentialLeaseId: 'lease-1' }),
    {
      type: 'admin.changed',
      version: 1,
      eventId: crypto.randomUUID(),
      occurredAt: now,
      source: { service: 'decision', instanceId: 'd1' },
      actor: 'root@example.com',
      action: 'entitlement.granted',
      target: { kind: 'agent', id: 'agt_1' },
    },
  ]);
  const q = async (sql: string) => (await ledger.pool.query(sql)).rows;
  assert.deepEqual(await q('SELECT approval_id, outcome, decided_by FROM audit.approvals'), [
    { approval_id: approvalId, outcome: 'approved', decided_by: 'alice@example.com' },
  ]);
  assert.deepEqual(
    await q('SELECT on_behalf_of, approval_id, credential_lease_id, outcome FROM audit.deletes'),
    [{ on_behalf_of: 'bob', approval_id: approvalId, credential_lease_id: 'lease-1', outcome: 'succeeded' }],
  );
  assert.deepEqual(await q('SELECT lease_id, user_id FROM audit.credential_events'), [
    { lease_id: 'lease-1', user_id: 'bob' },
  ]);
  assert.deepEqual(await q('SELECT actor, target_id FROM audit.admin_changes'), [
    { actor: 'root@example.com', target_id: 'agt_1' },
  ]);
  assert.equal((await verify(ledger.pool)).ok, true);
});

test('UPDATE, DELETE and TRUNCATE are refused by trigger, and by grants for the writer role', async () => {
  const ledger = await freshLedger();
  await ledger.write(calls(2));
  await writeCheckpoint(ledger.pool, privateKey);
  for (const sql of [
    "UPDATE audit.ledger_events SET event_type = 'x'",
    'DELETE FROM audit.ledger_events',
    'TRUNCATE audit.ledger_events',
    'DELETE FROM audit.checkpoints',
  ]) {
    await assert.rejects(ledger.pool.query(sql), /append-only/, sql);
  }
  // A partition reached directly is guarded too.
  const { rows } = await ledger.pool.query<{ name: string }>(
    "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'audit.ledger_events'::regclass LIMIT 1",
  );
  await assert.rejects(ledger.pool.query(`TRUNCATE audit.${rows[0]!.name}`), /append-only/);

  const client = await ledger.pool.connect();
  try {
    await client.query('SET ROLE portcullis_audit_writer');
    await assert.rejects(
      client.query("UPDATE audit.ledger_events SET event_type = 'x'"),
      /permission denied/,
    );
    await assert.rejects(client.query('DELETE FROM audit.ledger_events'), /permission denied/);
    await client.query('RESET ROLE');
    await client.query('SET ROLE portcullis_auditor');
    assert.equal((await client.query('SELECT count(*)::int AS n FROM audit.tool_calls')).rows[0].n, 2);
    await assert.rejects(
      client.query(
        "INSERT INTO audit.checkpoints (created_at, key_id, body, signature) VALUES (now(), 'k', '{}', 's')",
      ),
      /permission denied/,
    );
  } finally {
    await client.query('RESET ROLE');
    client.release();
  }
});

test('tamper: a row changed by a superuser is located by its chain and sequence', async () => {
  const ledger = await freshLedger();
  await ledger.write(calls(30));
  await writeCheckpoint(ledger.pool, privateKey);
  const chain = await chainOf(ledger.pool);
  await asSuperuser(
    ledger.pool,
    `UPDATE audit.ledger_events SET payload = jsonb_set(payload, '{agent,owner}', '"mallory@example.com"')
     WHERE chain_id = $1 AND chain_seq = 17`,
    [chain],
  );
  const report = await verify(ledger.pool);
  assert.equal(report.ok, false);
  assert.deepEqual(
    [report.firstProblem?.kind, report.firstProblem?.chainId, report.firstProblem?.seq],
    ['row_changed', chain, 17],
  );
});

test('tamper: a row changed and every later hash recomputed is caught by the signed checkpoint', async () => {
  const ledger = await freshLedger();
  await ledger.write(calls(20));
  await writeCheckpoint(ledger.pool, privateKey);
  const chain = await chainOf(ledger.pool);
  // The attacker knows the algorithm: rewrite seq 5 and rehash the rest of the chain.
  const { rows } = await ledger.pool.query(
    'SELECT * FROM audit.ledger_events WHERE chain_id = $1 ORDER BY chain_seq',
    [chain],
  );
  const { fromDbRow } = await import('./ledger-source.ts');
  let prev = '';
  for (const raw of rows) {
    const row = fromDbRow(raw);
    if (row.chainSeq === 5) (row.payload as { tool: { name: string } }).tool.name = 'innocent_tool';
    if (row.chainSeq >= 5) {
      row.prevHash = prev;
      row.rowHash = rowHash(row);
      await asSuperuser(
        ledger.pool,
        'UPDATE audit.ledger_events SET payload = $1, prev_hash = $2, row_hash = $3 WHERE event_id = $4',
        [JSON.stringify(row.payload), row.prevHash, row.rowHash, row.eventId],
      );
    }
    prev = row.rowHash;
  }
  const report = await verify(ledger.pool);
  assert.equal(report.ok, false);
  assert.equal(report.firstProblem?.kind, 'row_changed');
  assert.equal(report.firstProblem?.chainId, chain);
  assert.equal(report.firstProblem?.checkpointId, 1);
});

test('tamper: a deleted row is named, with triggers disabled by ALTER TABLE', async () => {
  const ledger = await freshLedger();
  await ledger.write(calls(15));
  const chain = await chainOf(ledger.pool);
  await ledger.pool.query('ALTER TABLE audit.ledger_events DISABLE TRIGGER ledger_events_no_update_delete');
  await ledger.pool.query('DELETE FROM audit.ledger_events WHERE chain_id = $1 AND chain_seq = 9', [chain]);
  await ledger.pool.query('ALTER TABLE audit.ledger_events ENABLE TRIGGER ledger_events_no_update_delete');
  const report = await verify(ledger.pool);
  assert.deepEqual(
    [report.firstProblem?.kind, report.firstProblem?.chainId, report.firstProblem?.seq],
    ['row_missing', chain, 9],
  );
});

test('tamper: deleting the tail of a chain, or a whole chain, contradicts the checkpoint', async () => {
  const ledger = await freshLedger();
  await ledger.write(calls(10), 0);
  await ledger.write(calls(10), 1);
  await writeCheckpoint(ledger.pool, privateKey);
  const tail = await chainOf(ledger.pool, 0);
  const whole = await chainOf(ledger.pool, 1);
  await asSuperuser(ledger.pool, 'DELETE FROM audit.ledger_events WHERE chain_id = $1 AND chain_seq > 17', [
    tail,
  ]);
  await asSuperuser(ledger.pool, 'DELETE FROM audit.ledger_events WHERE chain_id = $1', [whole]);
  const report = await verify(ledger.pool);
  const found = report.problems.map((p) => [p.kind, p.chainId, p.seq]);
  assert.deepEqual(
    found.sort(),
    [
      ['chain_missing', whole, 20],
      ['chain_truncated', tail, 18],
    ].sort(),
  );
});

test('tamper: a row inserted into the middle of a chain is located', async () => {
  const ledger = await freshLedger();
  await ledger.write(calls(10));
  const chain = await chainOf(ledger.pool);
  const { rows } = await ledger.pool.query(
    'SELECT * FROM audit.ledger_events WHERE chain_id = $1 AND chain_seq = 6',
    [chain],
  );
  const original = rows[0];
  const forged = requestedEvent({ occurredAt: new Date(original.occurred_at.getTime() + 1).toISOString() });
  await asSuperuser(
    ledger.pool,
    `INSERT INTO audit.ledger_events (event_id, call_id, event_type, event_version, occurred_at, recorded_at, payload,
       source_topic, source_partition, source_offset, chain_id, chain_seq, prev_hash, row_hash)
     VALUES ($1, $2, 'tool_call.requested', 1, $3, now(), $4, $5, 0, 999, $6, 6, $7, $8)`,
    [
      forged.eventId,
      forged.callId,
      forged.occurredAt,
      JSON.stringify(forged),
      TOPIC,
      chain,
      original.prev_hash,
      'f'.repeat(64),
    ],
  );
  const report = await verify(ledger.pool);
  assert.equal(report.firstProblem?.chainId, chain);
  assert.equal(report.firstProblem?.seq, 6);
  assert.ok(['row_inserted', 'row_changed'].includes(report.firstProblem!.kind), report.firstProblem!.kind);
});

test('tamper: an altered checkpoint fails its signature; a removed one breaks the checkpoint links', async () => {
  const ledger = await freshLedger();
  await ledger.write(calls(3));
  await writeCheckpoint(ledger.pool, privateKey);
  await ledger.write(calls(3));
  await writeCheckpoint(ledger.pool, privateKey);
  await ledger.write(calls(3));
  await writeCheckpoint(ledger.pool, privateKey);
  assert.equal((await verify(ledger.pool)).ok, true);
  await asSuperuser(
    ledger.pool,
    `UPDATE audit.checkpoints SET body = jsonb_set(body, '{heads,0,seq}', '2') WHERE checkpoint_id = 1`,
  );
  await asSuperuser(ledger.pool, 'DELETE FROM audit.checkpoints WHERE checkpoint_id = 2');
  const report = await verify(ledger.pool);
  assert.deepEqual(
    report.problems.filter((p) => p.checkpointId !== undefined).map((p) => [p.kind, p.checkpointId]),
    [
      ['bad_signature', 1],
      ['checkpoint_missing', 3],
    ],
  );
  // A key other than the auditor's is refused outright.
  const other = generateKeyPairSync('ed25519');
  const foreign = await verifyLedger(databaseSource(ledger.pool), other.publicKey);
  assert.ok(foreign.problems.some((p) => p.kind === 'unknown_key'));
});

test('retention detaches old day partitions, and verify tells retired chains from deleted ones', async () => {
  const ledger = await freshLedger();
  const day = (ago: number) => new Date(Date.now() - ago * 86_400_000).toISOString();
  await ledger.write([requestedEvent({ occurredAt: day(20) }), requestedEvent({ occurredAt: day(0) })]);
  await writeCheckpoint(ledger.pool, privateKey);
  const { maintainPartitions } = await import('./maintenance.ts');
  // The writer role cannot make it detach the last week, whatever it asks.
  await assert.rejects(maintainPartitions(ledger.pool, 3, 0), /retention_days must be at least 7/);
  const done = await maintainPartitions(ledger.pool, 3, 10);
  assert.equal(done.filter((d) => d.action === 'detached').length, 1);
  assert.ok(done.filter((d) => d.action === 'ensured').length === 4);
  const report = await verifyLedger(databaseSource(ledger.pool), publicKey, { retentionDays: 10 });
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  assert.equal(report.retiredChains, 1);
  assert.equal(report.rows, 1);
  // An auditor who knows the retention is 400 days sees a day of 20 days ago gone, not retired:
  // the partition log (unsigned) cannot excuse a deletion.
  const strict = await verifyLedger(databaseSource(ledger.pool), publicKey, { retentionDays: 400 });
  assert.equal(strict.ok, false);
  assert.deepEqual(
    strict.problems.map((p) => p.kind),
    ['chain_missing'],
  );
  assert.equal(strict.retiredChains, 0);
});

test('payload text with COPY and JSON specials (tab, newline, CR, backslash, quotes, U+2028, astral) is stored as sent', async () => {
  const ledger = await freshLedger();
  const name = 'tab\there\nnew\rline \\ back\\slash "quoted" \\N \u2028 é 😀 \\t';
  const event = requestedEvent({ agent: { id: 'agt_text', name, owner: 'o@example.com' } });
  assert.equal(await ledger.write([event]), 1);
  const { rows } = await ledger.pool.query<{ payload: { agent: { name: string } } }>(
    'SELECT payload FROM audit.ledger_events WHERE event_id = $1',
    [event.eventId],
  );
  assert.equal(rows[0]?.payload.agent.name, name);
  const report = await verify(ledger.pool);
  assert.equal(report.ok, true, JSON.stringify(report.problems));
});

test('auditor indexes: built on a day partition once its day is over, never on the partition ingest writes today', async () => {
  const ledger = await freshLedger();
  const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
  const partitionOf = (d: Date) => `ledger_events_p${d.toISOString().slice(0, 10).replaceAll('-', '')}`;
  const [settled, today] = [partitionOf(twoDaysAgo), partitionOf(new Date())];
  const indexesOf = async (partition: string) => {
    const { rows } = await ledger.pool.query<{ indexname: string }>(
      "SELECT indexname FROM pg_indexes WHERE schemaname = 'audit' AND tablename = $1 ORDER BY indexname",
      [partition],
    );
    // Parent-inherited index names carry generated suffixes; the kind of index is what matters.
    return rows.map((r) => r.indexname.replace(`${partition}_`, '').replace(/\d*$/, ''));
  };
  const agent = { id: 'agt_settled', name: 'settled-bot', owner: 'alice@example.com' };
  // The write creates the partition of two days ago (the migration made only yesterday's on).
  await ledger.write([
    requestedEvent({ agent, occurredAt: twoDaysAgo.toISOString(), onBehalfOf: { userId: 'u-1' } }),
    requestedEvent({ agent, onBehalfOf: { userId: 'u-1' } }),
  ]);
  const writerKeys = ['call_id_idx', 'chain_id_chain_seq_occurred_at_key', 'occurred_at_idx', 'pkey'];
  assert.deepEqual(await indexesOf(settled), writerKeys);
  assert.deepEqual(await indexesOf(today), writerKeys);

  const { maintainPartitions } = await import('./maintenance.ts');
  const done = await maintainPartitions(ledger.pool, 3, 30);
  assert.deepEqual(
    done.filter((d) => d.action === 'indexed').map((d) => d.partition_name),
    [settled],
  );
  assert.deepEqual(
    await indexesOf(settled),
    [...writerKeys, 'agent_idx', 'approval_idx', 'type_idx', 'user_idx'].sort(),
  );
  assert.deepEqual(await indexesOf(today), writerKeys, 'today keeps only what the writer needs');
  // Running again builds nothing twice.
  const again = await maintainPartitions(ledger.pool, 3, 30);
  assert.deepEqual(
    again.filter((d) => d.action === 'indexed'),
    [],
  );

  // The views answer the same on both kinds of partition; on the settled one the filter uses the index.
  const { rows } = await ledger.pool.query(
    "SELECT count(*)::int AS n FROM audit.tool_calls WHERE agent_id = 'agt_settled' AND on_behalf_of = 'u-1'",
  );
  assert.deepEqual(rows, [{ n: 2 }]);
  const client = await ledger.pool.connect();
  try {
    await client.query('BEGIN');
    await client.query('SET LOCAL enable_seqscan = off');
    const plan = await client.query(
      `EXPLAIN SELECT * FROM audit.ledger_events WHERE payload -> 'agent' ->> 'id' = 'agt_settled'
       AND occurred_at >= $1::date AND occurred_at < $1::date + 1`,
      [twoDaysAgo.toISOString().slice(0, 10)],
    );
    await client.query('ROLLBACK');
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    assert.match(text, new RegExp(`${settled}_agent_idx`));
  } finally {
    client.release();
  }
  const report = await verify(ledger.pool);
  assert.equal(report.ok, true, JSON.stringify(report.problems));
});

test('key rotation: checkpoints of two keys verify with both public keys, not with one', async () => {
  const ledger = await freshLedger();
  const next = generateKeyPairSync('ed25519');
  await ledger.write(calls(3));
  await writeCheckpoint(ledger.pool, privateKey);
  await ledger.write(calls(3));
  await writeCheckpoint(ledger.pool, next.privateKey);
  const both = await verifyLedger(databaseSource(ledger.pool), [publicKey, next.publicKey]);
  assert.equal(both.ok, true, JSON.stringify(both.problems));
  const old = await verifyLedger(databaseSource(ledger.pool), [publicKey]);
  assert.deepEqual(
    old.problems.map((p) => [p.kind, p.checkpointId]),
    [['unknown_key', 2]],
  );
});

test('unused_entitlements: lists entitlements without an allowed call in N days, and degrades without a directory', async () => {
  const ledger = await freshLedger();
  // Without the decision service's schema: no rows, no error.
  const { rows: none } = await ledger.pool.query('SELECT * FROM audit.unused_entitlements(30)');
  assert.deepEqual(none, []);

  // With the directory as the decision service migrates it.
  const database = ledger.pool.options.connectionString!;
  await migrate({
    databaseUrl: database,
    schema: 'directory',
    dir: new URL('../../decision/migrations', import.meta.url).pathname,
    logger,
  });
  await ledger.pool.query(`INSERT INTO directory.apps (id, name) VALUES ('demo', 'Demo'), ('crm', 'CRM')`);
  await ledger.pool.query(
    `INSERT INTO directory.agents (id, name, owner) VALUES ('agt_1', 'triage-bot', 'alice@example.com')`,
  );
  await ledger.pool.query(`INSERT INTO directory.entitlements (agent_id, app_id, action_class, granted_by)
    VALUES ('agt_1', 'demo', 'read', 'root'), ('agt_1', 'crm', 'write', 'root'), ('agt_1', 'demo', 'delete', 'root')`);
  const old = new Date(Date.now() - 20 * 86_400_000).toISOString();
  await ledger.write([
    requestedEvent(), // agt_1 read on demo, allowed, today
    requestedEvent({ app: { id: 'crm' }, actionClass: 'write', occurredAt: old }),
    requestedEvent({
      actionClass: 'delete',
      decision: {
        decisionId: crypto.randomUUID(),
        outcome: 'deny',
        reasons: ['no_entitlement'],
        policyRevision: 'r1',
      },
    }),
  ]);
  const { rows } = await ledger.pool.query(
    'SELECT app_id, action_class, last_used_at IS NOT NULL AS used_before FROM audit.unused_entitlements(7)',
  );
  assert.deepEqual(rows, [
    { app_id: 'crm', action_class: 'write', used_before: true },
    { app_id: 'demo', action_class: 'delete', used_before: false },
  ]);
});
