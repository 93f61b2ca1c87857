import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger, type Logger } from '@portcullis/runtime';
import { type ServiceProcess, startEverythingHttp as startEverything } from '@portcullis/testing';
import type { UpstreamSessionInit } from './connection.ts';

/** Test helpers for the upstream connections: the real server-everything, and a log sink. */

const require = createRequire(import.meta.url);

/** dist/index.js of @modelcontextprotocol/server-everything (a devDependency of the broker). */
export const everythingEntry = join(
  dirname(require.resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist/index.js',
);

/** Starts server-everything over Streamable HTTP on a free port. */
export function startEverythingHttp(): Promise<{ url: string; process: ServiceProcess }> {
  return startEverything(everythingEntry);
}

/** A logger whose JSON lines are kept in memory, to assert what was (and was not) logged. */
export function memoryLogger(): { logger: Logger; lines: () => string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return {
    logger: createLogger({ service: 'upstream-test', level: 'debug', destination }),
    lines: () => lines,
  };
}

/** What an agent's client would offer: sampling, elicitation and roots. */
export const agentInit: UpstreamSessionInit = {
  protocolVersion: '2025-11-25',
  clientCapabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } },
  clientInfo: { name: 'portcullis-test-agent', version: '1.0.0' },
};

/**
 * A tiny stdio MCP server for the failure cases server-everything cannot show: it answers
 * initialize, then per method hangs, crashes, writes garbage or an oversized line, reports what it
 * received on stderr, and returns its own environment. FAKE_MODE=exit-on-initialize makes it die
 * during the handshake; FAKE_MODE=ignore-set-level declares logging and never answers setLevel;
 * FAKE_MODE=outlive-stdin keeps running after stdin closes; FAKE_PIDFILE collects the children's pids.
 */
export const fakeStdioServer = `
const readline = require('node:readline');
const out = (message) => process.stdout.write(JSON.stringify(message) + '\\n');
const received = [];
// FAKE_PIDFILE: every child appends its pid, so a test can tell whether children are still running.
if (process.env.FAKE_PIDFILE) require('node:fs').appendFileSync(process.env.FAKE_PIDFILE, process.pid + '\\n');
// FAKE_MODE=outlive-stdin: keeps running after stdin closes (a server that ignores EOF).
if (process.env.FAKE_MODE === 'outlive-stdin') setInterval(() => {}, 1000);
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const m = JSON.parse(line);
  received.push(m.method ?? 'response');
  switch (m.method) {
    case 'received':
      return out({ jsonrpc: '2.0', id: m.id, result: { methods: received } });
    case 'initialize':
      if (process.env.FAKE_MODE === 'exit-on-initialize') process.exit(7);
      // FAKE_MARKER: the first child creates the file; every later one finds it and dies.
      if (process.env.FAKE_MARKER) {
        const fs = require('node:fs');
        if (fs.existsSync(process.env.FAKE_MARKER)) process.exit(9);
        fs.writeFileSync(process.env.FAKE_MARKER, 'started');
      }
      return out({ jsonrpc: '2.0', id: m.id, result: { protocolVersion: m.params.protocolVersion, capabilities: process.env.FAKE_MODE === 'ignore-set-level' ? { tools: {}, logging: {} } : { tools: {} }, serverInfo: { name: 'fake', version: '1' } } });
    case 'logging/setLevel':
      // FAKE_MODE=ignore-set-level: declares logging, never answers setLevel.
      if (process.env.FAKE_MODE === 'ignore-set-level') return;
      return out({ jsonrpc: '2.0', id: m.id, result: {} });
    case 'notifications/cancelled':
      return process.stderr.write('got cancelled ' + m.params.requestId + ' ' + m.params.reason + '\\n');
    case 'hang':
      return;
    case 'crash':
      return process.exit(3);
    case 'garbage':
      return process.stdout.write('<html>not json</html>\\n');
    case 'huge':
      return process.stdout.write('{"jsonrpc":"2.0","id":' + m.id + ',"result":{"x":"' + 'y'.repeat(m.params.size) + '"}}\\n');
    case 'env':
      return out({ jsonrpc: '2.0', id: m.id, result: { env: process.env, cwd: process.cwd() } });
    case 'flood-unread': {
      // Stops reading its input, then sends ping after ping: every answer waits in the broker.
      process.stdin.pause();
      process.stdin.removeAllListeners('data');
      let n = 0;
      setInterval(() => {
        for (let i = 0; i < 200; i++) out({ jsonrpc: '2.0', id: 'flood-' + n++, method: 'ping' });
      }, 1);
      return;
    }
    case 'progress-forever': {
      // Reports progress every 50 ms and never answers.
      let n = 0;
      setInterval(() => out({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: m.params._meta.progressToken, progress: ++n } }), 50);
      return;
    }
    case 'stderr-cut':
      // A lease right where a log line is cut (params.pad characters in).
      process.stderr.write('x'.repeat(m.params.pad) + process.env.LEASE_TOKEN + '\\n');
      return out({ jsonrpc: '2.0', id: m.id, result: {} });
    case 'stderr-endless': {
      // A line without end, the lease split across two writes, then a newline long after.
      const token = process.env.LEASE_TOKEN;
      process.stderr.write('y'.repeat(m.params.pad) + token.slice(0, 5));
      setTimeout(() => {
        process.stderr.write(token.slice(5) + 'z'.repeat(m.params.pad) + '\\nend of the endless line\\n');
        out({ jsonrpc: '2.0', id: m.id, result: {} });
      }, 50);
      return;
    }
    case 'stderr-two-writes':
      // One line in two writes, the second (with the newline) 50 ms after the first.
      process.stderr.write(m.params.first);
      setTimeout(() => {
        process.stderr.write(m.params.second + '\\n');
        out({ jsonrpc: '2.0', id: m.id, result: {} });
      }, 50);
      return;
    case 'stderr-say':
      // A line of its own on stderr (what a tool might print: a token it read, an address).
      process.stderr.write(m.params.text + '\\n');
      return out({ jsonrpc: '2.0', id: m.id, result: {} });
    case 'chatty':
      for (let i = 0; i < 100; i++) process.stderr.write('line ' + i + ' token=' + process.env.LEASE_TOKEN + '\\n');
      return out({ jsonrpc: '2.0', id: m.id, result: {} });
    default:
      if (m.id !== undefined) out({ jsonrpc: '2.0', id: m.id, result: { echo: m.params ?? null } });
  }
});
`;
