import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Topics, topicName } from '@portcullis/contracts';
import {
  completedEvent,
  freePort,
  type ServiceProcess,
  stackEnv,
  startProcess,
  waitFor,
} from '@portcullis/testing';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { LocalHec } from '../../services/audit/src/siem/testing/local-hec.ts';
import {
  auditProducer,
  ledgerCaughtUp,
  ledgerCli,
  ledgerKeys,
  loadEvent,
  produceEvents,
} from '../support/ledger.ts';
import { repoRoot, TestStack } from '../support/stack.ts';

// The ledger end to end: events through real Kafka into the audit service (a process), signed
// checkpoints, `portcullis ledger verify` from the database and from a dump, tampering found by
// the CLI, the auditor query API, CSV/JSONL export with cursors, and a SIGKILL mid-batch.

let stack: TestStack;
let kafka: Kafka;
let ledger: pg.Pool;
let keys: { signingKey: string; publicKeyFile: string };
let audit: ServiceProcess;
let apiUrl: string;
let hec: LocalHec;
const token = 'auditor-token-0123456789abcdef';
const produced: string[] = [];

async function startAudit(port: number): Promise<ServiceProcess> {
  const process = await startProcess({
    name: 'audit',
    script: join(repoRoot, 'services/audit/src/main.ts'),
    env: {
      ...stack.commonEnv(),
      HTTP_PORT: String(port),
      AUDIT_SIGNING_KEY: keys.signingKey,
      CHECKPOINT_INTERVAL_MS: '500',
      QUERY_API_TOKEN_SHA256: createHash('sha256').update(token).digest('hex'),
      SIEM_HEC_URL: hec.url,
      // The local HEC stand-in speaks plain HTTP; the service refuses http:// without this.
      SIEM_HEC_ALLOW_HTTP: 'true',
      SIEM_HEC_TOKEN: hec.token,
      SIEM_EXPORT_INTERVAL_MS: '200',
    },
    readyUrl: `http://127.0.0.1:${port}/readyz`,
    // After a SIGKILL the new consumer joins the group only once the killed member's session
    // (30 s) expired, and readiness waits for the join.
    readyTimeoutMs: 90000,
  });
  stack.processes.push(process);
  return process;
}

before(async () => {
  stack = await TestStack.create();
  keys = await ledgerKeys();
  hec = new LocalHec();
  await hec.start();
  const port = await freePort();
  apiUrl = `http://127.0.0.1:${port}`;
  audit = await startAudit(port);
  ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
  kafka = new Kafka({
    clientId: 'ledger-e2e',
    brokers: [stackEnv().kafkaBrokers],
    logLevel: logLevel.NOTHING,
  });
});

after(async () => {
  await ledger?.end();
  await stack?.stop();
  await hec?.stop();
});

const cliEnv = () => ({ DATABASE_URL: stack.databaseUrl });

/** True while the audit service is inside a ledger-writing transaction (not a checkpoint's). */
async function inLedgerTransaction(): Promise<boolean> {
  const { rows } = await ledger.query(
    `SELECT 1 FROM pg_stat_activity
     WHERE datname = current_database() AND application_name = 'portcullis-audit'
       AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
       AND (query LIKE 'INSERT INTO audit.ledger_events%' OR query LIKE 'SELECT event_id FROM audit.ledger_events%'
            OR query LIKE 'INSERT INTO audit.chain_heads%' OR query LIKE 'UPDATE audit.chain_heads%'
            OR query LIKE 'SELECT chain_id, seq, head_hash FROM audit.chain_heads WHERE chain_id%')`,
  );
  return rows.length > 0;
}

async function ledgerCount(): Promise<{ rows: number; distinct: number }> {
  const { rows } = await ledger.query(
    'SELECT count(*)::int AS rows, count(DISTINCT event_id)::int AS distinct FROM audit.ledger_events',
  );
  return rows[0];
}

test('SIGKILL of the audit service mid-batch loses nothing and duplicates nothing', async () => {
  const producer = await auditProducer(kafka);
  try {
    let killed = false;
    produced.push(
      ...(await produceEvents(producer, stack.prefix, 4000, {
        onChunk: async (sent) => {
          // Kill it once it is busy writing, then bring it back on the same port.
          if (!killed && sent >= 1500) {
            // Mid-batch: the service holds an open ledger transaction (between BEGIN and COMMIT).
            await waitFor(
              'the audit service to be inside a ledger transaction',
              () => inLedgerTransaction(),
              {
                timeoutMs: 30000,
                intervalMs: 2,
              },
            );
            killed = true;
            await audit.stop('SIGKILL');
            audit = await startAudit(Number(new URL(apiUrl).port));
          }
        },
      })),
    );
  } finally {
    await producer.disconnect();
  }
  await waitFor('the ledger to catch up', () => ledgerCaughtUp(kafka, stack.prefix), { timeoutMs: 60000 });
  const counts = await ledgerCount();
  assert.deepEqual(counts, { rows: produced.length, distinct: produced.length });
  const { rows } = await ledger.query<{ missing: number }>(
    'SELECT count(*)::int AS missing FROM unnest($1::uuid[]) AS p(id) WHERE NOT EXISTS (SELECT 1 FROM audit.ledger_events e WHERE e.event_id = p.id)',
    [produced],
  );
  assert.equal(rows[0]!.missing, 0);
});

