import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// A finished upstream request must be garbage for the young-generation GC, not only for a full
// one. When something old (a closure V8 allocated in the old generation, say) still points into a
// finished request, every scavenge copies the request's whole object graph and then promotes it:
// at 500 calls/s the broker's scavenges took 10–20 ms each (docs/gateway.md, "Performance").
// The check runs in a child with --expose-gc: 300 requests through the real HTTP upstream session
// (with a cancellation signal, a deadline and the exchange bookkeeping), then two young-generation
// collections, and the growth of the old generation, which is what they promoted. With a closure
// of each request in the old generation (before the grit rule in scripts/biome) that was 2.3 MB;
// without, 0.13 MB (code and feedback the calls warmed).

const sessionModule = fileURLToPath(new URL('./http.ts', import.meta.url));

const child = `
import { createServer } from 'node:http';
import v8 from 'node:v8';
import { openHttpSession } from ${JSON.stringify(sessionModule)};
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const message = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    if (message.id === undefined) return void res.writeHead(202).end();
    const result = message.method === 'initialize'
      ? { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'echo', version: '1' } }
      : { content: [{ type: 'text', text: 'x'.repeat(2000) }] };
    const body = JSON.stringify({ jsonrpc: '2.0', id: message.id, result });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
  });
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const logger = { debug() {}, info() {}, warn() {}, error() {}, child() { return logger; } };
const session = await openHttpSession('echo', 'http://127.0.0.1:' + server.address().port + '/mcp',
  { protocolVersion: '2025-06-18', clientCapabilities: {}, clientInfo: { name: 'gc-check', version: '1' } },
  { credentials: { forRequest: async () => ({}) }, logger });
const call = () => session.request('tools/call', { name: 'echo', arguments: {} },
  { timeoutMs: 60000, signal: new AbortController().signal, onMessage() {} });
for (let i = 0; i < 50; i++) await call();
const oldSpaceUsed = () => v8.getHeapSpaceStatistics().find((space) => space.space_name === 'old_space').space_used_size;
globalThis.gc();
const before = oldSpaceUsed();
for (let i = 0; i < 300; i++) await call();
// Two young-generation collections: what survives both is promoted into the old generation.
globalThis.gc({ type: 'minor' });
globalThis.gc({ type: 'minor' });
const promoted = oldSpaceUsed() - before;
await session.close();
server.close();
console.log(JSON.stringify({ promoted }));
`;

test('finished upstream requests are collected by young-generation GCs', async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--expose-gc', '--input-type=module', '--eval', child],
    { timeout: 60_000 },
  );
  const { promoted } = JSON.parse(stdout.trim().split('\n').pop() as string) as { promoted: number };
  assert.ok(promoted < 600_000, `300 finished requests left ${promoted} bytes to promote`);
});
