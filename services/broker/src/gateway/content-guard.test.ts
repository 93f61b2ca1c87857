import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Decision } from '@portcullis/contracts';
import { obligationGuard, redacted, redactedError } from './content-guard.ts';

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

/** An allow whose obligation redacts these response paths, DLP detectors off. */
function redacting(...paths: string[]): Decision {
  return {
    decisionId: '0193a0a8-6b1c-7c3e-9a51-6f5d8e7b2c14',
    outcome: 'allow',
    reasons: ['allowed'],
    policyRevision: 'r1',
    obligations: {
      rateLimitClass: 'standard',
      redact: paths,
      dlp: {
        arguments: { secrets: 'allow', personal: 'allow' },
        results: { secrets: 'allow', personal: 'allow' },
      },
    },
  };
}

const DLP_META = 'portcullis/dlp';

test('a result withheld because a redaction path cannot be applied says so machine-readably', () => {
  const guarded = obligationGuard.result(redacting('salary'), { content: [{ type: 'text', text: '{}' }] });
  assert.equal(guarded.blocked?.code, 'redaction_unappliable');
  assert.equal(guarded.result.isError, true);
  assert.deepEqual((guarded.result._meta as Record<string, unknown>)[DLP_META], {
    code: 'redaction_unappliable',
    direction: 'result',
  });
  const [text] = guarded.result.content as { text: string }[];
  assert.match(text?.text ?? '', /\{"code":"redaction_unappliable","direction":"result"\}$/);
});

test("field redaction that breaks the output schema withholds structured content with DLP's details", () => {
  const outputSchema = {
    type: 'object',
    properties: { salary: { type: 'number' } },
    required: ['salary'],
  };
  const guarded = obligationGuard.result(
    redacting('$.salary'),
    { content: [{ type: 'text', text: '{"salary":1}' }], structuredContent: { salary: 1 } },
    outputSchema,
  );
  assert.equal(guarded.blocked?.code, 'dlp_structured_content_withheld');
  assert.equal(guarded.result.structuredContent, undefined);
  // One field in structuredContent, and the same one in the JSON text.
  const detail = { code: 'dlp_structured_content_withheld', redactions: { field: 2 } };
  assert.deepEqual((guarded.result._meta as Record<string, unknown>)[DLP_META], detail);
  const texts = (guarded.result.content as { text: string }[]).map((item) => item.text);
  assert.ok(texts.at(-1)?.endsWith(JSON.stringify(detail)), texts.at(-1));
});
