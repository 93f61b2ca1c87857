import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nestingDepth } from './http-body.ts';
import { classify, RpcError } from './json-rpc.ts';

describe('nestingDepth', () => {
  it('counts brackets outside strings only', () => {
    assert.equal(nestingDepth('{}'), 1);
    assert.equal(nestingDepth('{"a":[{"b":[1]}]}'), 4);
    assert.equal(nestingDepth('{"a":"[[[[{{{{"}'), 1);
    assert.equal(nestingDepth('{"a":"\\"[[["}'), 1);
    assert.equal(nestingDepth('[]'.repeat(3)), 1);
    assert.equal(nestingDepth(`${'['.repeat(10000)}${']'.repeat(10000)}`), 10000);
  });
});

describe('classify', () => {
  it('tells requests, notifications and responses apart', () => {
    assert.equal((classify({ jsonrpc: '2.0', id: 1, method: 'ping' }) as { kind: string }).kind, 'request');
    assert.equal(
      (classify({ jsonrpc: '2.0', method: 'notifications/initialized' }) as { kind: string }).kind,
      'notification',
    );
    assert.equal((classify({ jsonrpc: '2.0', id: 'x', result: {} }) as { kind: string }).kind, 'response');
  });
  for (const [label, body] of [
    ['a batch', [{ jsonrpc: '2.0', id: 1, method: 'ping' }]],
    ['no jsonrpc member', { id: 1, method: 'ping' }],
    ['array params', { jsonrpc: '2.0', id: 1, method: 'ping', params: [1] }],
    ['an object id', { jsonrpc: '2.0', id: {}, method: 'ping' }],
    ['a fractional id', { jsonrpc: '2.0', id: 1.5, method: 'ping' }],
    ['an empty method', { jsonrpc: '2.0', id: 1, method: '' }],
    ['a response without id', { jsonrpc: '2.0', result: {} }],
    ['a scalar', 42],
    ['null', null],
  ] as const)
    it(`refuses ${label}`, () => assert.ok(classify(body) instanceof RpcError));
});
