import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { UpstreamSession } from '../upstream/connection.ts';
import type { Catalog } from './catalog.ts';
import { type ContentGuard, obligationGuard } from './content-guard.ts';
import type { LiveSession } from './live-session.ts';
import { METHODS, type MethodDeps, type RequestContext } from './methods.ts';
import type { ReplyChannel } from './reply.ts';
import type { SessionStore } from './session-store.ts';
import { enforcementOverSpool, readerOfDemo, silentLogger } from './test-support.ts';
import type { ToolGate } from './tool-gate.ts';

// tools/call through the gateway's own handler, with the real policy and the real audit sink (its
// spool; Kafka unreachable, so the events stay there to be read back). The session, its upstream
// and the reply channel are small stand-ins of the gateway's own classes: what is under test is
// that a call whose handling throws after its admission still gets exactly one outcome event,
// labelled by whether its request had gone upstream.

const closers: (() => Promise<void>)[] = [];
after(async () => {
  for (const close of closers) await close();
});

async function gateway(guard: ContentGuard) {
  const { enforcement, spooled, close } = await enforcementOverSpool();
  closers.push(close);
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
    logger: silentLogger,
    callTimeoutMs: 5000,
    callMaxMs: 5000,
  };
  const call = () => {
    const context: RequestContext = {
      session,
      caller: readerOfDemo,
      apps: ['demo'],
      request: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'lookup', arguments: {} } },
      channel: { onAbandoned: () => undefined } as unknown as ReplyChannel,
      stillValid: () => true,
    };
    return (METHODS['tools/call'] as NonNullable<(typeof METHODS)[string]>)(deps, context);
  };
  const outcomes = async () =>
    (await spooled())
      .filter((event) => event.type === 'tool_call.completed')
      .map((event) => [event.outcome, event.error?.code]);
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
