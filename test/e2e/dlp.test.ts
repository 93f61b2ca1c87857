import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { waitFor } from '@portcullis/testing';
import pg from 'pg';
import { connectAgent } from '../support/agent.ts';
import { TestStack } from '../support/stack.ts';

// DLP on the result path: a (fake) AWS credential planted in an upstream result is redacted before
// the agent sees it, and the ledger records how many findings were redacted, never the secret.

const accessKeyId = ['AKIA', 'IOSFODNN7EXAMPLE'].join('');
const secretAccessKey = ['wJalrXUtnFEMI/K7MDENG/', 'bPxRfiCYEXAMPLEKEY'].join('');

let stack: TestStack;
let ledger: pg.Pool;
let brokerUrl: string;
let key: string;

before(async () => {
  stack = await TestStack.create();
  await stack.startUpstream();
  await stack.startCoreServices();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo records' }],
    agents: [{ name: 'deployer', owner: 'erin@example.com', entitlements: { demo: ['read'] } }],
  });
  key = await stack.issueKey('deployer');
  brokerUrl = (await stack.startBroker()).url;
  ledger = new pg.Pool({ connectionString: stack.databaseUrl, max: 2 });
});

after(async () => {
  await ledger?.end();
  await stack?.stop();
});

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
  const result = (await client.callTool({ name: 'read_record', arguments: { id: 'r-1' } })) as CallToolResult;
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
