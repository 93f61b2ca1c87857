import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { type UpstreamCredentials, UpstreamError, type UpstreamSession } from './connection.ts';
import { createUpstreamConnector } from './connector.ts';
import { agentInit, memoryLogger } from './test-support.ts';

// Failing and hostile Streamable HTTP upstreams: a local node:http server that initializes
// correctly, then misbehaves per URL path. Every failure must become a clear UpstreamError, fast.

interface Seen {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: Record<string, unknown> | undefined;
}
const seen: Seen[] = [];
let server: http.Server;
let base: string;

const LIMIT = 64 * 1024;
const LEASE = 'Bearer lease-7f3a9c-secret';
const log = memoryLogger();
const leases: UpstreamCredentials = { forRequest: async () => ({ headers: { authorization: LEASE } }) };
const connector = createUpstreamConnector({
  credentials: leases,
  logger: log.logger,
  http: { maxMessageBytes: LIMIT, initializeTimeoutMs: 2000, reconnect: { initialMs: 50, maxMs: 200 } },
});

const json = (
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

function misbehave(path: string, id: unknown, req: http.IncomingMessage, res: http.ServerResponse): void {
  switch (path) {
    case '/ok':
      json(res, 200, { jsonrpc: '2.0', id, result: { ok: true } });
      return;
    case '/hang':
      return; // never answers
    case '/slow':
      setTimeout(() => json(res, 200, { jsonrpc: '2.0', id, result: { slow: true } }), 120);
      return;
    case '/garbage':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"jsonrpc":"2.0", this is not json');
      return;
    case '/html':
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body>Welcome to nginx</body></html>');
      return;
    case '/wrong-id':
      json(res, 200, { jsonrpc: '2.0', id: 'someone-else', result: {} });
      return;
    case '/no-id':
      json(res, 200, { jsonrpc: '2.0', result: {} });
      return;
    case '/http500':
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('Internal Server Error');
      return;
    case '/rpc-error-400':
      json(res, 400, {
        jsonrpc: '2.0',
        id: null,
        error: { code: -32000, message: 'Bad Request: nope' },
      });
      return;
    case '/close':
      req.socket.destroy();
      return;
    case '/sse-cut':
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}\n\n',
      );
      setTimeout(() => req.socket.destroy(), 50);
      return;
    case '/huge':
      json(res, 200, { jsonrpc: '2.0', id, result: { blob: 'x'.repeat(LIMIT * 2) } });
      return;
    case '/huge-chunked': {
      res.writeHead(200, { 'content-type': 'application/json' }); // no content-length: the bound counts bytes
      const chunk = 'x'.repeat(16 * 1024);
      res.write(`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"blob":"`);
      const timer = setInterval(() => {
        if (!res.write(chunk) || res.destroyed) clearInterval(timer);
      }, 1);
      res.on('close', () => clearInterval(timer));
      return;
    }
    case '/huge-sse':
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        `data: {"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":{"blob":"${'x'.repeat(LIMIT * 2)}"}}\n\n`,
      );
      res.end();
      return;
    case '/expire':
      json(res, 404, {
        jsonrpc: '2.0',
        id: null,
        error: { code: -32001, message: 'Session not found' },
      });
      return;
    case '/ping-flood':
      // Our answers to its pings: never answered (they stay in flight until their timeout).
      if (typeof id === 'string' && id.startsWith('flood-')) return;
      // 500 pings on the answer to a call, then the call's response.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let n = 0; n < 500; n++)
        res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id: `flood-${n}`, method: 'ping' })}\n\n`);
      res.end(`data: ${JSON.stringify({ jsonrpc: '2.0', id, result: { flooded: true } })}\n\n`);
      return;
    case '/sse-linger':
      // The response, then the stream stays open, silent.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ jsonrpc: '2.0', id, result: { lingering: true } })}\n\n`);
      keepOpen(res);
      return;
    case '/poll-linger':
    case '/poll':
      // 2025-11-25 polling: an event id, then the server closes; the answer comes on GET + Last-Event-ID.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.end('id: ev-1\nretry: 10\ndata: \n\n');
      pendingPoll = id;
      return;
    default:
      json(res, 200, { jsonrpc: '2.0', id, result: {} });
      return;
  }
}
let pendingPoll: unknown;
/** Answers an upstream keeps open after their response, until the client lets go. */
const heldOpen = new Set<http.ServerResponse>();
function keepOpen(res: http.ServerResponse): void {
  heldOpen.add(res);
  res.on('close', () => heldOpen.delete(res));
}
/** TCP connections the upstream has accepted. */
let connections = 0;

