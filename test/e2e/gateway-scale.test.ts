import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Progress } from '@modelcontextprotocol/sdk/types.js';
import { stackEnv } from '@portcullis/testing';
import { Redis } from 'ioredis';
import { rawInitialize } from '../support/agent.ts';
import { capableClient } from '../support/everything.ts';
import { RoundRobinProxy } from '../support/round-robin-proxy.ts';
import { TestStack } from '../support/stack.ts';

// Two broker replicas behind a plain round-robin proxy, no sticky sessions: one MCP session's
// requests land on both, server-initiated requests are answered through the other replica, and the
// session outlives the replica it started on.

const APP = 'everything';
let stack: TestStack;
let proxy: RoundRobinProxy;
let replicas: Awaited<ReturnType<TestStack['startBroker']>>[] = [];
let key = '';

before(async () => {
  stack = await TestStack.create();
  stack.upstreamUrl = await stack.startEverythingHttp();
  await stack.startDecision();
  await stack.seed({
    apps: [{ id: APP, name: 'server-everything' }],
    agents: [{ name: 'scale-agent', owner: 'owner@example.com', entitlements: { [APP]: ['read', 'write'] } }],
  });
  key = await stack.issueKey('scale-agent');
  replicas = await Promise.all([
    stack.startBroker({ UPSTREAM_APP_ID: APP, INSTANCE_ID: 'replica-a' }),
    stack.startBroker({ UPSTREAM_APP_ID: APP, INSTANCE_ID: 'replica-b' }),
  ]);
  proxy = await RoundRobinProxy.start(replicas.map((replica) => replica.url));
});

after(async () => {
  await proxy?.stop();
  await stack?.stop();
});

