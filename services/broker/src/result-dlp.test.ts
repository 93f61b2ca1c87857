import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { inspectResult, redactUpstreamError } from './result-dlp.ts';

const accessKeyId = ['AKIA', 'IOSFODNN7EXAMPLE'].join('');

test('a result with a secret comes back redacted, with counts by type', () => {
  const inspected = inspectResult({ content: [{ type: 'text', text: `key ${accessKeyId}` }] });
  assert.deepEqual(inspected.result.content, [{ type: 'text', text: 'key [REDACTED:aws_access_key]' }]);
  assert.deepEqual(inspected.redactions, { aws_access_key: 1 });
});

test('a result too deep to inspect is withheld, never passed through', () => {
  let deep: unknown = accessKeyId;
  for (let i = 0; i < 400; i++) deep = { n: deep };
  const inspected = inspectResult({ content: [], structuredContent: deep as Record<string, unknown> });
  assert.equal(inspected.withheld?.code, 'dlp_uninspectable');
  assert.equal(inspected.result.isError, true);
  assert.equal(JSON.stringify(inspected.result).includes(accessKeyId), false);
});

test('upstream errors keep their code and lose their secrets', () => {
  const upstream = new McpError(ErrorCode.InvalidParams, `bad token ${accessKeyId}`, { echoed: accessKeyId });
  const redacted = redactUpstreamError(upstream) as McpError;
  assert.equal(redacted.code, ErrorCode.InvalidParams);
  assert.equal(redacted.message, `MCP error ${ErrorCode.InvalidParams}: bad token [REDACTED:aws_access_key]`);
  assert.deepEqual(redacted.data, { echoed: '[REDACTED:aws_access_key]' });
  assert.equal(
    redactUpstreamError(new Error(`fetch ${accessKeyId}`)).message,
    'fetch [REDACTED:aws_access_key]',
  );
});
