import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { McpError } from '@modelcontextprotocol/sdk/types.js';
import { Topics, topicName } from '@portcullis/contracts';
import { waitFor } from '@portcullis/testing';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { connectAgent } from '../support/agent.ts';
import { scrapeMetrics } from '../support/metrics.ts';
import { PrivateKafka } from '../support/private-kafka.ts';
import { TestStack } from '../support/stack.ts';

// Audit durability: with Kafka down, allowed calls still run because their events are fsync'd to
// the broker's local spool; when Kafka returns the spool drains in order and the ledger ends with
// every call. A full spool fails closed. Kafka here is the suite's own, so it can be killed.

let kafka: PrivateKafka;
let stack: TestStack;
let ledger: pg.Pool;
let key: string;

interface Row {
  call_id: string;
  tool: string;
  decision: string;
  outcome: string;
}

async function calls(): Promise<Row[]> {
  const { rows } = await ledger.query<Row>(
    'SELECT call_id, tool, decision, outcome FROM audit.tool_calls ORDER BY requested_at, call_id',
  );
  return rows;
}

function ledgerWith(count: number): Promise<Row[]> {
  return waitFor(
    `${count} completed calls in the ledger`,
    async () => {
      const rows = await calls();
      return rows.length === count && rows.every((row) => row.outcome !== 'pending') && rows;
    },
    { timeoutMs: 60000 },
  );
}

before(async () => {
  kafka = await PrivateKafka.start();
  stack = await TestStack.create({ kafkaBrokers: kafka.brokers });
  await stack.startUpstream();
  await stack.startCoreServices();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo records' }],
    agents: [{ name: 'spooler', owner: 'dora@example.com', entitlements: { demo: ['read', 'write'] } }],
  });
  key = await stack.issueKey('spooler');
  ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
});

after(async () => {
  await ledger?.end();
  await stack?.stop();
  await kafka?.destroy();
});

