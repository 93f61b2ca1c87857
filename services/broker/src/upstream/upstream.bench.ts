import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { createLogger } from '@portcullis/runtime';
import { closedLoop } from '@portcullis/testing';
import { createUpstreamConnector, noUpstreamAuth } from './connector.ts';

// Upstream-connection benchmark: tools/call echo on one established session through the raw
// Streamable HTTP session (http.ts) beside its anchor, the SDK's Client + StreamableHTTPClientTransport,
// against the same upstream in the same run. The upstream is a raw node:http JSON-RPC echo server
// in its own process, so that what is measured is the client side. A third column gives the floor:
// the same POST with bare node:http and a keep-alive agent, nothing parsed. Run: pnpm bench:upstream

const print = (...cells: string[]) => process.stdout.write(`${cells.join(' ')}\n`);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000);

// The upstream: answers initialize (with a session id), 202 for notifications, 405 for GET, and
// any request with an echo result as application/json.
const echoServer = `
const http = require('node:http');
const server = http.createServer((req, res) => {
  if (req.method === 'GET') { res.writeHead(405).end(); return; }
  if (req.method === 'DELETE') { res.writeHead(200).end(); return; }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const m = JSON.parse(Buffer.concat(chunks).toString());
    if (m.id === undefined) { res.writeHead(202).end(); return; }
    const result = m.method === 'initialize'
      ? { protocolVersion: m.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'echo', version: '1' } }
      : m.method === 'tools/call' ? { content: [{ type: 'text', text: m.params.arguments.message }] } : {};
    const body = JSON.stringify({ jsonrpc: '2.0', id: m.id, result });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), 'mcp-session-id': 'bench-session' });
    res.end(body);
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'));
`;
const child = spawn(process.execPath, ['-e', echoServer], { stdio: ['ignore', 'pipe', 'inherit'] });
const [portLine] = (await once(child.stdout, 'data')) as [Buffer];
const url = `http://127.0.0.1:${portLine.toString().trim()}/mcp`;
const init = {
  protocolVersion: '2025-11-25',
  clientCapabilities: {},
  clientInfo: { name: 'bench', version: '1' },
};

const connector = createUpstreamConnector({
  credentials: noUpstreamAuth,
  logger: createLogger({ service: 'bench', level: 'silent' }),
});
const raw = await connector.open({ appId: 'echo', transport: { type: 'http', url } }, init);
const sdk = new Client({ name: 'bench', version: '1' });
await sdk.connect(new StreamableHTTPClientTransport(new URL(url)));

const params = { name: 'echo', arguments: { message: 'hello, upstream' } };
// As the relay calls it (gateway/methods.ts forward): a deadline that progress restarts, the
// caller's abort signal, and a taker for the messages that belong to the request.
const rawCall = () =>
  raw.request('tools/call', params, {
    timeoutMs: 10_000,
    signal: new AbortController().signal,
    resetTimeoutOnProgress: true,
    onMessage: () => undefined,
  });
const sdkCall = () => sdk.callTool(params, undefined, { timeout: 10_000 });

const floorAgent = new http.Agent({ keepAlive: true });
const floorBody = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params });
const floorCall = () =>
  new Promise<void>((resolve, reject) => {
    const request = http.request(url, {
      method: 'POST',
      agent: floorAgent,
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    });
    request.on('response', (response) => {
      response.resume();
      response.on('end', resolve);
    });
    request.on('error', reject);
    request.end(floorBody);
  });

// Warm every path (JIT, sockets) before measuring.
await closedLoop(8, 500, rawCall);
await closedLoop(8, 500, sdkCall);
await closedLoop(8, 500, floorCall);

// The three paths run in alternating short slices (raw, SDK, floor, raw, …), so that a busy
// machine's load falls on all three alike; each figure is the median over the slices.
const ROUNDS = 10;
type Figures = { perSecond: number; p50: number; p99: number; cpuUs: number };
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
async function alternate(concurrency: number, ops: (() => Promise<unknown>)[]): Promise<Figures[]> {
  const slices = ops.map((): Figures[] => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [path, op] of ops.entries()) {
      // This process's CPU (all its threads: GC, I/O) per call; the upstream is another process.
      const cpu = process.cpuUsage();
      const figures = await closedLoop(concurrency, DURATION_MS / ROUNDS, op);
      const used = process.cpuUsage(cpu);
      const calls = (figures.perSecond * DURATION_MS) / ROUNDS / 1000;
      slices[path]?.push({ ...figures, cpuUs: (used.user + used.system) / Math.max(1, calls) });
    }
  }
  return slices.map((figures) => ({
    perSecond: median(figures.map((f) => f.perSecond)),
    p50: median(figures.map((f) => f.p50)),
    p99: median(figures.map((f) => f.p99)),
    cpuUs: median(figures.map((f) => f.cpuUs)),
  }));
}

// CPU µs/call is this process's CPU per call: on a busy 2-core machine the steadiest figure, and
// what the broker pays per call for its upstream hop (minus the floor: what any client pays).
print(
  'concurrency',
  '| raw calls/s'.padStart(13),
  'p50 ms'.padStart(8),
  'p99 ms'.padStart(8),
  'CPU µs'.padStart(8),
  '| SDK calls/s'.padStart(13),
  'p50 ms'.padStart(8),
  'p99 ms'.padStart(8),
  'CPU µs'.padStart(8),
  '| floor calls/s'.padStart(15),
  'p50 ms'.padStart(8),
  'p99 ms'.padStart(8),
  'CPU µs'.padStart(8),
  '| CPU raw/floor'.padStart(15),
  'SDK/raw'.padStart(8),
);
try {
  for (const concurrency of [1, 8]) {
    const [r, s, f] = (await alternate(concurrency, [rawCall, sdkCall, floorCall])) as [
      Figures,
      Figures,
      Figures,
    ];
    print(
      String(concurrency).padStart(11),
      `| ${r.perSecond.toFixed(0)}`.padStart(13),
      r.p50.toFixed(3).padStart(8),
      r.p99.toFixed(3).padStart(8),
      r.cpuUs.toFixed(0).padStart(8),
      `| ${s.perSecond.toFixed(0)}`.padStart(13),
      s.p50.toFixed(3).padStart(8),
      s.p99.toFixed(3).padStart(8),
      s.cpuUs.toFixed(0).padStart(8),
      `| ${f.perSecond.toFixed(0)}`.padStart(15),
      f.p50.toFixed(3).padStart(8),
      f.p99.toFixed(3).padStart(8),
      f.cpuUs.toFixed(0).padStart(8),
      `| ${(r.cpuUs / f.cpuUs).toFixed(2)}x`.padStart(15),
      `${(s.cpuUs / r.cpuUs).toFixed(1)}x`.padStart(8),
    );
  }
} finally {
  await raw.close();
  await sdk.close();
  await connector.close();
  floorAgent.destroy();
  child.kill();
}
