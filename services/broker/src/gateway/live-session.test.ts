import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isolatedRedis, waitFor } from '@portcullis/testing';
import type { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { GatewayMetrics } from '../gateway-metrics.ts';
import type { UpstreamSession } from '../upstream/connection.ts';
import { createUpstreamConnector, noUpstreamAuth } from '../upstream/connector.ts';
import { fakeStdioServer, memoryLogger } from '../upstream/test-support.ts';
import type { Catalog } from './catalog.ts';
import type { RpcError } from './json-rpc.ts';
import { LiveSession, upstreamRpcError } from './live-session.ts';
import { appNamespace } from './namespacing.ts';
import type { ReplyChannel } from './reply.ts';
import { SessionStore } from './session-store.ts';

// A session's upstreams are closed whatever happens to the session: real stdio children (the fake
// server of the upstream tests), the real session store on the test run's Redis.

let redis: Redis;
let prefix: string;
let drop: () => Promise<void>;
let dir: string;

before(async () => {
  ({ redis, prefix, drop } = await isolatedRedis('live-session'));
  dir = await mkdtemp(join(tmpdir(), 'portcullis-live-session-'));
});

after(async () => {
  await drop();
  await rm(dir, { recursive: true, force: true });
});

const { logger } = memoryLogger();

/** A session on app `fake`, a stdio child per open; its children's pids land in `pidFile`. */
/** The broker's metrics on a registry of their own. */
function freshMetrics(): { metrics: GatewayMetrics; registry: Registry } {
  const registry = new Registry();
  const metrics = new GatewayMetrics(registry, {
    spooledEvents: () => 0,
    spooledBytes: () => 0,
    spooling: () => false,
    localSessions: () => 0,
  });
  return { metrics, registry };
}

async function liveSession(
  pidFile: string,
  mode: string,
  maxStdioSessions: number,
  {
    metrics = freshMetrics().metrics,
    env = {},
  }: { metrics?: GatewayMetrics; env?: Record<string, string> } = {},
) {
  const connector = createUpstreamConnector({
    credentials: noUpstreamAuth,
    logger,
    maxStdioSessions,
    stdio: { restart: { initialMs: 50, maxMs: 500, stableMs: 10_000 }, stopGraceMs: 500 },
  });
  const store = new SessionStore(redis, prefix, 3600);
  const { record } = await store.create({
    agentId: 'agent-a',
    scope: { kind: 'app', appId: 'fake' },
    protocolVersion: '2025-11-25',
    clientCapabilities: {},
    clientInfo: { name: 'test', version: '1' },
  });
  const session = new LiveSession({ ...record, logLevel: 'debug' }, appNamespace('fake'), {
    store,
    connector,
    catalog: { invalidate() {} } as unknown as Catalog,
    target: (appId) => ({
      appId,
      transport: {
        type: 'stdio',
        command: process.execPath,
        args: ['-e', fakeStdioServer],
        env: { FAKE_MODE: mode, FAKE_PIDFILE: pidFile, ...env },
      },
    }),
    logger,
    instanceId: 'replica-1',
    upstreamTimeoutMs: 300,
    clientResponseTimeoutMs: 1000,
    metrics,
  });
  return { session, connector };
}

async function running(pidFile: string): Promise<number[]> {
  const pids = (await readFile(pidFile, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
  return pids.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
}

test('an upstream whose state replay fails is closed: no child left running, its slot given back', async () => {
  const pidFile = join(dir, 'replay.pids');
  // One stdio slot: a leaked child would refuse every later open.
  const { session, connector } = await liveSession(pidFile, 'ignore-set-level', 1);
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      await assert.rejects(session.upstream('fake'), (error: Error) => {
        // The setLevel the replay sends is never answered: the first attempt times out; a leaked
        // child would make the next ones unreachable (no free slot).
        assert.equal(
          upstreamRpcError('fake', error).data?.code,
          'upstream_timeout',
          `attempt ${attempt}: ${error.message}`,
        );
        return true;
      });
    }
    await waitFor('every child stopped', async () => (await running(pidFile)).length === 0);
  } finally {
    await session.close();
    await connector.close();
  }
});

/** A counter's value for the series with these labels (0 when it has none yet). */
async function counted(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const values = (await registry.getSingleMetric(name)?.get())?.values ?? [];
  return (
    values.find((each) => Object.entries(labels).every(([key, label]) => each.labels[key] === label))
      ?.value ?? 0
  );
}

test("a stdio child that crashes is counted, and so is its restart, per app in the broker's metrics", async () => {
  const { metrics, registry } = freshMetrics();
  const { session, connector } = await liveSession(join(dir, 'crash.pids'), 'normal', 4, { metrics });
  try {
    await assert.rejects(
      session.withUpstream('fake', (upstream) => upstream.request('crash', {}, { timeoutMs: 5000 })),
    );
    await waitFor(
      'the restart counted',
      async () => (await counted(registry, 'portcullis_upstream_restarts_total', { app: 'fake' })) === 1,
    );
    assert.equal(
      await counted(registry, 'portcullis_upstream_sessions_ended_total', { app: 'fake', failure: 'closed' }),
      1,
    );
    assert.equal(await counted(registry, 'portcullis_upstream_restart_failures_total', { app: 'fake' }), 0);
    // The restarted child answers.
    await session.withUpstream('fake', (upstream) =>
      upstream.request('tools/list', undefined, { timeoutMs: 5000 }),
    );
  } finally {
    await session.close();
    await connector.close();
  }
});

test('a stdio child that cannot be started again: each failed attempt is counted', async () => {
  const { metrics, registry } = freshMetrics();
  // The first child starts; every later one finds the marker and dies during initialize.
  const env = { FAKE_MARKER: join(dir, 'started-once') };
  const { session, connector } = await liveSession(join(dir, 'no-restart.pids'), 'normal', 4, {
    metrics,
    env,
  });
  try {
    await assert.rejects(
      session.withUpstream('fake', (upstream) => upstream.request('crash', {}, { timeoutMs: 5000 })),
    );
    // Backoff 50, 100, 200 ms...: a few attempts within a second.
    await waitFor(
      'failed restarts counted',
      async () =>
        (await counted(registry, 'portcullis_upstream_restart_failures_total', { app: 'fake' })) >= 2,
    );
    assert.equal(await counted(registry, 'portcullis_upstream_restarts_total', { app: 'fake' }), 0);
  } finally {
    await session.close();
    await connector.close();
  }
});

test('a closed session opens no upstream: a request still running gets session_not_found', async () => {
  const pidFile = join(dir, 'closed.pids');
  const { session, connector } = await liveSession(pidFile, 'normal', 4);
  try {
    await session.close();
    await assert.rejects(
      session.withUpstream('fake', (upstream) =>
        upstream.request('tools/list', undefined, { timeoutMs: 1000 }),
      ),
      (error: RpcError) => error.data?.code === 'session_not_found',
    );
    assert.deepEqual(await running(pidFile), [], 'a child was started for a closed session');
  } finally {
    await connector.close();
  }
});

test('while a call under a redact obligation runs, what its app says is withheld, whichever way it comes', async () => {
  const { session, connector } = await liveSession(join(dir, 'relay.pids'), 'normal', 4);
  session.record.clientCapabilities = { sampling: {}, roots: {} };
  const delivered: { method: string; params: Record<string, unknown> }[] = [];
  const answered: { id: string; error: { code: number } }[] = [];
  const channel = {
    canStream: true,
    send: (message: { method: string; params: Record<string, unknown> }) => delivered.push(message) > 0,
  } as unknown as ReplyChannel;
  const upstream = {
    send: async (message: { id: string; error: { code: number } }) => void answered.push(message),
  } as unknown as UpstreamSession;
  const record = { id: 7, name: 'Dora', salary: 91000 };
  const says = (round: string) => {
    session.relay(
      'fake',
      upstream,
      {
        jsonrpc: '2.0',
        method: 'notifications/message',
        params: { level: 'info', logger: 'salary-91000', data: record },
      },
      channel,
    );
    session.relay(
      'fake',
      upstream,
      {
        jsonrpc: '2.0',
        method: 'notifications/progress',
        params: { progressToken: 1, progress: 1, message: 'salary 91000', _meta: { salary: 91000 } },
      },
      channel,
    );
    session.relay(
      'fake',
      upstream,
      { jsonrpc: '2.0', method: 'notifications/made_up', params: { salary: 91000 } },
      channel,
    );
    session.relay(
      'fake',
      upstream,
      {
        jsonrpc: '2.0',
        id: `sampling-${round}`,
        method: 'sampling/createMessage',
        params: {
          messages: [{ role: 'user', content: { type: 'text', text: 'salary 91000' } }],
          maxTokens: 5,
        },
      },
      channel,
    );
  };
  try {
    says('plain');
    assert.deepEqual(
      delivered.map((message) => message.method),
      ['notifications/message', 'notifications/progress', 'notifications/made_up', 'sampling/createMessage'],
    );
    assert.deepEqual(delivered[0]?.params.data, record, 'without the obligation, relayed as is');
    delivered.length = 0;

    // Two redacted calls to the app at once: withheld until both have ended.
    session.beginRedactedCall('fake');
    session.beginRedactedCall('fake');
    session.endRedactedCall('fake');
    says('redacted');
    assert.ok(!JSON.stringify(delivered).includes('91000'), JSON.stringify(delivered));
    assert.deepEqual(
      delivered.map((message) => message.method),
      ['notifications/message', 'notifications/progress'],
    );
    assert.deepEqual(delivered[0]?.params, {
      level: 'info',
      data: '[WITHHELD: the policy redacts fields of this call’s answers]',
    });
    assert.equal(delivered[1]?.params.progress, 1);
    await waitFor('the sampling request refused upstream', async () => answered.length === 1);
    assert.equal(answered[0]?.id, 'sampling-redacted');
    assert.equal(answered[0]?.error.code, -32600);

    session.endRedactedCall('fake');
    delivered.length = 0;
    says('after');
    assert.deepEqual(delivered[0]?.params.data, record, 'relayed as is once the redacted calls ended');
  } finally {
    await session.close();
    await connector.close();
  }
});