test('Kafka stopped mid-run: calls keep working, no audit event is lost, the spool drains in order', async () => {
  const broker = await stack.startBroker({ AUDIT_SEND_TIMEOUT_MS: '500', AUDIT_REPLAY_INTERVAL_MS: '250' });
  const client = await connectAgent(broker.url, key, 'spool-agent');
  const call = async (name: string, args: Record<string, unknown>) =>
    (await client.callTool({ name, arguments: args })) as CallToolResult;

  const before = await call('read_record', { id: 'r-1' });
  assert.deepEqual(before.content, [{ type: 'text', text: 'The first record' }]);
  await ledgerWith(1);

  await kafka.kill();
  const during: string[] = [];
  const started = performance.now();
  // The first call now waits out the 500 ms send timeout before its request event goes to the
  // spool, and only then may it run: the upstream itself, asked directly, must not have the record
  // before. (The broker prepares the upstream request meanwhile and holds it; ADR 0041.)
  const upstream = new Client({ name: 'upstream-observer', version: '1.0.0' });
  await upstream.connect(new StreamableHTTPClientTransport(new URL(stack.upstreamUrl)));
  const first = call('update_record', { id: 'spooled-first', text: 'written once recorded' });
  const hasFirst = async () =>
    ((await upstream.callTool({ name: 'read_record', arguments: { id: 'spooled-first' } })) as CallToolResult)
      .isError !== true;
  while (performance.now() - started < 350) {
    assert.equal(await hasFirst(), false, 'the upstream ran the call before its event was recorded');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assert.notEqual((await first).isError, true);
  assert.equal(await hasFirst(), true, 'and ran it once recorded');
  await upstream.close();
  during.push('spooled-first');
  for (let i = 0; i < 6; i++) {
    const id = `spooled-${i}`;
    const result = await call('update_record', { id, text: `written while Kafka was down (${i})` });
    assert.notEqual(result.isError, true, JSON.stringify(result));
    during.push(id);
  }
  // A denied call is recorded through the spool too.
  const denied = await call('delete_record', { id: 'r-1' });
  assert.equal(denied.isError, true);
  const elapsed = performance.now() - started;
  // The first call waits out the send timeout; the rest go straight to the spool.
  assert.ok(elapsed < 5000, `calls took ${elapsed} ms while Kafka was down`);
  const ready = await fetch(`${broker.url}/readyz`);
  assert.equal(ready.status, 200, 'a broker with room in its spool stays ready');
  const spooling = await scrapeMetrics(broker.url);
  assert.equal(spooling('portcullis_audit_spooling'), 1);
  assert.ok(spooling('portcullis_audit_spool_events') >= 8, 'at least every request is in the spool');
  assert.ok(spooling('portcullis_audit_spool_bytes') > 0);
  assert.equal((await calls()).length, 1, 'nothing reached the ledger while Kafka was down');

  await kafka.resume();
  const rows = await ledgerWith(9);
  await waitFor('the spool drained and left', async () => {
    const drained = await scrapeMetrics(broker.url);
    return drained('portcullis_audit_spooling') === 0 && drained('portcullis_audit_spool_events') === 0;
  });
  assert.deepEqual(
    rows.map((row) => [row.tool, row.decision, row.outcome]),
    [
      ['read_record', 'allow', 'succeeded'],
      ...during.map(() => ['update_record', 'allow', 'succeeded']),
      ['delete_record', 'deny', 'not_executed'],
    ],
  );
  const events = await ledger.query<{ n: string }>('SELECT count(*) AS n FROM audit.ledger_events');
  assert.equal(Number(events.rows[0]?.n), 18, 'every request and every outcome, once each');
  // Replay kept the order: on each partition, events sit in the order the broker emitted them,
  // so every call's request precedes its outcome.
  const placed = await ledger.query<{ source_partition: number; occurred_at: Date; event_type: string }>(
    'SELECT source_partition, occurred_at, event_type FROM audit.ledger_events ORDER BY source_partition, source_offset',
  );
  for (let i = 1; i < placed.rows.length; i++) {
    const [previous, current] = [placed.rows[i - 1]!, placed.rows[i]!];
    if (previous.source_partition !== current.source_partition) continue;
    assert.ok(
      previous.occurred_at <= current.occurred_at,
      `event ${i} on partition ${current.source_partition} is out of order`,
    );
  }

  // Back on Kafka: new calls go straight through again.
  await call('read_record', { id: 'spooled-0' });
  await ledgerWith(10);
  await client.close();
  await broker.process.stop('SIGTERM');
});

test('a full spool fails closed with a retryable error, and the refused call changes nothing', async () => {
  // Room for two events: one call's request and outcome.
  const broker = await stack.startBroker({
    AUDIT_SEND_TIMEOUT_MS: '300',
    AUDIT_REPLAY_INTERVAL_MS: '250',
    AUDIT_SPOOL_MAX_EVENTS: '3',
    // The whole spool for this one agent: this test is about the spool's own bound.
    AUDIT_SPOOL_AGENT_SHARE: '1',
  });
  const client = await connectAgent(broker.url, key, 'full-spool-agent');
  const baseline = (await calls()).length;
  await kafka.kill();
  const first = (await client.callTool({
    name: 'update_record',
    arguments: { id: 'kept', text: 'accepted into the spool' },
  })) as CallToolResult;
  assert.notEqual(first.isError, true);

  const refused = await client
    .callTool({ name: 'update_record', arguments: { id: 'refused', text: 'must never be written' } })
    .then(
      () => assert.fail('the call should have been refused'),
      (error: unknown) => error,
    );
  assert.ok(refused instanceof McpError, String(refused));
  assert.equal((await scrapeMetrics(broker.url))('portcullis_gateway_audit_refusals_total'), 1);
  assert.equal(refused.code, -32603);
  const data = refused.data as { code: string; retryable: boolean; retryAfterMs: number };
  assert.equal(data.code, 'audit_unavailable');
  assert.equal(data.retryable, true);
  assert.ok(data.retryAfterMs > 0);
  const notReady = await fetch(`${broker.url}/readyz`);
  assert.equal(notReady.status, 503, 'a broker that cannot take calls is not ready');

  await kafka.resume();
  await ledgerWith(baseline + 1);
  // Once drained, calls are accepted again; the refused record was never written upstream.
  const check = (await client.callTool({
    name: 'read_record',
    arguments: { id: 'refused' },
  })) as CallToolResult;
  assert.equal(check.isError, true);
  assert.deepEqual(check.content, [{ type: 'text', text: 'no record refused' }]);
  const rows = await ledgerWith(baseline + 2);
  assert.deepEqual(
    rows.slice(baseline).map((row) => row.tool),
    ['update_record', 'read_record'],
  );
  await client.close();
  await broker.process.stop('SIGTERM');
});

test('a restarted broker replays what its spool held and never re-sends what Kafka took', async () => {
  const spool = await stack.scratchDir('portcullis-spool-restart-');
  const env = { AUDIT_SEND_TIMEOUT_MS: '300', AUDIT_REPLAY_INTERVAL_MS: '250', AUDIT_SPOOL_DIR: spool };
  const first = await stack.startBroker(env);
  const client = await connectAgent(first.url, key, 'restart-agent');
  const baseline = (await calls()).length;
  await kafka.kill();
  await client.callTool({ name: 'update_record', arguments: { id: 'across-restart', text: 'spooled' } });
  await client.close();
  // The outcome event is recorded after the answer, in the background: the kill comes once the
  // spool holds it, so what is tested is the replay, not a race with that write.
  await waitFor("the call's outcome event in the spool", async () => {
    for (const file of await readdir(spool))
      if (
        file.startsWith('segment-') &&
        (await readFile(join(spool, file), 'latin1')).includes('tool_call.completed')
      )
        return true;
    return false;
  });
  // Kill, not SIGTERM: no chance to flush anything.
  first.process.child.kill('SIGKILL');
  await first.process.exited;
  assert.ok((await readdir(spool)).some((f) => f.startsWith('segment-')));

  await kafka.resume();
  // The broker starts while the ledger still misses the call; its spool replays it.
  const second = await stack.startBroker(env);
  const rows = await ledgerWith(baseline + 1);
  const callId = rows.at(-1)?.call_id;
  assert.equal(rows.at(-1)?.tool, 'update_record');
  await second.process.stop('SIGTERM');
  // A third start on the same spool finds it drained: what Kafka took is not sent again. The
  // ledger would hide a duplicate (it is idempotent by event id), so count on the topic itself.
  const third = await stack.startBroker(env);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await third.process.stop('SIGTERM');
  assert.equal(await messagesOnTopicFor(callId!), 2);
});

/** Reads the whole audit topic of this stack and counts the messages of one call. */
async function messagesOnTopicFor(callId: string): Promise<number> {
  const client = new Kafka({
    clientId: 'spool-test-reader',
    brokers: [kafka.brokers],
    logLevel: logLevel.NOTHING,
  });
  const admin = client.admin();
  await admin.connect();
  const topic = topicName(stack.prefix, Topics.audit);
  const offsets = await admin.fetchTopicOffsets(topic);
  await admin.disconnect();
  const total = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  const consumer = client.consumer({ groupId: `${stack.prefix}.reader` });
  await consumer.connect();
  await consumer.subscribe({ topics: [topic], fromBeginning: true });
  let seen = 0;
  let matching = 0;
  await consumer.run({
    eachMessage: async ({ message }) => {
      seen++;
      if (message.key?.toString('utf8') === callId) matching++;
    },
  });
  try {
    await waitFor(`all ${total} messages of the audit topic`, () => seen >= total, { timeoutMs: 30000 });
  } finally {
    await consumer.disconnect();
  }
  return matching;
}