describe('a session across two replicas', () => {
  it('spreads one session over both replicas, relays server requests across them, and survives losing one', async () => {
    const { client, log } = await capableClient(`${proxy.url}/mcp`, { Authorization: `Bearer ${key}` });
    try {
      const transport = client.transport as { sessionId?: string };
      const sessionId = transport.sessionId;
      assert.ok(sessionId);

      for (let i = 0; i < 6; i++) {
        const result = await client.callTool({ name: `${APP}__echo`, arguments: { message: `call ${i}` } });
        assert.match(JSON.stringify(result), new RegExp(`call ${i}`));
      }
      assert.deepEqual(
        new Set(proxy.served),
        new Set(replicas.map((replica) => replica.url)),
        'both replicas served',
      );

      // The sampling request travels on the stream of the replica running the call; the client's
      // answer is a new POST that the proxy sends to the other replica half of the time.
      for (let i = 0; i < 4; i++) {
        const sampled = await client.callTool({
          name: `${APP}__trigger-sampling-request`,
          arguments: { prompt: `question ${i}`, maxTokens: 10 },
        });
        assert.match(JSON.stringify(sampled), /sampled by the e2e client/);
      }
      assert.equal(log.samplingRequests.length, 4);

      const progress: Progress[] = [];
      await client.callTool(
        { name: `${APP}__trigger-long-running-operation`, arguments: { duration: 0.3, steps: 3 } },
        undefined,
        { onprogress: (update) => progress.push(update) },
      );
      assert.equal(progress.length, 3);

      // The replica that initialized the session (the proxy's first backend) goes away for good.
      await replicas[0]!.process.stop('SIGKILL');
      for (let i = 0; i < 4; i++) {
        const result = await client.callTool({ name: `${APP}__get-sum`, arguments: { a: i, b: 1 } });
        assert.match(JSON.stringify(result), new RegExp(`${i + 1}`));
      }
      const tools = await client.listTools();
      assert.ok(tools.tools.some((tool) => tool.name === `${APP}__echo`));
      const sampled = await client.callTool({
        name: `${APP}__trigger-sampling-request`,
        arguments: { prompt: 'after the loss', maxTokens: 10 },
      });
      assert.match(JSON.stringify(sampled), /sampled by the e2e client/);
      assert.equal(transport.sessionId, sessionId, 'the client kept its session');
    } finally {
      await client.close().catch(() => undefined);
    }
  });

  it('refuses the session to another agent on every replica', async () => {
    await stack.seed({
      apps: [{ id: APP, name: 'server-everything' }],
      agents: [{ name: 'other-agent', owner: 'owner@example.com', entitlements: { [APP]: ['read'] } }],
    });
    const otherKey = await stack.issueKey('other-agent');
    const { client } = await capableClient(`${proxy.url}/mcp`, { Authorization: `Bearer ${key}` });
    const sessionId = (client.transport as { sessionId?: string }).sessionId!;
    try {
      for (let i = 0; i < 2; i++) {
        const response = await fetch(`${proxy.url}/mcp`, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${otherKey}`,
            'content-type': 'application/json',
            accept: 'application/json, text/event-stream',
            'mcp-session-id': sessionId,
          },
          body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' }),
        });
        assert.equal(response.status, 404);
        const body = (await response.json()) as { error: { code: number } };
        assert.equal(body.error.code, -32001);
      }
    } finally {
      await client.close().catch(() => undefined);
    }
  });
});

describe('session lifetime', () => {
  it('a session whose client only listens on its stream outlives the idle timeout; a quiet one does not', async () => {
    const short = await stack.startBroker({
      UPSTREAM_APP_ID: APP,
      INSTANCE_ID: 'replica-short-ttl',
      SESSION_TTL_SECONDS: '3',
    });
    const headers = {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    };
    const post = (body: object, sessionId?: string) =>
      fetch(`${short.url}/mcp`, {
        method: 'POST',
        headers: { ...headers, ...(sessionId ? { 'mcp-session-id': sessionId } : {}) },
        body: JSON.stringify(body),
      });
    // The SDK's client opens its standalone GET stream once initialized, then only listens.
    const listening = await capableClient(`${short.url}/mcp`, { Authorization: `Bearer ${key}` });
    // A client that opens no stream and then says nothing.
    const opened = await rawInitialize(short.url, key);
    const quietSession = opened.headers.get('mcp-session-id') ?? '';
    await opened.body?.cancel();
    assert.ok(quietSession, 'the quiet client got a session');
    try {
      await new Promise((resolve) => setTimeout(resolve, 7000)); // more than twice the idle timeout
      const answer = await listening.client.callTool({
        name: `${APP}__echo`,
        arguments: { message: 'still here' },
      });
      assert.deepEqual(answer.content, [{ type: 'text', text: 'Echo: still here' }]);
      const expired = await post({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, quietSession);
      assert.equal(expired.status, 404, 'the session without a stream expired');
      await expired.body?.cancel();
    } finally {
      await listening.client.close().catch(() => undefined);
      await short.process.stop('SIGTERM');
    }
  });

  it('a listening stream whose session is gone from Redis ends, though no message said so', async () => {
    const short = await stack.startBroker({
      UPSTREAM_APP_ID: APP,
      INSTANCE_ID: 'replica-lost-message',
      SESSION_TTL_SECONDS: '3',
    });
    const redis = new Redis(stackEnv().redisUrl);
    try {
      const opened = await rawInitialize(short.url, key);
      const sessionId = opened.headers.get('mcp-session-id') ?? '';
      await opened.body?.cancel();
      const stream = await fetch(`${short.url}/mcp`, {
        headers: { authorization: `Bearer ${key}`, accept: 'text/event-stream', 'mcp-session-id': sessionId },
      });
      assert.equal(stream.status, 200);
      const ended = (async () => {
        for await (const _ of stream.body ?? []) {
          // keep-alive comments and notifications until the stream ends
        }
      })();
      // Held open across a keep-alive period: the session is alive.
      const early = await Promise.race([ended.then(() => 'ended'), sleep(2500).then(() => 'open')]);
      assert.equal(early, 'open');
      // Ended elsewhere, and the session-closed message never reached this replica.
      assert.equal(await redis.del(`${stack.prefix}:portcullis:mcp:session:${sessionId}`), 1);
      const late = await Promise.race([ended.then(() => 'ended'), sleep(8000).then(() => 'open')]);
      assert.equal(late, 'ended', 'the stream of a session gone from Redis stayed open');
    } finally {
      redis.disconnect();
      await short.process.stop('SIGTERM');
    }
  });
});
