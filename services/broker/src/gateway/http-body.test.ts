import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { describe, it } from 'node:test';
import { BodyError, nestingDepth, readJsonBody } from './http-body.ts';
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

describe('readJsonBody', { timeout: 20_000 }, () => {
  const limits = { maxBytes: 1000, maxDepth: 8 };

  /** Sends `head` and then each part to a real server; resolves with what readJsonBody made of it. */
  async function read(head: string, parts: string[], end = true): Promise<unknown> {
    let settle!: (outcome: { value?: unknown; error?: unknown }) => void;
    const outcome = new Promise<{ value?: unknown; error?: unknown }>((resolve) => {
      settle = resolve;
    });
    let reading!: () => void;
    const started = new Promise<void>((resolve) => {
      reading = resolve;
    });
    const server = createServer((req: IncomingMessage, res) => {
      reading();
      readJsonBody(req, limits).then(
        (value) => settle({ value }),
        (error: unknown) => settle({ error }),
      );
      res.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    socket.on('error', () => {});
    socket.write(head);
    for (const part of parts) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      socket.write(part);
    }
    // Gone only once the server is reading: a connection closed before its request was parsed
    // never reaches readJsonBody at all.
    if (!end) {
      await started;
      socket.destroy();
    }
    const result = await outcome;
    socket.destroy();
    server.close();
    if (result.error !== undefined) throw result.error;
    return result.value;
  }
  const chunked = 'POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n';
  const chunk = (text: string) => `${text.length.toString(16)}\r\n${text}\r\n`;

  it('joins a body that arrives in several chunks', async () => {
    const value = await read(chunked, [chunk('{"a":'), chunk('[1,2]'), chunk('}'), '0\r\n\r\n']);
    assert.deepEqual(value, { a: [1, 2] });
  });

  it('refuses a chunked body past the limit with 413 once it passes it, without waiting for its end', async () => {
    const big = `"${'x'.repeat(600)}"`;
    await assert.rejects(
      read(chunked, [chunk(big), chunk(big)]),
      (error: unknown) => error instanceof BodyError && error.status === 413,
    );
  });

  it('rejects, rather than waits forever, when the client goes away mid-body', async () => {
    await assert.rejects(
      read(chunked, [chunk('{"a":')], false),
      (error: unknown) => !(error instanceof BodyError),
    );
  });
});
