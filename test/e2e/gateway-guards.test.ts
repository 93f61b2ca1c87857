import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { type CallToolResult, McpError } from '@modelcontextprotocol/sdk/types.js';
import { waitFor } from '@portcullis/testing';
import pg from 'pg';
import { connectAgent } from '../support/agent.ts';
import { scrapeMetrics } from '../support/metrics.ts';
import { TestStack } from '../support/stack.ts';

// The gateway's guards, through a real broker: DLP on the result path (a fake AWS credential
// planted upstream is redacted before the agent and the ledger see it), Host/Origin protection
// against DNS rebinding, and rate limits per agent and per tool.

const accessKeyId = ['AKIA', 'IOSFODNN7EXAMPLE'].join('');
const secretAccessKey = ['wJalrXUtnFEMI/K7MDENG/', 'bPxRfiCYEXAMPLEKEY'].join('');

let stack: TestStack;
let ledger: pg.Pool;
let brokerUrl: string;
let key: string;
let hastyKey: string;
let browsedKey: string;
let meteredKey: string;

before(async () => {
  stack = await TestStack.create();
  await stack.startUpstream();
  await stack.startCoreServices();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo records' }],
    agents: [
      { name: 'deployer', owner: 'erin@example.com', entitlements: { demo: ['read'] } },
      { name: 'hasty', owner: 'erin@example.com', entitlements: { demo: ['read', 'write'] } },
      { name: 'browsed', owner: 'erin@example.com', entitlements: { demo: ['read', 'write'] } },
      { name: 'metered', owner: 'erin@example.com', entitlements: { demo: ['read'] } },
    ],
  });
  key = await stack.issueKey('deployer');
  hastyKey = await stack.issueKey('hasty');
  browsedKey = await stack.issueKey('browsed');
  meteredKey = await stack.issueKey('metered');
  const perCall = (burst: number) => ({ limit: 60, periodMs: 60_000, burst });
  brokerUrl = (
    await stack.startBroker({
      RATE_LIMIT_CLASSES: JSON.stringify({ standard: { perAgent: perCall(5), perTool: perCall(3) } }),
    })
  ).url;
  ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
});

after(async () => {
  await ledger?.end();
  await stack?.stop();
});