before(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const body = text ? (JSON.parse(text) as Record<string, unknown>) : undefined;
      const path = req.url ?? '/';
      seen.push({ method: req.method ?? '', path, headers: req.headers, body });
      if (req.method === 'DELETE') return void res.writeHead(200).end();
      if (req.method === 'GET') {
        if ((path === '/poll' || path === '/poll-linger') && req.headers['last-event-id'] === 'ev-1') {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          const answer = `id: ev-2\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: pendingPoll, result: { polled: true } })}\n\n`;
          // /poll-linger: the resumed stream stays open after the response.
          if (path === '/poll-linger') {
            res.write(answer);
            keepOpen(res);
          } else res.end(answer);
          return;
        }
        if (path === '/stream-bad-id') {
          // An event id node refuses as a header value, one notification, then the connection drops.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          const note = {
            jsonrpc: '2.0',
            method: 'notifications/message',
            params: { level: 'info', data: 'x' },
          };
          res.write(`id: a\u0001b\ndata: ${JSON.stringify(note)}\n\n`);
          setTimeout(() => req.socket.destroy(), 30);
          return;
        }
        if (path === '/stream-retry-0') {
          // Accepts the stream and ends it at once, asking for no wait before the next one.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end('retry: 0\n\n');
          return;
        }
        if (path === '/stream') {
          // The GET stream: one notification, then the connection drops; the reconnection must
          // carry Last-Event-ID, and gets the next notification.
          const last = req.headers['last-event-id'];
          const n = last === undefined ? 1 : Number(String(last).slice(1)) + 1;
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          const note = {
            jsonrpc: '2.0',
            method: 'notifications/message',
            params: { level: 'info', data: `n${n}` },
          };
          res.write(`id: s${n}\ndata: ${JSON.stringify(note)}\n\n`);
          setTimeout(() => req.socket.destroy(), 30);
          return;
        }
        return void res.writeHead(405).end();
      }
      if (body?.method === 'initialize') {
        const version = (body.params as { protocolVersion: string }).protocolVersion;
        const result = {
          protocolVersion: path === '/old' ? '2020-01-01' : version,
          capabilities: path === '/big-capabilities' ? { experimental: { padding: 'x'.repeat(20_000) } } : {},
          serverInfo: { name: 'hostile', version: '0' },
        };
        return json(
          res,
          200,
          { jsonrpc: '2.0', id: body.id, result },
          { 'mcp-session-id': `sess${path.replace(/\W/g, '-')}` },
        );
      }
      if (body && !('id' in body)) return void res.writeHead(202).end(); // notifications
      misbehave(path, body?.id, req, res);
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(async () => {
  await connector.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const open = (path: string) =>
  connector.open({ appId: 'hostile', transport: { type: 'http', url: `${base}${path}` } }, agentInit);
const failure = (expected: UpstreamError['failure']) => (error: unknown) => {
  assert.ok(error instanceof UpstreamError, `an UpstreamError, got ${String(error)}`);
  assert.equal(error.failure, expected, error.message);
  return true;
};
async function waitUntil(probe: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
const call = (session: UpstreamSession, timeoutMs = 2000, signal?: AbortSignal) =>
  session.request('tools/call', { name: 't', arguments: {} }, { timeoutMs, signal });

describe('HTTP upstream: a gated request (the gateway holds it until the call is on record)', () => {
  const calls = (path: string) =>
    seen.filter((entry) => entry.path === path && entry.body?.method === 'tools/call').length;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  /** A tools/call held behind a gate the test opens. */
  const held = (session: UpstreamSession) => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const answer = session.request('tools/call', { name: 't', arguments: {} }, { timeoutMs: 2000, gate });
    return { answer, release };
  };

  test('it is sent only once its gate opens', async () => {
    const session = await open('/gated-open');
    try {
      const { answer, release } = held(session);
      await sleep(100);
      assert.equal(calls('/gated-open'), 0, 'nothing reached the upstream while the gate was shut');
      release();
      assert.ok('result' in (await answer));
      assert.equal(calls('/gated-open'), 1);
    } finally {
      await session.close();
    }
  });

  test('a gate that fails: nothing is sent, not even a cancellation, and the session goes on', async () => {
    const session = await open('/gated-refused');
    try {
      const gate = new Promise<void>((_, reject) => setTimeout(() => reject(new Error('not admitted')), 50));
      await assert.rejects(
        session.request('tools/call', { name: 't', arguments: {} }, { timeoutMs: 2000, gate }),
        failure('cancelled'),
      );
      await sleep(100);
      const after = seen.filter((entry) => entry.path === '/gated-refused' && entry.method === 'POST');
      assert.deepEqual(
        after.map((entry) => entry.body?.method),
        ['initialize', 'notifications/initialized'],
        'no tools/call and no notifications/cancelled',
      );
      assert.ok('result' in (await call(session)), 'the next call goes through');
    } finally {
      await session.close();
    }
  });

  test('its pooled connection closing while it waits: it goes on a fresh one, after the gate', async () => {
    const session = await open('/gated-reconnect');
    try {
      const { answer, release } = held(session);
      await sleep(50);
      server.closeIdleConnections(); // the socket the waiting request holds is idle to the server
      await sleep(100);
      assert.equal(calls('/gated-reconnect'), 0, 'nothing sent while the gate was shut');
      release();
      assert.ok('result' in (await answer), 'sent once the gate opened, on a new connection');
      assert.equal(calls('/gated-reconnect'), 1);
    } finally {
      await session.close();
    }
  });

  test('the deadline starts over when the gate opens: the upstream gets all of it', async () => {
    const session = await open('/slow');
    try {
      const gate = new Promise<void>((resolve) => setTimeout(resolve, 150));
      // Counted from the call, the 200 ms would end before the slow answer (150 + 120 ms).
      const answer = await session.request(
        'tools/call',
        { name: 't', arguments: {} },
        { timeoutMs: 200, gate },
      );
      assert.deepEqual('result' in answer && answer.result, { slow: true });
    } finally {
      await session.close();
    }
  });

  test('a held request is built on an idle pooled connection, ready to go', async () => {
    const session = await open('/gated-ready');
    try {
      const before = connections;
      const { answer, release } = held(session);
      await sleep(50);
      // The held request has taken the session's idle connection: another call needs a new one.
      assert.ok('result' in (await call(session)));
      assert.equal(connections, before + 1, "the idle connection was the held request's");
      release();
      assert.ok('result' in (await answer));
      assert.equal(calls('/gated-ready'), 2);
    } finally {
      await session.close();
    }
  });

  test('with no idle connection to hold, none is opened before the gate opens', async () => {
    const session = await open('/gated-no-idle');
    try {
      server.closeIdleConnections();
      await sleep(50); // the client sees its pooled sockets close
      const before = connections;
      const { answer, release } = held(session);
      await sleep(100);
      assert.equal(connections, before, 'no connection opened (or queued for) while held');
      release();
      assert.ok('result' in (await answer));
      assert.equal(connections, before + 1);
      assert.equal(calls('/gated-no-idle'), 1);
    } finally {
      await session.close();
    }
  });

  test('a request whose deadline passes while it waits for a connection is never sent, nor cancelled', async () => {
    const single = createUpstreamConnector({
      credentials: leases,
      logger: log.logger,
      maxSocketsPerUpstream: 1,
    });
    const session = await single.open(
      { appId: 'single', transport: { type: 'http', url: `${base}/slow` } },
      agentInit,
    );
    try {
      const from = seen.length;
      const first = call(session); // holds the one connection for 120 ms
      await assert.rejects(call(session, 50), failure('timeout'));
      assert.ok('result' in (await first));
      await sleep(150);
      const later = seen.slice(from).filter((entry) => entry.path === '/slow');
      assert.deepEqual(
        later.map((entry) => entry.body?.method),
        ['tools/call'],
        'only the first call went out: not the queued one, and no notifications/cancelled for it',
      );
    } finally {
      await session.close();
      await single.close();
    }
  });

  test('a request whose deadline passes while gated is never sent', async () => {
    const session = await open('/gated-late');
    try {
      const gate = new Promise<void>((resolve) => setTimeout(resolve, 300));
      await assert.rejects(
        session.request('tools/call', { name: 't', arguments: {} }, { timeoutMs: 100, gate }),
        failure('timeout'),
      );
      await gate;
      await sleep(100);
      assert.equal(calls('/gated-late'), 0);
      assert.ok(
        !seen.some(
          (entry) => entry.path === '/gated-late' && entry.body?.method === 'notifications/cancelled',
        ),
        'nothing to cancel: it never went out',
      );
    } finally {
      await session.close();
    }
  });
});

describe('HTTP upstream: protocol headers and the credential seam', () => {
  test('every request after initialize carries the session id, the version, Accept and the lease', async () => {
    const session = await open('/ok');
    assert.deepEqual(await call(session).then((r) => 'result' in r && r.result), { ok: true });
    await session.close();
    const mine = seen.filter((s) => s.path === '/ok');
    assert.deepEqual(
      mine.map((s) => s.method),
      ['POST', 'POST', 'POST', 'DELETE'],
    );
    assert.equal(mine[0]?.headers['mcp-session-id'], undefined);
    for (const request of mine) assert.equal(request.headers.authorization, LEASE);
    for (const request of mine.slice(1)) {
      assert.equal(request.headers['mcp-session-id'], 'sess-ok');
      assert.equal(request.headers['mcp-protocol-version'], agentInit.protocolVersion);
    }
    assert.equal(mine[1]?.body?.method, 'notifications/initialized');
    assert.equal(mine[2]?.headers.accept, 'application/json, text/event-stream');
    assert.equal(mine[2]?.headers['content-type'], 'application/json');
    assert.ok(!log.lines().some((line) => line.includes('lease-7f3a9c')), 'the lease never reaches the log');
  });

  test('a lease header node refuses (header injection) fails the call, and its value is not logged', async () => {
    const bad: UpstreamCredentials = {
      forRequest: async () => ({ headers: { authorization: 'Bearer x\r\nX-Evil: 1' } }),
    };
    const own = createUpstreamConnector({ credentials: bad, logger: log.logger });
    await assert.rejects(
      own.open({ appId: 'bad-lease', transport: { type: 'http', url: `${base}/ok` } }, agentInit),
      failure('unreachable'),
    );
    await own.close();
    assert.ok(!log.lines().some((line) => line.includes('X-Evil')));
    assert.ok(!seen.some((s) => s.headers['x-evil'] !== undefined));
  });

  test('a lease never replaces or doubles a header the protocol owns; its own headers still go', async () => {
    const pushy: UpstreamCredentials = {
      forRequest: async () => ({
        headers: {
          Authorization: LEASE,
          Accept: 'text/html',
          'Content-Type': 'text/plain',
          'Content-Length': '3',
          Host: 'evil.example',
          'MCP-Session-Id': 'lease-session',
          'Mcp-Protocol-Version': '1999-01-01',
          // Framing and hop-by-hop headers: a second framing would let the upstream split the request.
          'Transfer-Encoding': 'chunked',
          Connection: 'close',
          Upgrade: 'websocket',
          'X-Tenant': 'acme-old',
          // The same name in another case: one header, the last value (as node's header object did).
          'x-tenant': 'acme',
        },
      }),
    };
    const own = createUpstreamConnector({ credentials: pushy, logger: log.logger });
    const session = await own.open(
      { appId: 'pushy', transport: { type: 'http', url: `${base}/ok` } },
      agentInit,
    );
    const from = seen.length;
    assert.deepEqual(await call(session).then((r) => 'result' in r && r.result), { ok: true });
    await session.close();
    await own.close();
    const request = seen.slice(from).find((s) => s.method === 'POST');
    assert.ok(request, 'the call reached the upstream');
    // node joins a repeated accept or session id with ", ": one value each means one header each.
    assert.equal(request.headers.accept, 'application/json, text/event-stream');
    assert.equal(request.headers['content-type'], 'application/json');
    assert.equal(request.headers.host, new URL(base).host);
    assert.equal(request.headers['mcp-session-id'], 'sess-ok');
    assert.equal(request.headers['mcp-protocol-version'], agentInit.protocolVersion);
    assert.equal(request.headers['content-length'], String(Buffer.byteLength(JSON.stringify(request.body))));
    assert.equal(request.headers.authorization, LEASE);
    assert.equal(request.headers['x-tenant'], 'acme');
    assert.equal(request.headers['transfer-encoding'], undefined);
    assert.equal(request.headers.upgrade, undefined);
    assert.notEqual(request.headers.connection, 'close');
  });

  test('an upstream negotiating an unsupported version, or with huge capabilities, is refused at open', async () => {
    await assert.rejects(open('/old'), failure('protocol'));
    // Capabilities are kept with every session that opens the upstream: bounded (16 KB).
    await assert.rejects(open('/big-capabilities'), failure('protocol'));
  });

  test('an upstream that offers no GET stream (405) is left alone', async () => {
    const session = await open('/ok');
    const before = seen.filter((s) => s.method === 'GET' && s.path === '/ok').length;
    const detach = session.listen(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(seen.filter((s) => s.method === 'GET' && s.path === '/ok').length, before + 1);
    detach();
    await session.close();
  });

  test('the GET stream reconnects with backoff and Last-Event-ID while a listener is attached', async () => {
    const session = await open('/stream');
    const heard: unknown[] = [];
    const detach = session.listen((message) => heard.push(message.params?.data));
    const deadline = Date.now() + 5000;
    while (heard.length < 3 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    detach();
    assert.deepEqual(heard.slice(0, 3), ['n1', 'n2', 'n3']);
    const gets = seen.filter((s) => s.method === 'GET' && s.path === '/stream');
    assert.equal(gets[0]?.headers['last-event-id'], undefined);
    assert.equal(gets[1]?.headers['last-event-id'], 's1');
    assert.equal(gets[1]?.headers.accept, 'text/event-stream');
    assert.equal(gets[1]?.headers['mcp-session-id'], 'sess-stream');
    // Detached: no more reconnections.
    const count = gets.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(seen.filter((s) => s.method === 'GET' && s.path === '/stream').length, count);
    await session.close();
  });

  test('an event id that cannot be a Last-Event-ID header does not break the reconnection', async () => {
    const session = await open('/stream-bad-id');
    let heard = 0;
    const detach = session.listen(() => {
      heard++;
    });
    try {
      // Reconnected (without resuming) and heard again; with the id as a header, node refused
      // every reconnection and the stream stayed dead.
      await waitUntil(() => heard >= 2, 3000);
    } finally {
      detach();
      await session.close();
    }
  });

  test('the GET stream backs off however the upstream ends it, whatever its retry: asks', async () => {
    const session = await open('/stream-retry-0');
    const detach = session.listen(() => {});
    await new Promise((resolve) => setTimeout(resolve, 1000));
    detach();
    const gets = seen.filter((s) => s.method === 'GET' && s.path === '/stream-retry-0').length;
    // Backoff 50, 100, 200, 200… ms: about six in a second. `retry: 0` with the backoff reset on
    // every 200 made it hundreds.
    assert.ok(gets >= 2 && gets <= 10, `${gets} GET streams in one second`);
    await session.close();
  });

  test('an upstream flooding requests gets a bounded number of answers in flight, not one each', async () => {
    const session = await open('/ping-flood');
    try {
      const answer = await call(session);
      assert.deepEqual('result' in answer && answer.result, { flooded: true });
      await new Promise((resolve) => setTimeout(resolve, 500));
      const answers = seen.filter(
        (entry) => entry.path === '/ping-flood' && String(entry.body?.id).startsWith('flood-'),
      ).length;
      // Each answer is a POST of its own, held by this upstream: 500 of them before (a flood of
      // hundreds of thousands grew the broker by gigabytes); at most 64 at a time now.
      assert.ok(answers <= 64, `${answers} answers in flight`);
      assert.ok(log.lines().some((line) => line.includes('too many messages to the upstream in flight')));
    } finally {
      server.closeAllConnections();
      await session.close().catch(() => undefined);
    }
  });

  test('an SSE answer kept open after its response is cut after the linger, freeing its socket', async () => {
    const session = await open('/sse-linger');
    try {
      const answer = await call(session);
      assert.deepEqual('result' in answer && answer.result, { lingering: true });
      assert.equal(heldOpen.size, 1);
      // STREAM_LINGER_MS (5 s): a stream kept open (silent) after its response held its pooled
      // socket for good; enough of them and every call to the upstream waited for a socket.
      await waitUntil(() => heldOpen.size === 0, 8000);
    } finally {
      await session.close();
    }
  });

  test("a resumed answer's GET is cut as soon as its response has come", async () => {
    const session = await open('/poll-linger');
    try {
      const answer = await call(session);
      assert.deepEqual('result' in answer && answer.result, { polled: true });
      // Never pooled, so never drained: one open connection per such call, without bound, before.
      await waitUntil(() => heldOpen.size === 0, 1000);
    } finally {
      await session.close();
    }
  });

  test('a POST stream closed after an event id is resumed with GET + Last-Event-ID', async () => {
    const session = await open('/poll');
    const response = await call(session);
    assert.deepEqual('result' in response && response.result, { polled: true });
    await session.close();
  });
});

describe('HTTP upstream failures become UpstreamErrors', () => {
  test('(a) never answers: timeout, and notifications/cancelled reaches the upstream', async () => {
    const session = await open('/hang');
    const started = Date.now();
    await assert.rejects(call(session, 300), failure('timeout'));
    assert.ok(Date.now() - started < 3000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(call(session, 5000, controller.signal), failure('cancelled'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const calls = seen
      .filter((s) => s.path === '/hang' && s.body?.method === 'tools/call')
      .map((s) => s.body?.id);
    const cancels = seen.filter((s) => s.path === '/hang' && s.body?.method === 'notifications/cancelled');
    assert.deepEqual(
      cancels.map((s) => (s.body?.params as { requestId: unknown } | undefined)?.requestId),
      calls,
    );
    assert.deepEqual(
      cancels.map((s) => (s.body?.params as { reason: string } | undefined)?.reason),
      ['timeout', 'cancelled by the client'],
    );
    await session.close();
  });

  for (const path of ['/garbage', '/html', '/wrong-id', '/no-id', '/http500']) {
    test(`(b) ${path.slice(1)}: protocol`, async () => {
      const session = await open(path);
      await assert.rejects(call(session), failure('protocol'));
      await session.close();
    });
  }

  test('(b) an HTTP 400 whose body is a JSON-RPC error passes through as an error value', async () => {
    const session = await open('/rpc-error-400');
    const response = await call(session);
    assert.ok('error' in response);
    assert.equal(response.error.message, 'Bad Request: nope');
    await session.close();
  });

  test('(c) the upstream closes the socket: unreachable', async () => {
    const session = await open('/close');
    await assert.rejects(call(session), failure('unreachable'));
    await session.close();
  });

  test('(c) the connection drops in the middle of an SSE answer: unreachable', async () => {
    const session = await open('/sse-cut');
    await assert.rejects(call(session), failure('unreachable'));
    await session.close();
  });

  test('(c) nothing listens on the port: unreachable at open', async () => {
    const probe = http.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    await assert.rejects(
      connector.open(
        { appId: 'gone', transport: { type: 'http', url: `http://127.0.0.1:${port}/mcp` } },
        agentInit,
      ),
      failure('unreachable'),
    );
  });

  for (const path of ['/huge', '/huge-chunked', '/huge-sse']) {
    test(`(d) ${path.slice(1)}: a message over the bound is refused (protocol)`, async () => {
      const session = await open(path);
      await assert.rejects(call(session, 5000), failure('protocol'));
      await session.close();
    });
  }

  test('(e) 404 for the session: closed, onClosed once, and the session stays closed', async () => {
    const session = await open('/expire');
    const closed: UpstreamError[] = [];
    session.onClosed = (error) => closed.push(error);
    await assert.rejects(call(session), failure('closed'));
    await assert.rejects(call(session), failure('closed'));
    assert.equal(closed.length, 1);
    assert.equal(closed[0]?.failure, 'closed');
    await session.close();
  });
});
