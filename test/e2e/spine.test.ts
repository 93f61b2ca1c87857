import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { parseAgentKey } from '@portcullis/contracts';
import { waitFor } from '@portcullis/testing';
import pg from 'pg';
import { connectAgent as connectBrokerAgent, rawInitialize } from '../support/agent.ts';
import { TestStack } from '../support/stack.ts';

// The walking skeleton, end to end: an agent using the official MCP SDK client reaches the demo
// upstream through the broker; policy decides in-process; the ledger records every call.

interface ToolCallRow {
  call_id: string;
  agent_id: string;
  agent_name: string;
  tool: string;
  action_class: string;
  decision: string;
  reason_codes: string[];
  policy_revision: string;
  outcome: string;
}

let stack: TestStack;
let brokerUrl: string;
let readerKey: string;
let otherKey: string;
let ledger: pg.Pool;

const connectAgent = (key: string) => connectBrokerAgent(brokerUrl, key);

async function ledgerRows(): Promise<ToolCallRow[]> {
  const { rows } = await ledger.query<ToolCallRow>('SELECT * FROM audit.tool_calls ORDER BY requested_at');
  return rows;
}

/** Waits until the ledger holds `count` calls, all with a known outcome. */
function ledgerWithCalls(count: number): Promise<ToolCallRow[]> {
  return waitFor(`${count} completed calls in the ledger`, async () => {
    const rows = await ledgerRows();
    return rows.length === count && rows.every((row) => row.outcome !== 'pending') && rows;
  });
}

before(async () => {
  stack = await TestStack.create();
  await stack.startUpstream();
  await stack.startCoreServices();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo records' }],
    agents: [
      { name: 'reader', owner: 'alice@example.com', entitlements: { demo: ['read'] } },
      { name: 'other', owner: 'bob@example.com', entitlements: { demo: ['read'] } },
    ],
  });
  readerKey = await stack.issueKey('reader');
  otherKey = await stack.issueKey('other');
  brokerUrl = (await stack.startBroker()).url;
  ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
});

after(async () => {
  await ledger?.end();
  await stack?.stop();
});

describe('an agent through the gateway', () => {
  let client: Client;
  let readResult: CallToolResult;
  let deleteResult: CallToolResult;

  before(async () => {
    client = await connectAgent(readerKey);
  });
  after(async () => {
    await client?.close();
  });

  test('(a) lists the upstream tools it could use: the read tools of a read-only agent', async () => {
    const { tools } = await client.listTools();
    assert.deepEqual(tools.map((tool) => tool.name).sort(), [
      'list_records',
      'read_deploy_config',
      'read_record',
      'slow_read',
    ]);
  });

  test('(b) calls an entitled read tool and gets the upstream answer', async () => {
    readResult = (await client.callTool({ name: 'read_record', arguments: { id: 'r-1' } })) as CallToolResult;
    assert.equal(readResult.isError, undefined);
    assert.deepEqual(readResult.content, [{ type: 'text', text: 'The first record' }]);
  });

  test('(c) calls a delete tool it is not entitled to and is denied with a reason code', async () => {
    deleteResult = (await client.callTool({
      name: 'delete_record',
      arguments: { id: 'r-1' },
    })) as CallToolResult;
    assert.equal(deleteResult.isError, true);
    const decision = deleteResult._meta?.['portcullis/decision'] as {
      reasons: string[];
      policyRevision: string;
    };
    assert.deepEqual(decision.reasons, ['no_entitlement']);
    assert.match(decision.policyRevision, /^[0-9a-f]{16}$/);
    // The record survived: the upstream never saw the call.
    const check = (await client.callTool({
      name: 'read_record',
      arguments: { id: 'r-1' },
    })) as CallToolResult;
    assert.deepEqual(check.content, [{ type: 'text', text: 'The first record' }]);
  });

  test('(d) finds the calls as ledger rows with agent, tool, action class, decision and outcome', async () => {
    const rows = await ledgerWithCalls(3);
    const [read, denied] = rows;
    assert.equal(read?.agent_name, 'reader');
    assert.equal(read?.tool, 'read_record');
    assert.equal(read?.action_class, 'read');
    assert.equal(read?.decision, 'allow');
    assert.deepEqual(read?.reason_codes, ['allowed']);
    assert.equal(read?.outcome, 'succeeded');
    assert.equal(denied?.agent_name, 'reader');
    assert.equal(denied?.tool, 'delete_record');
    assert.equal(denied?.action_class, 'delete');
    assert.equal(denied?.decision, 'deny');
    assert.deepEqual(denied?.reason_codes, ['no_entitlement']);
    assert.equal(denied?.outcome, 'not_executed');
    assert.equal(read?.policy_revision, denied?.policy_revision);
  });
});