test('portcullis ledger verify passes on the database and on a dump, once checkpoints cover everything', async () => {
  await waitFor(
    'a checkpoint covering every row',
    async () => {
      const { rows } = await ledger.query(
        'SELECT body FROM audit.checkpoints ORDER BY checkpoint_id DESC LIMIT 1',
      );
      const heads = (rows[0]?.body.heads ?? []) as { seq: number }[];
      return heads.reduce((sum, h) => sum + h.seq, 0) === produced.length;
    },
    { timeoutMs: 20000 },
  );
  const fromDb = await ledgerCli(['verify', '--public-key', keys.publicKeyFile, '--json'], cliEnv());
  assert.equal(fromDb.code, 0, fromDb.stdout + fromDb.stderr);
  const report = JSON.parse(fromDb.stdout);
  assert.equal(report.rows, produced.length);
  assert.equal(report.unsignedRows, 0);

  const dir = await mkdtemp(join(tmpdir(), 'portcullis-dump-'));
  const dump = await ledgerCli(['dump', '--out', dir], cliEnv());
  assert.equal(dump.code, 0, dump.stderr);
  const fromDump = await ledgerCli(['verify', '--public-key', keys.publicKeyFile, '--export', dir], {});
  assert.equal(fromDump.code, 0, fromDump.stdout + fromDump.stderr);
  assert.match(fromDump.stdout, new RegExp(`^OK: ${produced.length} rows`));

  // One character changed in the export is found and located.
  const file = join(dir, 'ledger-rows.jsonl');
  const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
  const victim = JSON.parse(lines[100]!);
  victim.payload.decision.outcome = victim.payload.decision.outcome === 'allow' ? 'deny' : 'allow';
  lines[100] = JSON.stringify(victim);
  await writeFile(file, `${lines.join('\n')}\n`);
  const broken = await ledgerCli(['verify', '--public-key', keys.publicKeyFile, '--export', dir], {});
  assert.equal(broken.code, 1);
  assert.match(broken.stdout, /^BROKEN/);
  assert.match(
    broken.stdout,
    new RegExp(
      `first broken link: row_changed chain=${victim.chainId} seq=${victim.chainSeq} event=${victim.eventId}`,
    ),
  );
});

