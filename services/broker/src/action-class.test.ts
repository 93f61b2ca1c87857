import assert from 'node:assert/strict';
import { test } from 'node:test';
import { actionClassOf } from './action-class.ts';
import { digestOf } from './gateway/enforcement.ts';

test('action class comes from the tool annotations', () => {
  assert.equal(actionClassOf({ readOnlyHint: true }), 'read');
  assert.equal(actionClassOf({ readOnlyHint: true, destructiveHint: true }), 'read');
  assert.equal(actionClassOf({ destructiveHint: true }), 'delete');
  assert.equal(actionClassOf({ readOnlyHint: false, destructiveHint: false }), 'write');
  assert.equal(actionClassOf({ destructiveHint: false }), 'write');
});

test("what a tool leaves unsaid takes the MCP schema's default: it may be destructive", () => {
  // readOnlyHint defaults to false and destructiveHint to true (MCP schema, ToolAnnotations).
  assert.equal(actionClassOf(undefined), 'delete');
  assert.equal(actionClassOf({}), 'delete');
  assert.equal(actionClassOf({ readOnlyHint: false }), 'delete');
});

test('argument digests are canonical: key order does not matter, values do', () => {
  assert.equal(digestOf({ a: 1, b: { c: [1, 2], d: 'x' } }), digestOf({ b: { d: 'x', c: [1, 2] }, a: 1 }));
  assert.notEqual(digestOf({ a: 1 }), digestOf({ a: 2 }));
  assert.match(digestOf({}), /^[0-9a-f]{64}$/);
});
