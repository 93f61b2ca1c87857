import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamError } from './connection.ts';
import { negotiatedResult } from './handshake.ts';

test("an upstream's refusal of initialize reaches the error (and the logs) through DLP, cut", () => {
  // Assembled here, so that the repository holds no string a scanner takes for a live token.
  const token = ['ghp_', 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'].join('');
  const refusal = (message: string) => () =>
    negotiatedResult(
      'app',
      { jsonrpc: '2.0', id: 1, error: { code: -32000, message } },
      ['2025-06-18'],
      'protocol',
    );
  assert.throws(refusal(`bad credentials ${token} for ops@example.com`), (error: unknown) => {
    assert.ok(error instanceof UpstreamError);
    assert.equal(error.failure, 'protocol');
    assert.equal(
      error.message,
      'upstream refused initialize: -32000 bad credentials [REDACTED:github_token] for [REDACTED:email]',
    );
    return true;
  });
  assert.throws(refusal('x'.repeat(5000)), (error: unknown) => {
    assert.ok((error as Error).message.length < 1100);
    return true;
  });
});