describe('DLP', () => {
  test('a secret planted in an upstream result is redacted before the agent and the ledger see it', async () => {
    const client = await connectAgent(brokerUrl, key, 'dlp-agent');
    const result = (await client.callTool({ name: 'read_deploy_config', arguments: {} })) as CallToolResult;
    await client.close();

    const seen = JSON.stringify(result);
    assert.equal(seen.includes(accessKeyId), false, 'the access key id reached the agent');
    assert.equal(seen.includes(secretAccessKey), false, 'the secret key reached the agent');
    assert.deepEqual(result.content, [
      {
        type: 'text',
        text: 'aws_access_key_id=[REDACTED:aws_access_key]\naws_secret_access_key=[REDACTED:aws_secret_key]',
      },
    ]);
    assert.deepEqual(result.structuredContent, {
      region: 'eu-west-1',
      bucket: 'demo-artifacts',
      accessKeyId: '[REDACTED:aws_access_key]',
      secretAccessKey: '[REDACTED:aws_secret_key]',
    });

    const completed = await waitFor('the completed event in the ledger', async () => {
      const { rows } = await ledger.query<{ payload: { redactions?: Record<string, number> } }>(
        "SELECT payload FROM audit.ledger_events WHERE event_type = 'tool_call.completed'",
      );
      return rows[0];
    });
    assert.deepEqual(completed.payload.redactions, { aws_access_key: 2, aws_secret_key: 2 });
    const { rows } = await ledger.query<{ text: string }>(
      'SELECT payload::text AS text FROM audit.ledger_events',
    );
    for (const row of rows) {
      assert.equal(row.text.includes(accessKeyId), false);
      assert.equal(row.text.includes(secretAccessKey), false);
    }
    const call = await ledger.query<{ outcome: string }>('SELECT outcome FROM audit.tool_calls');
    assert.deepEqual(call.rows, [{ outcome: 'succeeded' }]);
  });

  test('a clean result passes through unchanged and records no redactions', async () => {
    const client = await connectAgent(brokerUrl, key, 'dlp-agent-2');
    const result = (await client.callTool({
      name: 'read_record',
      arguments: { id: 'r-1' },
    })) as CallToolResult;
    await client.close();
    assert.deepEqual(result.content, [{ type: 'text', text: 'The first record' }]);
    const { rows } = await waitFor('two completed events', async () => {
      const found = await ledger.query<{ payload: { redactions?: unknown } }>(
        "SELECT payload FROM audit.ledger_events WHERE event_type = 'tool_call.completed' ORDER BY occurred_at",
      );
      return found.rows.length === 2 && found;
    });
    assert.equal(rows[1]?.payload.redactions, undefined);
  });

  test("what DLP took out of a read's arguments is counted in the ledger, never shown", async () => {
    const token = ['ghp_', 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'].join('');
    const client = await connectAgent(brokerUrl, key, 'dlp-agent-3');
    // A read's default: secrets in its arguments are redacted before they go upstream.
    await client.callTool({ name: 'read_record', arguments: { id: `r-1 ${token}` } });
    await client.close();
    const completed = await waitFor('the third completed event', async () => {
      const found = await ledger.query<{ payload: { argumentRedactions?: Record<string, number> } }>(
        "SELECT payload FROM audit.ledger_events WHERE event_type = 'tool_call.completed' ORDER BY occurred_at",
      );
      return found.rows[2];
    });
    assert.deepEqual(completed.payload.argumentRedactions, { github_token: 1 });
    const { rows } = await ledger.query<{ text: string }>(
      'SELECT payload::text AS text FROM audit.ledger_events',
    );
    assert.ok(rows.every((row) => !row.text.includes(token.slice(4))));
  });
});

describe('Host and Origin (DNS rebinding)', () => {
  const initialize = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  };
  /** node:http, because fetch will not let a caller choose the Host header. */
  const post = (body: unknown, headers: Record<string, string>) =>
    new Promise<{ status: number; type: string; body: string; session?: string }>((resolve, reject) => {
      const url = new URL(`${brokerUrl}/mcp`);
      const req = httpRequest(
        {
          host: url.hostname,
          port: url.port,
          path: '/mcp',
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            authorization: `Bearer ${browsedKey}`,
            ...headers,
          },
        },
        (res) => {
          let text = '';
          res.on('data', (chunk: Buffer) => {
            text += chunk.toString('utf8');
          });
          res.on('end', () =>
            resolve({
              status: res.statusCode!,
              type: res.headers['content-type'] ?? '',
              body: text,
              session: res.headers['mcp-session-id'] as string | undefined,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify(body));
    });

  test('a foreign Host or Origin gets 403 problem+json and changes nothing', async () => {
    const port = new URL(brokerUrl).port;
    const rebound = await post(initialize, { host: `attacker.example:${port}` });
    assert.equal(rebound.status, 403);
    assert.match(rebound.type, /application\/problem\+json/);
    assert.equal((JSON.parse(rebound.body) as { code: string }).code, 'host_not_allowed');

    // A real session, then a write from a hostile page's origin with it: refused before it runs.
    const init = await post(initialize, { host: `127.0.0.1:${port}` });
    assert.equal(init.status, 200);
    const session = { 'mcp-session-id': init.session!, 'mcp-protocol-version': '2025-06-18' };
    await post(
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      { host: `127.0.0.1:${port}`, ...session },
    );
    const write = {
      jsonrpc: '2.0',
      id: 2,
      method: 'tools/call',
      params: { name: 'update_record', arguments: { id: 'r-1', text: 'defaced' } },
    };
    const hostile = await post(write, {
      host: `127.0.0.1:${port}`,
      origin: 'http://attacker.example',
      ...session,
    });
    assert.equal(hostile.status, 403);
    assert.equal((JSON.parse(hostile.body) as { code: string }).code, 'origin_not_allowed');

    const client = await connectAgent(brokerUrl, browsedKey, 'rebinding-check');
    const record = (await client.callTool({
      name: 'read_record',
      arguments: { id: 'r-1' },
    })) as CallToolResult;
    await client.close();
    assert.deepEqual(record.content, [{ type: 'text', text: 'The first record' }]);
    const writes = await ledger.query(
      "SELECT 1 FROM audit.tool_calls WHERE agent_name = 'browsed' AND tool = 'update_record'",
    );
    assert.equal(writes.rows.length, 0, 'the refused write reached the ledger');
  });
});

describe('rate limits', () => {
  test('over the per-tool limit: a retryable JSON-RPC error with retry-after; other tools still run', async () => {
    const refusals = async () =>
      (await scrapeMetrics(brokerUrl))('portcullis_gateway_rate_limit_refusals_total', {
        reason: 'tool_limit',
      });
    const refusedBefore = await refusals();
    const client = await connectAgent(brokerUrl, hastyKey, 'hasty-agent');
    for (let i = 0; i < 3; i++) {
      const ok = (await client.callTool({ name: 'read_record', arguments: { id: 'r-2' } })) as CallToolResult;
      assert.notEqual(ok.isError, true);
    }
    const error = await client.callTool({ name: 'read_record', arguments: { id: 'r-2' } }).then(
      () => assert.fail('the fourth call should be rate limited'),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof McpError, String(error));
    assert.equal(error.code, -32029);
    const data = error.data as { code: string; retryable: boolean; retryAfterMs: number; scope: string };
    assert.equal(data.code, 'rate_limited');
    assert.equal(data.retryable, true);
    assert.equal(data.scope, 'tool');
    assert.equal((await refusals()) - refusedBefore, 1, 'the refusal is counted in /metrics');
    assert.ok(data.retryAfterMs > 0 && data.retryAfterMs <= 1000, String(data.retryAfterMs));

    // Another tool has its own allowance; then the per-agent limit (5) refuses everything.
    assert.notEqual(
      ((await client.callTool({ name: 'list_records', arguments: {} })) as CallToolResult).isError,
      true,
    );
    assert.notEqual(
      ((await client.callTool({ name: 'list_records', arguments: {} })) as CallToolResult).isError,
      true,
    );
    const agentLimited = await client
      .callTool({ name: 'update_record', arguments: { id: 'x', text: 'y' } })
      .then(
        () => assert.fail('the sixth call should be refused by the agent limit'),
        (caught: unknown) => caught as McpError,
      );
    assert.equal((agentLimited.data as { scope: string }).scope, 'agent');
    await client.close();

    // The refused calls are on record as allowed by policy but not executed, with the reason.
    const rows = await waitFor('the hasty calls in the ledger', async () => {
      const found = await ledger.query<{ tool: string; outcome: string; code: string | null }>(
        `SELECT t.tool, t.outcome, c.payload -> 'error' ->> 'code' AS code
         FROM audit.tool_calls t JOIN audit.ledger_events c
           ON c.call_id = t.call_id AND c.event_type = 'tool_call.completed'
         WHERE t.agent_name = 'hasty' ORDER BY t.requested_at`,
      );
      return found.rows.length === 7 && found.rows;
    });
    assert.deepEqual(
      rows.map((row) => [row.tool, row.outcome, row.code]),
      [
        ['read_record', 'succeeded', null],
        ['read_record', 'succeeded', null],
        ['read_record', 'succeeded', null],
        ['read_record', 'not_executed', 'rate_limited'],
        ['list_records', 'succeeded', null],
        ['list_records', 'succeeded', null],
        ['update_record', 'not_executed', 'rate_limited'],
      ],
    );
  });
});

describe('metrics', () => {
  test('decisions, outcomes, step durations and DLP redactions are counted in /metrics', async () => {
    const before = await scrapeMetrics(brokerUrl);
    const client = await connectAgent(brokerUrl, meteredKey, 'metered-agent');
    await client.callTool({ name: 'read_deploy_config', arguments: {} });
    await client.callTool({ name: 'read_record', arguments: { id: 'r-1' } });
    // Read-only agent, a write tool: the policy denies it.
    const denied = (await client.callTool({
      name: 'update_record',
      arguments: { id: 'r-1', title: 'x' },
    })) as CallToolResult;
    assert.equal(denied.isError, true);
    const during = await scrapeMetrics(brokerUrl);
    await client.close();

    const added = (name: string, labels?: Record<string, string>) =>
      during(name, labels) - before(name, labels);
    assert.equal(added('portcullis_gateway_decisions_total', { app: 'demo', decision: 'allow' }), 2);
    assert.equal(added('portcullis_gateway_decisions_total', { app: 'demo', decision: 'deny' }), 1);
    assert.equal(added('portcullis_gateway_calls_total', { app: 'demo', outcome: 'succeeded' }), 2);
    assert.equal(added('portcullis_gateway_calls_total', { app: 'demo', outcome: 'not_executed' }), 1);
    assert.equal(added('portcullis_gateway_call_duration_seconds_count', { outcome: 'succeeded' }), 2);
    for (const [step, count] of [
      ['policy', 3],
      ['audit', 3],
      ['upstream', 2],
    ] as const) {
      assert.equal(added('portcullis_gateway_step_duration_seconds_count', { step }), count, step);
      assert.ok(added('portcullis_gateway_step_duration_seconds_sum', { step }) > 0, step);
    }
    for (const detector of ['aws_access_key', 'aws_secret_key'])
      assert.equal(added('portcullis_dlp_redactions_total', { detector, direction: 'result' }), 2, detector);
    // Kafka is up in kafka mode: nothing is spooled; the connected client's session is held here.
    assert.equal(during('portcullis_audit_spooling'), 0);
    assert.equal(during('portcullis_audit_spool_events'), 0);
    assert.ok(during('portcullis_gateway_sessions') >= 1);
  });
});
