import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

// An HTTPS upstream, trusted as an operator would trust a private CA (NODE_EXTRA_CA_CERTS, read at
// start-up: hence a child process), that also offers HTTP/2 by ALPN, as most TLS servers do. The
// gateway's exchanges with it stay HTTP/1.1: one request per connection, and no client that resends
// a request on its own (HTTP/2 clients retry refused streams; a tool call must never run twice).
// Kept as a guard for any change of the HTTP client (undici offers h2 by default: ADR 0041).

const run = promisify(execFile);
const sessionModule = fileURLToPath(new URL('./http.ts', import.meta.url));

const child = (keyPath: string, certPath: string) => `
import { readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { openHttpSession } from ${JSON.stringify(sessionModule)};
const versions = [];
const server = http2.createSecureServer(
  { key: readFileSync(${JSON.stringify(keyPath)}), cert: readFileSync(${JSON.stringify(certPath)}), allowHTTP1: true },
  (req, res) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      versions.push(req.httpVersion);
      const text = Buffer.concat(chunks).toString('utf8');
      const message = text ? JSON.parse(text) : {};
      if (message.id === undefined) return void res.writeHead(req.method === 'DELETE' ? 200 : 202).end();
      const result = message.method === 'initialize'
        ? { protocolVersion: '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'tls', version: '1' } }
        : { content: [{ type: 'text', text: 'over tls' }] };
      const body = JSON.stringify({ jsonrpc: '2.0', id: message.id, result });
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': 'tls-session' }).end(body);
    });
  },
);
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const logger = { debug() {}, info() {}, warn() {}, error() {}, child() { return logger; } };
const session = await openHttpSession('tls', 'https://localhost:' + server.address().port + '/mcp',
  { protocolVersion: '2025-06-18', clientCapabilities: {}, clientInfo: { name: 'tls-check', version: '1' } },
  { credentials: { forRequest: async () => ({}) }, logger });
const answer = await session.request('tools/call', { name: 'echo', arguments: {} }, { timeoutMs: 5000 });
await session.close();
server.close();
console.log(JSON.stringify({ versions, text: answer.result?.content?.[0]?.text }));
`;

test('an HTTPS upstream (private CA, offering HTTP/2) works, and is spoken to in HTTP/1.1', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-tls-'));
  try {
    const keyPath = join(dir, 'key.pem');
    const certPath = join(dir, 'cert.pem');
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost',
    ]);
    const { stdout } = await run(
      process.execPath,
      ['--input-type=module', '--eval', child(keyPath, certPath)],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: certPath }, timeout: 30_000 },
    );
    const { versions, text } = JSON.parse(stdout.trim().split('\n').at(-1) as string) as {
      versions: string[];
      text: string;
    };
    assert.equal(text, 'over tls', 'the call went through, over TLS');
    // initialize, notifications/initialized, the call, DELETE: all HTTP/1.1.
    assert.ok(versions.length >= 3, JSON.stringify(versions));
    assert.deepEqual(new Set(versions), new Set(['1.1']), JSON.stringify(versions));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
