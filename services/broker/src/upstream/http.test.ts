import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ServiceProcess } from '@portcullis/testing';
import {
  type JsonRpcNotification,
  type JsonRpcRequest,
  UpstreamError,
  type UpstreamSession,
} from './connection.ts';
import { createUpstreamConnector, noUpstreamAuth } from './connector.ts';
import { agentInit, memoryLogger, startEverythingHttp } from './test-support.ts';

// The raw Streamable HTTP session against the real @modelcontextprotocol/server-everything
// (SDK server transport, express, SSE answers with event ids, a GET stream, resumability).

const log = memoryLogger();
const connector = createUpstreamConnector({ credentials: noUpstreamAuth, logger: log.logger });
let server: { url: string; process: ServiceProcess };
const open = () =>
  connector.open({ appId: 'everything', transport: { type: 'http', url: server.url } }, agentInit);

const text = (response: unknown) => {
  const result = (response as { result?: { content?: { type: string; text?: string }[] } }).result;
  return result?.content?.map((item) => item.text ?? '').join('') ?? '';
};

before(async () => {
  server = await startEverythingHttp();
});
after(async () => {
  await connector.close();
  await server.process.stop();
});

describe('HTTP upstream session against server-everything', () => {
  let session: UpstreamSession;
  before(async () => {
    session = await open();
  });
  after(async () => {
    await session.close();
  });

  test('initialize negotiates a version, keeps the session id and the server info', () => {
    assert.match(session.sessionId ?? '', /^[0-9a-f-]{36}$/);
    assert.equal(session.initializeResult.protocolVersion, '2025-11-25');
    assert.equal((session.initializeResult.serverInfo as { name: string }).name, 'mcp-servers/everything');
  });

  test('tools/list and tools/call (echo, get-sum)', async () => {
    const list = await session.request('tools/list', undefined, { timeoutMs: 5000 });
    assert.ok('result' in list);
    const names = (list.result.tools as { name: string }[]).map((tool) => tool.name);
    for (const name of ['echo', 'get-sum', 'trigger-long-running-operation', 'trigger-sampling-request']) {
      assert.ok(names.includes(name), `${name} listed`);
    }
    const echo = await session.request(
      'tools/call',
      { name: 'echo', arguments: { message: 'hello' } },
      { timeoutMs: 5000 },
    );
    assert.equal(text(echo), 'Echo: hello');
    const sum = await session.request(
      'tools/call',
      { name: 'get-sum', arguments: { a: 2, b: 40 } },
      { timeoutMs: 5000 },
    );
    assert.match(text(sum), /42/);
  });

  test('an upstream JSON-RPC error passes through as a value', async () => {
    const response = await session.request('no/such/method', {}, { timeoutMs: 5000 });
    assert.ok('error' in response);
    assert.equal(response.error.code, -32601);
  });

  test('a long-running tool: progress in order before the result, each restarting the deadline', async () => {
    const seen: number[] = [];
    const response = await session.request(
      'tools/call',
      {
        name: 'trigger-long-running-operation',
        arguments: { duration: 3, steps: 5 },
        _meta: { progressToken: 'p1' },
      },
      {
        timeoutMs: 1800, // shorter than the whole run (3 s), three times one step
        resetTimeoutOnProgress: true,
        onMessage: (message) => {
          if (message.method === 'notifications/progress') seen.push(message.params?.progress as number);
        },
      },
    );
    assert.match(text(response), /Long running operation completed/);
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
  });

  test('without the reset, the same call times out', async () => {
    await assert.rejects(
      session.request(
        'tools/call',
        {
          name: 'trigger-long-running-operation',
          arguments: { duration: 3, steps: 5 },
          _meta: { progressToken: 'p2' },
        },
        { timeoutMs: 1500 },
      ),
      (error: UpstreamError) => error.failure === 'timeout',
    );
  });

  test('sampling: the server request arrives through onMessage and is answered with send()', async () => {
    const requests: JsonRpcRequest[] = [];
    const response = await session.request(
      'tools/call',
      { name: 'trigger-sampling-request', arguments: { prompt: 'say hi', maxTokens: 10 } },
      {
        timeoutMs: 5000,
        onMessage: (message) => {
          if ('id' in message && message.method === 'sampling/createMessage') {
            requests.push(message);
            void session.send({
              jsonrpc: '2.0',
              id: message.id,
              result: {
                role: 'assistant',
                model: 'test-model',
                content: { type: 'text', text: 'sampled hi' },
              },
            });
          }
        },
      },
    );
    assert.equal(requests.length, 1);
    assert.match(JSON.stringify(requests[0]?.params), /say hi/);
    assert.match(text(response), /sampled hi/);
  });

  test('resources: list, read, subscribe, and updates through listen()', async () => {
    const list = await session.request('resources/list', undefined, { timeoutMs: 5000 });
    assert.ok('result' in list && Array.isArray(list.result.resources) && list.result.resources.length > 0);
    const templates = await session.request('resources/templates/list', undefined, { timeoutMs: 5000 });
    assert.ok('result' in templates && Array.isArray(templates.result.resourceTemplates));
    const uri = 'demo://resource/dynamic/text/1';
    const read = await session.request('resources/read', { uri }, { timeoutMs: 5000 });
    assert.ok('result' in read);
    assert.equal((read.result.contents as { uri: string }[])[0]?.uri, uri);

    const heard: JsonRpcNotification[] = [];
    const detach = session.listen((message) => {
      if (!('id' in message)) heard.push(message);
    });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300)); // the GET stream is open
      assert.ok('result' in (await session.request('resources/subscribe', { uri }, { timeoutMs: 5000 })));
      await session.request(
        'tools/call',
        { name: 'toggle-subscriber-updates', arguments: {} },
        { timeoutMs: 5000 },
      );
      const deadline = Date.now() + 5000;
      while (!heard.some((m) => m.method === 'notifications/resources/updated') && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const update = heard.find((m) => m.method === 'notifications/resources/updated');
      assert.equal(update?.params?.uri, uri);
      await session.request(
        'tools/call',
        { name: 'toggle-subscriber-updates', arguments: {} },
        { timeoutMs: 5000 },
      );
      assert.ok('result' in (await session.request('resources/unsubscribe', { uri }, { timeoutMs: 5000 })));
    } finally {
      detach();
    }
  });

  test('prompts and completion', async () => {
    const prompts = await session.request('prompts/list', undefined, { timeoutMs: 5000 });
    assert.ok('result' in prompts);
    assert.ok((prompts.result.prompts as { name: string }[]).some((p) => p.name === 'args-prompt'));
    const prompt = await session.request(
      'prompts/get',
      { name: 'args-prompt', arguments: { city: 'Lyon' } },
      { timeoutMs: 5000 },
    );
    assert.match(JSON.stringify(prompt), /Lyon/);
    const completion = await session.request(
      'completion/complete',
      {
        ref: { type: 'ref/prompt', name: 'completable-prompt' },
        argument: { name: 'department', value: 'Eng' },
      },
      { timeoutMs: 5000 },
    );
    assert.ok('result' in completion);
    assert.deepEqual((completion.result.completion as { values: string[] }).values, ['Engineering']);
  });

  test('logging/setLevel and log messages', async () => {
    const logs: JsonRpcNotification[] = [];
    const take = (message: JsonRpcRequest | JsonRpcNotification) => {
      if (message.method === 'notifications/message') logs.push(message as JsonRpcNotification);
    };
    const detach = session.listen(take);
    try {
      await new Promise((resolve) => setTimeout(resolve, 300)); // the GET stream is open
      assert.ok(
        'result' in (await session.request('logging/setLevel', { level: 'debug' }, { timeoutMs: 5000 })),
      );
      await session.request(
        'tools/call',
        { name: 'toggle-simulated-logging', arguments: {} },
        { timeoutMs: 5000, onMessage: take },
      );
      const deadline = Date.now() + 8000; // one now, then one every 5 s
      while (logs.length === 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 50));
      assert.ok(logs.length > 0, 'a log message arrived');
      assert.equal(typeof logs[0]?.params?.level, 'string');
      await session.request(
        'tools/call',
        { name: 'toggle-simulated-logging', arguments: {} },
        { timeoutMs: 5000 },
      );
    } finally {
      detach();
    }
  });

  test('ping', async () => {
    const response = await session.request('ping', undefined, { timeoutMs: 5000 });
    assert.deepEqual('result' in response && response.result, {});
  });

  test('cancellation: aborting a long-running call rejects at once, and the session goes on', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const call = session.request(
      'tools/call',
      {
        name: 'trigger-long-running-operation',
        arguments: { duration: 10, steps: 10 },
        _meta: { progressToken: 'c1' },
      },
      { timeoutMs: 20_000, signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 300);
    await assert.rejects(call, (error: UpstreamError) => error.failure === 'cancelled');
    assert.ok(Date.now() - started < 3000);
    assert.equal(
      text(
        await session.request(
          'tools/call',
          { name: 'echo', arguments: { message: 'after' } },
          { timeoutMs: 5000 },
        ),
      ),
      'Echo: after',
    );
  });

  test('an already aborted signal never reaches the upstream', async () => {
    await assert.rejects(
      session.request('ping', undefined, { timeoutMs: 5000, signal: AbortSignal.abort() }),
      (error: UpstreamError) => error.failure === 'cancelled',
    );
  });
});