test('the query API needs the bearer token, answers problem+json, and pages by cursor', async () => {
  const noToken = await fetch(`${apiUrl}/v1/ledger/tool_calls`);
  assert.equal(noToken.status, 401);
  assert.match(noToken.headers.get('content-type') ?? '', /application\/problem\+json/);
  assert.equal(((await noToken.json()) as { code: string }).code, 'unauthorized');
  const wrong = await fetch(`${apiUrl}/v1/ledger/tool_calls`, {
    headers: { authorization: 'Bearer not-the-right-token-at-all' },
  });
  assert.equal(wrong.status, 401);

  const get = (path: string) => fetch(`${apiUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
  const badView = await get('/v1/ledger/pg_shadow');
  assert.equal(badView.status, 400);
  assert.equal(((await badView.json()) as { code: string }).code, 'bad_query');
  const badCursor = await get('/v1/ledger/tool_calls?cursor=bm9wZQ');
  assert.equal(badCursor.status, 400);
  // Well-formed but forged: a time Postgres cannot read is the same 400, not a 500 from the database.
  const forged = Buffer.from(JSON.stringify({ t: 'x', k: 'y' })).toString('base64url');
  const forgedCursor = await get(`/v1/ledger/tool_calls?cursor=${forged}`);
  assert.equal(forgedCursor.status, 400);
  assert.equal(((await forgedCursor.json()) as { code: string }).code, 'bad_query');

  const seen = new Set<string>();
  let cursor: string | null = null;
  let pages = 0;
  do {
    const response = await get(`/v1/ledger/tool_calls?limit=700${cursor ? `&cursor=${cursor}` : ''}`);
    assert.equal(response.status, 200);
    const page = (await response.json()) as { items: { call_id: string }[]; nextCursor: string | null };
    for (const item of page.items) {
      assert.ok(!seen.has(item.call_id), 'a row appeared on two pages');
      seen.add(item.call_id);
    }
    cursor = page.nextCursor;
    pages++;
  } while (cursor);
  assert.equal(seen.size, produced.length);
  assert.equal(pages, Math.ceil(produced.length / 700));

  const denials = (await (await get('/v1/ledger/denials?agent=agt_3&limit=10000')).json()) as {
    items: { decision: string; agent_id: string }[];
  };
  const { rows } = await ledger.query(
    "SELECT count(*)::int AS n FROM audit.denials WHERE agent_id = 'agt_3'",
  );
  assert.equal(denials.items.length, rows[0].n);
  assert.ok(denials.items.every((d) => d.decision === 'deny' && d.agent_id === 'agt_3'));
});

test('portcullis ledger export writes CSV and JSON Lines, resumable by cursor', async () => {
  const first = await ledgerCli(
    ['export', '--view', 'deletes', '--format', 'jsonl', '--limit', '300', '--page-size', '128'],
    cliEnv(),
  );
  assert.equal(first.code, 0, first.stderr);
  const firstRows = first.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(firstRows.length, 300);
  const cursor = /next-cursor: (\S+)/.exec(first.stderr)?.[1];
  assert.ok(cursor, first.stderr);
  const rest = await ledgerCli(
    ['export', '--view', 'deletes', '--format', 'jsonl', '--cursor', cursor],
    cliEnv(),
  );
  const restRows = rest.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l));
  const { rows } = await ledger.query('SELECT count(*)::int AS n FROM audit.deletes');
  assert.equal(firstRows.length + restRows.length, rows[0].n);
  assert.equal(new Set([...firstRows, ...restRows].map((r) => r.call_id)).size, rows[0].n);

  const csv = await ledgerCli(
    ['export', '--view', 'tool_calls', '--format', 'csv', '--user', 'user-1'],
    cliEnv(),
  );
  assert.equal(csv.code, 0, csv.stderr);
  const lines = csv.stdout.trimEnd().split('\r\n');
  assert.match(lines[0]!, /^call_id,requested_at,agent_id,/);
  const expected = await ledger.query(
    "SELECT count(*)::int AS n FROM audit.tool_calls WHERE on_behalf_of = 'user-1'",
  );
  assert.equal(lines.length - 1, expected.rows[0].n);
  assert.ok(expected.rows[0].n > 0);
});

test('verify on the database names a row a superuser changed behind the trigger', async () => {
  const client = await ledger.connect();
  let target: { chain_id: string; chain_seq: string; event_id: string };
  try {
    const { rows } = await client.query(
      'SELECT chain_id, chain_seq, event_id FROM audit.ledger_events ORDER BY chain_id, chain_seq OFFSET 50 LIMIT 1',
    );
    target = rows[0];
    await client.query('SET session_replication_role = replica');
    await client.query(
      `UPDATE audit.ledger_events SET payload = jsonb_set(payload, '{tool,name}', '"harmless"') WHERE event_id = $1`,
      [target.event_id],
    );
  } finally {
    await client.query('RESET session_replication_role');
    client.release();
  }
  const result = await ledgerCli(['verify', '--public-key', keys.publicKeyFile], cliEnv());
  assert.equal(result.code, 1);
  assert.match(
    result.stdout,
    new RegExp(
      `first broken link: row_changed chain=${target.chain_id} seq=${target.chain_seq} event=${target.event_id}`,
    ),
  );
});

test('the running service exports completed calls to Splunk HEC as OCSF', async () => {
  const producer = await auditProducer(kafka);
  const completedIds = new Set<string>();
  try {
    const messages = [];
    for (let i = 0; i < 200; i++) {
      const requested = loadEvent(10_000 + i);
      const completed = completedEvent(requested, { durationMs: 2 });
      completedIds.add(completed.eventId);
      messages.push(
        { key: requested.callId, value: JSON.stringify(requested) },
        { key: completed.callId, value: JSON.stringify(completed) },
      );
    }
    await producer.send({ topic: topicName(stack.prefix, Topics.audit), acks: -1, messages });
  } finally {
    await producer.disconnect();
  }
  await waitFor(
    'HEC to index every completed call',
    () => [...completedIds].every((id) => hec.uids().has(id)),
    { timeoutMs: 30000 },
  );
  const denied = hec.indexed.filter(
    (e) => completedIds.has((e.metadata as { uid: string }).uid) && e.status_id === 2,
  );
  assert.ok(denied.length > 0 && denied.every((e) => /denied by policy/.test(String(e.status_detail))));
});
