import assert from 'node:assert/strict';
import { test } from 'node:test';
import { actionClassOf } from './action-class.ts';
import { digestOf } from './gateway/enforcement.ts';

test('action class comes from the tool annotations', () => {
  assert.equal(actionClassOf({ readOnlyHint: true }), 'read');
  assert.equal(actionClassOf({ readOnlyHint: true, destructiveHint: true }), 'read');
  assert.equal(actionClassOf({ destructiveHint: true }), 'delete');
  assert.equal(actionClassOf({ readOnlyHint: false, destructiveHint: false }), 'write');
});

test('a tool that says nothing about itself needs a write entitlement, never just read', () => {
  assert.equal(actionClassOf(undefined), 'write');
  assert.equal(actionClassOf({}), 'write');
});

test('argument digests are canonical: key order does not matter, values do', () => {
  assert.equal(digestOf({ a: 1, b: { c: [1, 2], d: 'x' } }), digestOf({ b: { d: 'x', c: [1, 2] }, a: 1 }));
  assert.notEqual(digestOf({ a: 1 }), digestOf({ a: 2 }));
  assert.match(digestOf({}), /^[0-9a-f]{64}$/);
});