describe('HTTP session resumption across replicas', () => {
  test('a second session object resumes by id: calls work without a new initialize', async () => {
    const first = await open();
    const sessionId = first.sessionId as string;
    const resumed = await connector.open(
      { appId: 'everything', transport: { type: 'http', url: server.url } },
      { ...agentInit, resume: { sessionId, initializeResult: first.initializeResult } },
    );
    assert.equal(resumed.sessionId, sessionId);
    const echo = await resumed.request(
      'tools/call',
      { name: 'echo', arguments: { message: 'replica 2' } },
      { timeoutMs: 5000 },
    );
    assert.equal(text(echo), 'Echo: replica 2');
    // Both objects share the one upstream session, concurrently, without id clashes.
    const both = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? first : resumed).request(
          'tools/call',
          { name: 'echo', arguments: { message: `m${i}` } },
          { timeoutMs: 5000 },
        ),
      ),
    );
    assert.deepEqual(
      both.map(text),
      Array.from({ length: 10 }, (_, i) => `Echo: m${i}`),
    );

    // close() sends DELETE: the upstream forgets the session. server-everything then answers 400
    // with a JSON-RPC error without id (not 404), which passes through as an error value.
    await first.close();
    const afterDelete = await resumed.request('ping', undefined, { timeoutMs: 5000 });
    assert.ok('error' in afterDelete);
    assert.equal(afterDelete.error.code, -32000);
    await resumed.close();
    await assert.rejects(
      resumed.request('ping', undefined, { timeoutMs: 5000 }),
      (error: UpstreamError) => error.failure === 'closed',
    );
  });

  test('resuming with an unsupported protocol version is refused', async () => {
    await assert.rejects(
      connector.open(
        { appId: 'everything', transport: { type: 'http', url: server.url } },
        { ...agentInit, resume: { sessionId: 'x', initializeResult: { protocolVersion: '1999-01-01' } } },
      ),
      (error: UpstreamError) => error instanceof UpstreamError && error.failure === 'protocol',
    );
  });
});
