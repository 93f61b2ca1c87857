import assert from 'node:assert/strict';
import { test } from 'node:test';
import { auditText } from './audit-text.ts';

const jsonBytes = (text: string) => Buffer.byteLength(JSON.stringify(text)) - 2;

test('plain text passes unchanged', () => {
  assert.equal(auditText('upstream said no'), 'upstream said no');
});

test('NUL becomes U+FFFD and a lone surrogate is replaced', () => {
  assert.equal(auditText('a\u0000b'), 'a\uFFFDb');
  assert.equal(auditText('x\ud800y'), 'x\uFFFDy');
  assert.ok(auditText('\udc00\ud83d').isWellFormed());
});

test('the cut never splits a surrogate pair and keeps the JSON within the byte bound', () => {
  const emoji = '😀'; // two UTF-16 code units, four bytes
  const cut = auditText(`a${emoji.repeat(400)}`, 10);
  assert.ok(cut.isWellFormed());
  assert.equal(cut, `a${emoji.repeat(2)}`);
  assert.ok(jsonBytes(cut) <= 10);
});

test('characters JSON escapes count at their escaped size', () => {
  const controls = '\u0001'.repeat(1000); // each "\u0001" as JSON: six bytes
  const cut = auditText(controls, 1000);
  assert.equal(cut.length, 166);
  assert.ok(jsonBytes(cut) <= 1000);
  const cjk = '漢'.repeat(1000); // three bytes each
  assert.equal(auditText(cjk, 1000).length, 333);
});
