import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { waitFor } from '@portcullis/testing';
import pg from 'pg';
import { connectAgent } from '../support/agent.ts';
import { TestStack } from '../support/stack.ts';

// SIGTERM drains a broker: readiness turns 503 first, the call in flight completes, and its
// audit events (request and outcome) reach the ledger before the process exits.

let stack: TestStack;
let ledger: pg.Pool;

before(async () => {
  stack = await TestStack.create();
  await stack.startUpstream();
  await stack.startCoreServices();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo records' }],
    agents: [{ name: 'drainer', owner: 'carol@example.com', entitlements: { demo: ['read'] } }],
  });
  ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
});

after(async () => {
  await ledger?.end();
  await stack?.stop();
});

test('SIGTERM: readiness goes 503 first and the in-flight call keeps its audit events', async () => {
  const key = await stack.issueKey('drainer');
  const broker = await stack.startBroker({ SHUTDOWN_DRAIN_MS: '1500' });
  const client = await connectAgent(broker.url, key, 'drain-agent');

  const inFlight = client.callTool({ name: 'slow_read', arguments: { ms: 3000 } }) as Promise<CallToolResult>;
  await waitFor('the slow call to be recorded as requested', async () => {
    const { rows } = await ledger.query(
      "SELECT 1 FROM audit.ledger_events WHERE event_type = 'tool_call.requested'",
    );
    return rows.length === 1;
  });

  broker.process.child.kill('SIGTERM');
  const readiness = await waitFor('readiness to report 503', async () => {
    const response = await fetch(`${broker.url}/readyz`);
    return response.status === 503 && ((await response.json()) as { status: string });
  });
  assert.equal(readiness.status, 'shutting_down');

  const result = await inFlight;
  assert.equal(result.isError, undefined);
  assert.equal(await broker.process.exited, 0, broker.process.output().slice(-2000));
  if (process.env.DEBUG_SHUTDOWN) console.log(broker.process.output());

  const calls = await waitFor('the outcome in the ledger', async () => {
    const current = await ledger.query<{ tool: string; outcome: string }>(
      'SELECT tool, outcome FROM audit.tool_calls',
    );
    return current.rows[0]?.outcome === 'succeeded' && current.rows;
  });
  assert.deepEqual(calls, [{ tool: 'slow_read', outcome: 'succeeded' }]);
  await client.close().catch(() => {});
});
