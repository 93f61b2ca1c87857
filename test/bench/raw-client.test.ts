/**
 * The bench's load generator must read every answer a node:http server gives it — framed by
 * Content-Length or chunked, split across TCP reads — and survive the server closing idle
 * keep-alive connections, or the bench measures errors instead of calls.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { RawClient } from './raw-client.ts';

let server: Server;
let url: string;
const seen: { sessionId: string | undefined; method: string }[] = [];

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const message = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const sessionHeader = req.headers['mcp-session-id'];
      seen.push({
        sessionId: typeof sessionHeader === 'string' ? sessionHeader : undefined,
        method: message.method,
      });
      if (message.id === undefined) {
        res.writeHead(202).end();
        return;
      }
      if (message.method === 'initialize') {
        const body = JSON.stringify({ jsonrpc: '2.0', id: message.id, result: {} });
        res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'session-1' }).end(body);
        return;
      }
      const text = message.params.arguments.message as string;
      const body = JSON.stringify({
        jsonrpc: '2.0',
        id: message.id,
        result: { content: [{ type: 'text', text }] },
      });
      if (message.id % 2 === 0) {
        // Chunked, in pieces sent apart so that they arrive in separate reads.
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write(body.slice(0, 10));
        setTimeout(() => res.end(body.slice(10)), 5);
      } else {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
        res.end(body);
      }
    });
  });
  // Idle connections are closed quickly, as node's default 5 s would be over a bench's pause.
  server.keepAliveTimeout = 50;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
});

const openConnections = () =>
  new Promise<number>((resolve, reject) =>
    server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
  );

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

test('initializes, carries the session id, and reads Content-Length and chunked answers', async () => {
  const client = new RawClient(url, { authorization: 'Bearer key' });
  try {
    await client.initialize();
    for (let i = 0; i < 6; i++) await client.call('echo');
    assert.deepEqual(
      seen.map((s) => s.method),
      ['initialize', 'notifications/initialized', ...Array(6).fill('tools/call')],
    );
    assert.equal(seen[0]?.sessionId, undefined);
    assert.ok(seen.slice(1).every((s) => s.sessionId === 'session-1'));
  } finally {
    client.close();
  }
});

test('calls in parallel use several connections and all complete', async () => {
  const client = new RawClient(url, {}, 4);
  try {
    await client.initialize();
    await Promise.all(Array.from({ length: 20 }, () => client.call('echo')));
  } finally {
    client.close();
  }
});

test('a connection the server closed while idle is not reused', async () => {
  const client = new RawClient(url, {});
  try {
    await client.initialize();
    await client.call('echo');
    // Past the keep-alive timeout (plus node's grace period): the server has closed it.
    const deadline = Date.now() + 5000;
    while ((await openConnections()) > 0) {
      assert.ok(Date.now() < deadline, 'the server did not close the idle connection');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await client.call('echo');
  } finally {
    client.close();
  }
});