describe('bad input on /mcp', () => {
  const initialize = {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
  };
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${brokerUrl}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        ...headers,
      },
      body,
    });
  const auth = (key: string) => ({ authorization: `Bearer ${key}` });

  test('no key: 401 with a Bearer challenge and problem+json', async () => {
    const response = await post(JSON.stringify(initialize));
    assert.equal(response.status, 401);
    assert.match(response.headers.get('www-authenticate') ?? '', /^Bearer /);
    assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/);
    assert.equal(((await response.json()) as { code: string }).code, 'missing_credentials');
  });

  test('wrong key: 401, whether malformed or well-formed', async () => {
    const wellFormed = `${readerKey.slice(0, -4)}AAAA`;
    for (const key of ['not-a-key', wellFormed, `${otherKey}x`]) {
      const response = await post(JSON.stringify(initialize), auth(key));
      assert.equal(response.status, 401, key);
      assert.equal(((await response.json()) as { code: string }).code, 'invalid_credentials');
    }
  });

  test('malformed JSON: 400 with a JSON-RPC parse error', async () => {
    const response = await post('{"jsonrpc": "2.0", "method": ', auth(readerKey));
    assert.equal(response.status, 400);
    const body = (await response.json()) as { error: { code: number } };
    assert.equal(body.error.code, -32700);
  });

  test('not JSON-RPC: rejected as an invalid request', async () => {
    const response = await post(JSON.stringify({ hello: 'world' }), auth(readerKey));
    assert.equal(response.status, 400);
    const body = (await response.json()) as { error: { code: number } };
    assert.equal(body.error.code, -32600);
  });

  test('unknown method: JSON-RPC method not found', async () => {
    const init = await post(JSON.stringify(initialize), auth(readerKey));
    assert.equal(init.status, 200);
    const session = init.headers.get('mcp-session-id')!;
    const headers = { ...auth(readerKey), 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' };
    await post(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }), headers);
    const response = await post(
      JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/explode', params: {} }),
      headers,
    );
    const body = (await response.json()) as { error: { code: number } };
    assert.equal(body.error.code, -32601);
  });

  test('a session id is useless to another agent', async () => {
    const init = await post(JSON.stringify(initialize), auth(readerKey));
    const session = init.headers.get('mcp-session-id')!;
    const response = await post(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }), {
      ...auth(otherKey),
      'mcp-session-id': session,
      'mcp-protocol-version': '2025-06-18',
    });
    assert.equal(response.status, 404);
    const forged = await post(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }), {
      ...auth(readerKey),
      'mcp-session-id': '00000000-0000-4000-8000-000000000000',
    });
    assert.equal(forged.status, 404);
  });

  test('oversized body: 413 with a JSON-RPC error', async () => {
    const huge = JSON.stringify({
      jsonrpc: '2.0',
      id: 3,
      method: 'tools/call',
      params: { name: 'read_record', arguments: { id: 'x'.repeat(2 * 1024 * 1024) } },
    });
    const response = await post(huge, auth(readerKey));
    assert.equal(response.status, 413);
    const body = (await response.json()) as { error: { code: number } };
    assert.equal(body.error.code, -32600);
  });

  test('none of it reached the ledger', async () => {
    // A sentinel call proves the pipeline is flowing; after it lands, nothing else may be there.
    const client = await connectAgent(otherKey);
    await client.callTool({ name: 'list_records', arguments: {} });
    await client.close();
    const rows = await ledgerWithCalls(4);
    assert.equal(rows.filter((row) => row.agent_name === 'other').length, 1);
  });
});

describe('suspension', () => {
  test('a suspended agent is refused at once, even within its session', async () => {
    const client = await connectAgent(otherKey);
    await stack.directoryCli(['suspend', 'other']);
    try {
      await waitFor('the suspension to reach the broker', async () => {
        try {
          await client.listTools();
          return false;
        } catch (error) {
          return /403|suspended/i.test(String(error));
        }
      });
    } finally {
      await stack.directoryCli(['activate', 'other']);
      await client.close().catch(() => {});
    }
  });
});

describe('key revocation', () => {
  const keyIdOf = (key: string) => parseAgentKey(key)?.keyId ?? '';
  const initializeWith = (key: string) => rawInitialize(brokerUrl, key);

  test("a key revoked through the CLI or the API stops working; the agent's other keys do not", async () => {
    const viaCli = await stack.issueKey('other');
    const viaApi = await stack.issueKey('other');
    await stack.directoryPublished();
    await waitFor('the new keys to be accepted', async () => (await initializeWith(viaApi)).status === 200);
    assert.equal((await initializeWith(viaCli)).status, 200);

    await stack.directoryCli(['revoke-key', 'other', keyIdOf(viaCli)]);
    const revoked = await stack.api('DELETE', `/v1/agents/other/keys/${keyIdOf(viaApi)}`);
    assert.equal(revoked.status, 204);
    for (const key of [viaCli, viaApi]) {
      await waitFor(
        'the revocation to reach the broker',
        async () => (await initializeWith(key)).status === 401,
      );
    }
    assert.equal((await initializeWith(otherKey)).status, 200);

    const unknown = await stack.api('DELETE', `/v1/agents/reader/keys/${keyIdOf(otherKey)}`);
    assert.equal(unknown.status, 404, 'a key of another agent is not found');
    await assert.rejects(stack.directoryCli(['revoke-key', 'other']), /missing key id/);
  });
});
