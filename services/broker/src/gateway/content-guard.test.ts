import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redacted, redactedError } from './content-guard.ts';

/** Deeper than DLP inspects, and than a recursive walk (JSON.parse's reviver, say) survives. */
function nested(depth: number, inner: unknown): unknown {
  let value = inner;
  for (let level = 0; level < depth; level++) value = [value];
  return value;
}

test('a relayed message is redacted', () => {
  const message = {
    jsonrpc: '2.0',
    method: 'notifications/message',
    params: { level: 'info', data: 'mail alice@example.com' },
  };
  const safe = redacted(message);
  assert.ok(safe);
  assert.equal(safe.method, 'notifications/message');
  assert.doesNotMatch(JSON.stringify(safe), /alice@example\.com/);
});

test('a message too deep to inspect is undefined, never walked (no stack overflow)', () => {
  const message = {
    jsonrpc: '2.0',
    method: 'notifications/message',
    params: { level: 'info', data: nested(100_000, 'alice@example.com') },
  };
  assert.equal(redacted(message), undefined);
});

test('a message with more text than DLP reads is undefined', () => {
  assert.equal(redacted({ jsonrpc: '2.0', id: 1, result: { text: 'x'.repeat((8 << 20) + 1) } }), undefined);
});

test('an upstream error too deep to inspect keeps only its code', () => {
  assert.deepEqual(redactedError({ code: -32000, message: 'boom', data: nested(100_000, 'x') }), {
    code: -32000,
    message: '[REDACTED:uninspectable]',
  });
  assert.deepEqual(redactedError({ code: -32000, message: 'boom' }), { code: -32000, message: 'boom' });
});
