import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, test } from 'node:test';
import type { AuditEvent } from '@portcullis/contracts';
import { createKafka, createProducer } from '@portcullis/kafka';
import { PolicyEngine, readBundle } from '@portcullis/policy-engine';
import { createLogger } from '@portcullis/runtime';
import { Spool } from '@portcullis/spool';
import { freePort } from '@portcullis/testing';
import { DurableAuditPublisher } from '../durable-audit.ts';
import type { UpstreamSession } from '../upstream/connection.ts';
import type { Catalog } from './catalog.ts';
import { type ContentGuard, obligationGuard } from './content-guard.ts';
import { Enforcement } from './enforcement.ts';
import type { LiveSession } from './live-session.ts';
import { METHODS, type MethodDeps, type RequestContext } from './methods.ts';
import type { ReplyChannel } from './reply.ts';
import type { SessionStore } from './session-store.ts';
import type { ToolGate } from './tool-gate.ts';

// tools/call through the gateway's own handler, with the real policy and the real audit sink (its
// spool; Kafka unreachable, so the events stay there to be read back). The session, its upstream
// and the reply channel are small stand-ins of the gateway's own classes: what is under test is
// that a call whose handling throws after its admission still gets exactly one outcome event,
// labelled by whether its request had gone upstream.

const logger = createLogger({ service: 'test', level: 'silent', destination: new PassThrough() });
const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closers) await close();
});

async function gateway(guard: ContentGuard) {
  const engine = new PolicyEngine();
  await engine.loadBundle(
    await readBundle(readFileSync(new URL('../../../../rego/build/bundle.tar.gz', import.meta.url))),
  );
  engine.setDirectory({
    agents: { agt_a: { state: 'active', owner: 'a@example.com' } },
    apps: { demo: {} },
    entitlements: { agt_a: { demo: [{ actions: ['read'] }] } },
  });
  const { spool } = await Spool.open({
    dir: await mkdtemp(join(tmpdir(), 'methods-')),
    maxBytes: 1 << 20,
    maxRecords: 100,
  });
  const kafka = createKafka({ clientId: 'methods-test', brokers: [`127.0.0.1:${await freePort()}`], logger });
  const audit = new DurableAuditPublisher({
    producer: createProducer(kafka), // never connects: every event goes to the spool
    topicPrefix: 'unused',
    spool,
    sendTimeoutMs: 200,
    retryIntervalMs: 60_000,
    agentShare: 1,
    logger,
  });
  closers.push(async () => {
    await audit.stop();
    await spool.close();
  });
  const enforcement = new Enforcement({ engine, audit, logger, instanceId: 'test' });
  const tool = { name: 'lookup', inputSchema: { type: 'object' }, annotations: { readOnlyHint: true } };
  const sent: string[] = [];
  // The upstream sends nothing before the call is admitted (UpstreamRequestOptions.gate).
  const upstream = {
    async request(method: string, params: Record<string, unknown>, options: { gate?: Promise<unknown> }) {
      await options.gate;
      sent.push(`${method} ${String(params.name)}`);
      return { jsonrpc: '2.0', id: 1, result: { content: [{ type: 'text', text: 'found' }] } };
    },
  } as unknown as UpstreamSession;
  const session = {
    record: { clientCapabilities: {} },
    namespace: { resolveName: (name: string) => ({ appId: 'demo', name }) },
    inflight: new Map(),
    withUpstream: <T>(_appId: string, work: (upstream: UpstreamSession) => Promise<T>) => work(upstream),
    relay: () => undefined,
    beginRedactedCall: () => undefined,
    endRedactedCall: () => undefined,
  } as unknown as LiveSession;
  const deps: MethodDeps = {
    enforcement,
    catalog: { find: async () => tool } as unknown as Catalog,
    store: {} as SessionStore,
    guard,
    tools: { assertUsable: () => undefined } as unknown as ToolGate,
    logger,
    callTimeoutMs: 5000,
    callMaxMs: 5000,
  };
  const call = () => {
    const context: RequestContext = {
      session,
      caller: { agent: { id: 'agt_a', name: 'a', owner: 'a@example.com', state: 'active' } },
      apps: ['demo'],
      request: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'lookup', arguments: {} } },
      channel: { onAbandoned: () => undefined } as unknown as ReplyChannel,
      stillValid: () => true,
    };
    return (METHODS['tools/call'] as NonNullable<(typeof METHODS)[string]>)(deps, context);
  };
  const outcomes = async () => {
    await enforcement.settled();
    return (await spool.peek(100)).records
      .map((record) => JSON.parse(record.toString('utf8')) as AuditEvent)
      .filter((event) => event.type === 'tool_call.completed')
      .map((event) => [event.outcome, event.error?.code]);
  };
  return { call, sent, outcomes };
}

test('a tool call answered as usual: one outcome, succeeded', async () => {
  const { call, sent, outcomes } = await gateway(obligationGuard);
  assert.deepEqual(await call(), { content: [{ type: 'text', text: 'found' }] });
  assert.deepEqual(sent, ['tools/call lookup']);
  assert.deepEqual(await outcomes(), [['succeeded', undefined]]);
});

test('the guard throws on the arguments: never sent, recorded once as not executed', async () => {
  const { call, sent, outcomes } = await gateway({
    ...obligationGuard,
    arguments: () => {
      throw new TypeError('a bug in the arguments guard');
    },
  });
  await assert.rejects(call(), TypeError);
  assert.deepEqual(sent, []);
  assert.deepEqual(await outcomes(), [['not_executed', 'internal_error']]);
});

test('the guard throws on the answer: the call ran, recorded once as failed', async () => {
  const { call, sent, outcomes } = await gateway({
    ...obligationGuard,
    result: () => {
      throw new TypeError('a bug in the result guard');
    },
  });
  await assert.rejects(call(), TypeError);
  assert.deepEqual(sent, ['tools/call lookup']);
  assert.deepEqual(await outcomes(), [['failed', 'internal_error']]);
});
