import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import express from 'express';
import { hostOriginProtection, LOOPBACK_HOSTS, LOOPBACK_ORIGINS } from './host-origin.ts';

// Security tests over a real HTTP server: what a DNS-rebinding page can and cannot get through.

let port: number;
let reached = 0;
const server = express()
  .use(
    '/mcp',
    hostOriginProtection({
      allowedHosts: [...LOOPBACK_HOSTS, 'gateway.example.com', 'mcp.example.com:8443'],
      allowedOrigins: [...LOOPBACK_ORIGINS, 'https://app.example.com'],
    }),
    (_req, res) => {
      reached++;
      res.json({ ok: true });
    },
  )
  .listen(0, '127.0.0.1');

before(async () => {
  await new Promise((resolve) => server.once('listening', resolve));
  port = (server.address() as AddressInfo).port;
});
after(() => server.close());

/** node:http lets a test send any Host header, as a rebinding browser would. */
function post(headers: Record<string, string>): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/mcp',
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => {
          body += chunk.toString('utf8');
        });
        res.on('end', () =>
          resolve({ status: res.statusCode!, type: res.headers['content-type'] ?? '', body }),
        );
      },
    );
    req.on('error', reject);
    req.end('{}');
  });
}

describe('allowed', () => {
  const cases: [string, Record<string, string>][] = [
    ['a loopback Host without Origin (any non-browser client)', { host: '127.0.0.1:1234' }],
    ['localhost on any port', { host: 'LOCALHOST:9' }],
    ['IPv6 loopback', { host: '[::1]:8080' }],
    ['a configured host without a port', { host: 'gateway.example.com' }],
    ['a configured host with its port', { host: 'mcp.example.com:8443' }],
    ['a loopback page (e.g. the MCP Inspector)', { host: 'localhost:8080', origin: 'http://localhost:6274' }],
    ['a configured origin', { host: 'gateway.example.com', origin: 'https://app.example.com' }],
  ];
  for (const [what, headers] of cases) {
    test(what, async () => {
      const before = reached;
      assert.equal((await post(headers)).status, 200);
      assert.equal(reached, before + 1);
    });
  }
});

describe('refused with 403 problem+json, and the handler never runs', () => {
  const cases: [string, Record<string, string>, string][] = [
    ['a rebinding Host', { host: 'evil.example:8080' }, 'host_not_allowed'],
    ['a rebinding Host that looks like loopback', { host: 'localhost.evil.example' }, 'host_not_allowed'],
    ['a configured host on another port', { host: 'mcp.example.com:9999' }, 'host_not_allowed'],
    [
      'a configured host with a port it was not given',
      { host: 'gateway.example.com:8080' },
      'host_not_allowed',
    ],
    ['a malformed Host', { host: 'a b' }, 'host_not_allowed'],
    ['a Host with credentials', { host: 'user@127.0.0.1' }, 'host_not_allowed'],
    [
      'a foreign Origin on a loopback Host',
      { host: '127.0.0.1:80', origin: 'http://evil.example' },
      'origin_not_allowed',
    ],
    [
      'the null Origin (sandboxed frames, file:)',
      { host: '127.0.0.1:80', origin: 'null' },
      'origin_not_allowed',
    ],
    [
      'a configured origin with the wrong scheme',
      { host: 'gateway.example.com', origin: 'http://app.example.com' },
      'origin_not_allowed',
    ],
    [
      'a configured origin on another port',
      { host: 'gateway.example.com', origin: 'https://app.example.com:444' },
      'origin_not_allowed',
    ],
    [
      'an origin suffix trick',
      { host: 'gateway.example.com', origin: 'https://app.example.com.evil.example' },
      'origin_not_allowed',
    ],
  ];
  for (const [what, headers, code] of cases) {
    test(what, async () => {
      const before = reached;
      const response = await post(headers);
      assert.equal(response.status, 403);
      assert.match(response.type, /application\/problem\+json/);
      assert.equal((JSON.parse(response.body) as { code: string }).code, code);
      assert.equal(reached, before, 'the protected handler ran');
    });
  }
});

test('a malformed allow-list entry fails at start-up, not at request time', () => {
  assert.throws(() => hostOriginProtection({ allowedHosts: ['http://x'], allowedOrigins: [] }));
  assert.throws(() => hostOriginProtection({ allowedHosts: [], allowedOrigins: ['example.com'] }));
});
