import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  type JsonRpcNotification,
  type JsonRpcRequest,
  type UpstreamCredentials,
  UpstreamError,
  type UpstreamSession,
} from './connection.ts';
import { createUpstreamConnector, noUpstreamAuth } from './connector.ts';
import type { StdioUpstreamSession } from './stdio.ts';
import { agentInit, everythingEntry, fakeStdioServer, memoryLogger } from './test-support.ts';

// The supervised stdio session: the real server-everything over stdio, then a small fake server
// for crashes, protocol violations, environment isolation and stderr handling.

const log = memoryLogger();
const fast = { restart: { initialMs: 50, maxMs: 500, stableMs: 10_000 }, stopGraceMs: 500 };
const connector = createUpstreamConnector({ credentials: noUpstreamAuth, logger: log.logger, stdio: fast });
const everything = {
  type: 'stdio' as const,
  command: process.execPath,
  args: [everythingEntry, 'stdio'],
  env: {},
};

const text = (response: unknown) => {
  const result = (response as { result?: { content?: { type: string; text?: string }[] } }).result;
  return result?.content?.map((item) => item.text ?? '').join('') ?? '';
};
const failure = (expected: UpstreamError['failure']) => (error: unknown) => {
  assert.ok(error instanceof UpstreamError, `an UpstreamError, got ${String(error)}`);
  assert.equal(error.failure, expected, error.message);
  return true;
};
const waitUntil = async (what: string, probe: () => boolean, timeoutMs = 8000) => {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
};
const isAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

after(async () => {
  await connector.close();
});

describe('stdio upstream session against server-everything', () => {
  let session: UpstreamSession;
  const heard: (JsonRpcRequest | JsonRpcNotification)[] = [];
  before(async () => {
    session = await connector.open({ appId: 'everything', transport: everything }, agentInit);
    session.listen((message) => {
      heard.push(message);
      // server-everything asks for roots after initialize; the agent's client would answer.
      if ('id' in message && message.method === 'roots/list') {
        void session.send({ jsonrpc: '2.0', id: message.id, result: { roots: [] } });
      }
    });
  });
  after(async () => {
    await session.close();
  });

  test('initialize, tools/list, tools/call (echo, get-sum), ping', async () => {
    assert.equal(session.sessionId, undefined);
    assert.equal(session.initializeResult.protocolVersion, '2025-11-25');
    const list = await session.request('tools/list', undefined, { timeoutMs: 5000 });
    assert.ok('result' in list);
    assert.ok(
      (list.result.tools as { name: string }[]).some((tool) => tool.name === 'trigger-sampling-request'),
    );
    assert.equal(
      text(
        await session.request(
          'tools/call',
          { name: 'echo', arguments: { message: 'hi' } },
          { timeoutMs: 5000 },
        ),
      ),
      'Echo: hi',
    );
    assert.match(
      text(
        await session.request(
          'tools/call',
          { name: 'get-sum', arguments: { a: 1, b: 2 } },
          { timeoutMs: 5000 },
        ),
      ),
      /3/,
    );
    assert.deepEqual(
      await session.request('ping', undefined, { timeoutMs: 5000 }).then((r) => 'result' in r && r.result),
      {},
    );
  });

  test('the roots request after initialize went to the listener and was answered', async () => {
    await waitUntil('roots/list', () => heard.some((m) => m.method === 'roots/list'));
    await waitUntil('the roots log message', () =>
      heard.some(
        (m) => m.method === 'notifications/message' && /root\(s\) received/.test(JSON.stringify(m.params)),
      ),
    );
  });

  test('progress goes to its request and restarts its deadline', async () => {
    const seen: unknown[] = [];
    const response = await session.request(
      'tools/call',
      {
        name: 'trigger-long-running-operation',
        arguments: { duration: 2.4, steps: 4 },
        _meta: { progressToken: 7 },
      },
      { timeoutMs: 1500, resetTimeoutOnProgress: true, onMessage: (m) => seen.push(m.params?.progress) },
    );
    assert.match(text(response), /completed/);
    assert.deepEqual(seen, [1, 2, 3, 4]);
  });

  test('sampling: delivered to the open request, answered with send()', async () => {
    const response = await session.request(
      'tools/call',
      { name: 'trigger-sampling-request', arguments: { prompt: 'hello', maxTokens: 5 } },
      {
        timeoutMs: 5000,
        onMessage: (message) => {
          if ('id' in message && message.method === 'sampling/createMessage') {
            void session.send({
              jsonrpc: '2.0',
              id: message.id,
              result: { role: 'assistant', model: 'm', content: { type: 'text', text: 'stdio sampled' } },
            });
          }
        },
      },
    );
    assert.match(text(response), /stdio sampled/);
  });

  test('resources, subscription updates to the listener, prompts, completion, logging', async () => {
    const uri = 'demo://resource/dynamic/text/2';
    const read = await session.request('resources/read', { uri }, { timeoutMs: 5000 });
    assert.ok('result' in read);
    assert.ok('result' in (await session.request('resources/subscribe', { uri }, { timeoutMs: 5000 })));
    await session.request(
      'tools/call',
      { name: 'toggle-subscriber-updates', arguments: {} },
      { timeoutMs: 5000 },
    );
    await waitUntil('a resource update', () =>
      heard.some((m) => m.method === 'notifications/resources/updated' && m.params?.uri === uri),
    );
    await session.request(
      'tools/call',
      { name: 'toggle-subscriber-updates', arguments: {} },
      { timeoutMs: 5000 },
    );

    const prompt = await session.request(
      'prompts/get',
      { name: 'args-prompt', arguments: { city: 'Oslo' } },
      { timeoutMs: 5000 },
    );
    assert.match(JSON.stringify(prompt), /Oslo/);
    const completion = await session.request(
      'completion/complete',
      {
        ref: { type: 'ref/prompt', name: 'completable-prompt' },
        argument: { name: 'department', value: 'Sa' },
      },
      { timeoutMs: 5000 },
    );
    assert.deepEqual(
      'result' in completion && (completion.result.completion as { values: string[] }).values,
      ['Sales'],
    );

    assert.ok(
      'result' in (await session.request('logging/setLevel', { level: 'debug' }, { timeoutMs: 5000 })),
    );
    const before = heard.filter((m) => m.method === 'notifications/message').length;
    await session.request(
      'tools/call',
      { name: 'toggle-simulated-logging', arguments: {} },
      { timeoutMs: 5000 },
    );
    await waitUntil(
      'a log message',
      () => heard.filter((m) => m.method === 'notifications/message').length > before,
    );
    await session.request(
      'tools/call',
      { name: 'toggle-simulated-logging', arguments: {} },
      { timeoutMs: 5000 },
    );
  });

  test('cancellation rejects at once and the session goes on', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const call = session.request(
      'tools/call',
      { name: 'trigger-long-running-operation', arguments: { duration: 10, steps: 10 } },
      { timeoutMs: 20_000, signal: controller.signal },
    );
    setTimeout(() => controller.abort(), 200);
    await assert.rejects(call, failure('cancelled'));
    assert.ok(Date.now() - started < 3000);
    assert.equal(
      text(
        await session.request(
          'tools/call',
          { name: 'echo', arguments: { message: 'on' } },
          { timeoutMs: 5000 },
        ),
      ),
      'Echo: on',
    );
  });

  test('a crash mid-call fails the call at once, onClosed fires, and the child is restarted', async () => {
    const stdio = session as StdioUpstreamSession;
    const pid = stdio.pid as number;
    const closed: UpstreamError[] = [];
    const restarted: unknown[] = [];
    session.onClosed = (error) => closed.push(error);
    session.onRestarted = (result) => restarted.push(result);
    const call = session.request(
      'tools/call',
      { name: 'trigger-long-running-operation', arguments: { duration: 10, steps: 10 } },
      { timeoutMs: 20_000 },
    );
    await new Promise((resolve) => setTimeout(resolve, 100));
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    await assert.rejects(call, failure('closed'));
    assert.ok(Date.now() - killedAt < 3000, 'the open call failed fast');
    assert.equal(closed.length, 1);
    // The next call waits for the restarted child.
    const echo = await session.request(
      'tools/call',
      { name: 'echo', arguments: { message: 'again' } },
      { timeoutMs: 10_000 },
    );
    assert.equal(text(echo), 'Echo: again');
    assert.notEqual(stdio.pid, pid);
    assert.equal(restarted.length, 1);
  });

  test('close() stops the child', async () => {
    const other = (await connector.open(
      { appId: 'everything', transport: everything },
      agentInit,
    )) as StdioUpstreamSession;
    const pid = other.pid as number;
    assert.ok(isAlive(pid));
    await other.close();
    assert.ok(!isAlive(pid));
    await assert.rejects(other.request('ping', undefined, { timeoutMs: 1000 }), failure('closed'));
  });
});

describe('stdio upstream failures', () => {
  const fake = (env: Record<string, string> = {}) => ({
    type: 'stdio' as const,
    command: process.execPath,
    args: ['-e', fakeStdioServer],
    env,
  });

  test('a command that does not exist: unreachable', async () => {
    await assert.rejects(
      connector.open(
        {
          appId: 'nope',
          transport: { type: 'stdio', command: 'portcullis-no-such-command', args: [], env: {} },
        },
        agentInit,
      ),
      failure('unreachable'),
    );
  });

  test('stdio children are bounded per agent as well as per replica, and a closed one frees its slot', async () => {
    const bounded = createUpstreamConnector({
      credentials: noUpstreamAuth,
      logger: log.logger,
      stdio: fast,
      maxStdioSessions: 3,
      maxStdioSessionsPerAgent: 2,
    });
    const open = (agentId: string) =>
      bounded.open({ appId: 'fake', transport: fake() }, { ...agentInit, agentId });
    const held: UpstreamSession[] = [];
    try {
      held.push(await open('agent-a'), await open('agent-a'));
      await assert.rejects(open('agent-a'), (error: unknown) => {
        assert.ok(error instanceof UpstreamError && error.failure === 'unreachable');
        assert.match(error.message, /this agent already holds 2 stdio upstream sessions/);
        return true;
      });
      // Another agent still gets the replica's last slot; then the replica is full for everyone.
      held.push(await open('agent-b'));
      await assert.rejects(open('agent-c'), /this replica already runs 3 stdio upstream sessions/);
      await held.shift()?.close();
      held.push(await open('agent-a'));
    } finally {
      await Promise.all(held.map((session) => session.close()));
      await bounded.close();
    }
  });

  test('an env the OS cannot take (a NUL byte): unreachable', async () => {
    await assert.rejects(
      connector.open({ appId: 'nul', transport: fake({ BAD: 'a\u0000b' }) }, agentInit),
      failure('unreachable'),
    );
  });

  test('a child that exits during initialize: unreachable', async () => {
    await assert.rejects(
      connector.open({ appId: 'dies', transport: fake({ FAKE_MODE: 'exit-on-initialize' }) }, agentInit),
      failure('unreachable'),
    );
  });

  test('only the configured env (plus PATH and the lease) reaches the child, in its cwd', async () => {
    const leases: UpstreamCredentials = {
      forRequest: async () => ({ env: { LEASE_TOKEN: 'lease-secret-4711' } }),
    };
    const own = createUpstreamConnector({ credentials: leases, logger: log.logger, stdio: fast });
    const session = await own.open(
      { appId: 'env', transport: { ...fake({ APP_SETTING: 'x' }), cwd: tmpdir() } },
      agentInit,
    );
    try {
      const response = await session.request('env', {}, { timeoutMs: 5000 });
      assert.ok('result' in response);
      const env = response.result.env as Record<string, string>;
      assert.deepEqual(Object.keys(env).sort(), ['APP_SETTING', 'LEASE_TOKEN', 'PATH']);
      assert.equal(env.LEASE_TOKEN, 'lease-secret-4711');
      assert.equal(response.result.cwd, tmpdir());

      // stderr: logged line by line, rate-limited, with the lease scrubbed.
      await session.request('chatty', {}, { timeoutMs: 5000 });
      await waitUntil('stderr lines', () => log.lines().some((line) => line.includes('line 19 token=')));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const stderrLines = log.lines().filter((line) => line.includes('"stderr":"line '));
      assert.equal(stderrLines.length, 20);
      assert.ok(!log.lines().some((line) => line.includes('lease-secret-4711')));
      assert.ok(stderrLines.every((line) => line.includes('token=[redacted]')));
    } finally {
      await session.close();
      await own.close();
    }
  });

  test('a child that stops reading its input while sending requests is restarted, not buffered for', async () => {
    const bounded = createUpstreamConnector({
      credentials: noUpstreamAuth,
      logger: log.logger,
      stdio: { ...fast, maxMessageBytes: 256 * 1024 },
    });
    const session = await bounded.open({ appId: 'unread', transport: fake() }, agentInit);
    try {
      // Each ping is answered (no listener: refused) on the child's stdin, which it no longer reads.
      await assert.rejects(session.request('flood-unread', {}, { timeoutMs: 8000 }), failure('protocol'));
    } finally {
      await session.close();
      await bounded.close();
    }
  });

  test('progress restarts the deadline, up to a limit it cannot extend', async () => {
    const session = await connector.open({ appId: 'progress', transport: fake() }, agentInit);
    try {
      const started = performance.now();
      let reports = 0;
      const answer = session.request(
        'progress-forever',
        { _meta: { progressToken: 'p-1' } },
        {
          timeoutMs: 200,
          resetTimeoutOnProgress: true,
          maxTimeoutMs: 800,
          onMessage: () => {
            reports++;
          },
        },
      );
      const outcome = await Promise.race([
        answer.then(
          () => 'answered',
          (error: UpstreamError) => error.failure,
        ),
        new Promise((resolve) => setTimeout(() => resolve('still open'), 5000)),
      ]);
      assert.equal(outcome, 'timeout');
      const elapsedMs = performance.now() - started;
      // Progress kept it open past its 200 ms deadline, the limit ended it.
      assert.ok(
        elapsedMs >= 700 && reports > 4,
        `ended after ${Math.round(elapsedMs)} ms, ${reports} reports`,
      );
    } finally {
      await session.close();
    }
  });

  test('closing a server started through a launcher stops the server, not only the launcher', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-launcher-'));
    const pidFile = join(dir, 'pids');
    // sh stays the parent (a command follows), as npx, uvx or docker run would; the server ignores EOF.
    const launched = {
      type: 'stdio' as const,
      command: 'sh',
      args: ['-c', `"${process.execPath}" -e "$FAKE_SOURCE"; echo launcher done >&2`],
      env: { FAKE_SOURCE: fakeStdioServer, FAKE_MODE: 'outlive-stdin', FAKE_PIDFILE: pidFile },
    };
    const session = await connector.open({ appId: 'launched', transport: launched }, agentInit);
    try {
      const [server] = (await readFile(pidFile, 'utf8')).split('\n').filter(Boolean).map(Number);
      assert.ok(server !== undefined && isAlive(server), 'the server runs');
      await session.close();
      await waitUntil('the server stopped with its launcher', () => !isAlive(server), 5000);
    } finally {
      await session.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('secrets and personal data an upstream prints on stderr are redacted before the log', async () => {
    // Assembled here, so that the repository holds no string a scanner takes for a live token.
    const token = ['ghp_', 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'].join('');
    const session = await connector.open({ appId: 'printer', transport: fake() }, agentInit);
    try {
      await session.request(
        'stderr-say',
        { text: `fetched with ${token} for dora@example.com` },
        { timeoutMs: 5000 },
      );
      await waitUntil('the line logged', () => log.lines().some((line) => line.includes('fetched with')));
      const line = log.lines().find((entry) => entry.includes('fetched with')) ?? '';
      assert.ok(!line.includes(token) && !line.includes('dora@example.com'), line);
      assert.match(line, /\[REDACTED:github_token\] for \[REDACTED:email\]/);
    } finally {
      await session.close();
    }
  });

  test('a token split across two writes, where a long stderr line is cut, is not logged in part', async () => {
    const token = ['ghp_', 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'].join('');
    const session = await connector.open({ appId: 'split', transport: fake() }, agentInit);
    try {
      // 990 characters, then the token's first 16: past the 1,000 a line is cut at, before its end.
      const first = `${'x'.repeat(989)} ${token.slice(0, 16)}`;
      await session.request(
        'stderr-two-writes',
        { first, second: `${token.slice(16)} end` },
        { timeoutMs: 5000 },
      );
      await waitUntil('the line logged', () => log.lines().some((line) => line.includes('x'.repeat(989))));
      await new Promise((resolve) => setTimeout(resolve, 100));
      const logged = log.lines().filter((line) => line.includes('xxxxxxxxxx'));
      assert.ok(!logged.some((line) => line.includes(token.slice(0, 8))), logged.join('\n').slice(-300));
    } finally {
      await session.close();
    }
  });

  test('a lease where a stderr line is cut, or split across writes of an endless line, is not logged', async () => {
    const token = 'lease-secret-4711';
    const leases: UpstreamCredentials = { forRequest: async () => ({ env: { LEASE_TOKEN: token } }) };
    const stderr = { maxLineChars: 40, linesPerWindow: 100, windowMs: 10_000 };
    const own = createUpstreamConnector({
      credentials: leases,
      logger: log.logger,
      stdio: { ...fast, stderr },
    });
    const session = await own.open({ appId: 'cut', transport: fake() }, agentInit);
    try {
      for (const pad of [30, 35, 39]) await session.request('stderr-cut', { pad }, { timeoutMs: 5000 });
      for (const pad of [20, 38, 60]) await session.request('stderr-endless', { pad }, { timeoutMs: 5000 });
      await waitUntil(
        'the endless lines logged',
        () => log.lines().filter((line) => line.includes('end of the endless line')).length === 3,
      );
      // Any 8 characters of the lease would be a leak (the lease is 17).
      const pieces = Array.from({ length: token.length - 7 }, (_, i) => token.slice(i, i + 8));
      const leaked = log.lines().filter((line) => pieces.some((piece) => line.includes(piece)));
      assert.deepEqual(leaked, []);
    } finally {
      await session.close();
      await own.close();
    }
  });

  test('timeout and cancellation send notifications/cancelled to the child', async () => {
    const session = await connector.open({ appId: 'fake', transport: fake() }, agentInit);
    try {
      await assert.rejects(session.request('hang', {}, { timeoutMs: 200 }), failure('timeout'));
      await assert.rejects(
        session.request('hang', {}, { timeoutMs: 5000, signal: AbortSignal.timeout(100) }),
        failure('cancelled'),
      );
      await waitUntil(
        'both cancellations on stderr',
        () =>
          log.lines().filter((line) => /got cancelled \d+ (timeout|cancelled by the client)/.test(line))
            .length >= 2,
      );
    } finally {
      await session.close();
    }
  });

  test('a gated request reaches the child only once its gate opens, and never if it fails', async () => {
    const session = await connector.open({ appId: 'fake', transport: fake() }, agentInit);
    const received = async () => {
      const response = await session.request('received', {}, { timeoutMs: 2000 });
      return 'result' in response ? (response.result.methods as string[]) : [];
    };
    try {
      let open!: () => void;
      const opened = session.request(
        'echo',
        { n: 1 },
        {
          timeoutMs: 2000,
          gate: new Promise<void>((resolve) => {
            open = resolve;
          }),
        },
      );
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.ok(!(await received()).includes('echo'), 'nothing written while the gate is shut');
      open();
      assert.deepEqual(await opened.then((r) => 'result' in r && r.result), { echo: { n: 1 } });

      const refused = Promise.reject(new Error('not admitted'));
      await assert.rejects(
        session.request('refused', {}, { timeoutMs: 2000, gate: refused }),
        failure('cancelled'),
      );
      const methods = await received();
      assert.ok(!methods.includes('refused'), 'a refused request is never written');
      assert.ok(!methods.includes('notifications/cancelled'), 'nor cancelled, since it never went out');
    } finally {
      await session.close();
    }
  });

  test('a gated request of a session closed meanwhile fails closed at once, unsent', async () => {
    const session = await connector.open({ appId: 'fake', transport: fake() }, agentInit);
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const held = session.request('echo', {}, { timeoutMs: 5000, gate });
    const refused = assert.rejects(held, failure('closed'));
    const started = performance.now();
    await session.close();
    await refused;
    assert.ok(performance.now() - started < 2000, 'not left to its deadline');
    open();
  });

  test('a crash fails open calls with closed; garbage and oversized lines with protocol; then it restarts', async () => {
    const small = createUpstreamConnector({
      credentials: noUpstreamAuth,
      logger: log.logger,
      stdio: { ...fast, maxMessageBytes: 64 * 1024 },
    });
    const session = (await small.open(
      { appId: 'fake', transport: fake() },
      agentInit,
    )) as StdioUpstreamSession;
    const closed: UpstreamFailure[] = [];
    session.onClosed = (error) => closed.push(error.failure);
    try {
      const hanging = session.request('hang', {}, { timeoutMs: 10_000 });
      await assert.rejects(session.request('crash', {}, { timeoutMs: 5000 }), failure('closed'));
      await assert.rejects(hanging, failure('closed'));
      assert.deepEqual(
        await session.request('echo', { n: 1 }, { timeoutMs: 5000 }).then((r) => 'result' in r && r.result),
        { echo: { n: 1 } },
      );

      const pending = session.request('hang', {}, { timeoutMs: 10_000 });
      await assert.rejects(session.request('garbage', {}, { timeoutMs: 5000 }), failure('protocol'));
      await assert.rejects(pending, failure('protocol'));
      assert.ok('result' in (await session.request('echo', {}, { timeoutMs: 5000 })));

      await assert.rejects(
        session.request('huge', { size: 200 * 1024 }, { timeoutMs: 5000 }),
        failure('protocol'),
      );
      assert.ok('result' in (await session.request('echo', {}, { timeoutMs: 5000 })));
      assert.deepEqual(closed, ['closed', 'protocol', 'protocol']);
    } finally {
      await session.close();
      await small.close();
    }
  });
});

test('a child that cannot be restarted: waiting requests fail unreachable, and it keeps trying', async () => {
  const marker = join(tmpdir(), `portcullis-fake-${process.pid}-${Date.now()}`);
  const session = (await connector.open(
    {
      appId: 'fragile',
      transport: {
        type: 'stdio',
        command: process.execPath,
        args: ['-e', fakeStdioServer],
        env: { FAKE_MARKER: marker },
      },
    },
    agentInit,
  )) as StdioUpstreamSession;
  try {
    await assert.rejects(session.request('crash', {}, { timeoutMs: 5000 }), failure('closed'));
    const started = Date.now();
    await assert.rejects(session.request('echo', {}, { timeoutMs: 30_000 }), failure('unreachable'));
    assert.ok(Date.now() - started < 8000, 'failed with the restart attempt, not at the deadline');
    await waitUntil(
      'more restart attempts',
      () => log.lines().filter((line) => line.includes('failed to restart')).length >= 2,
    );
  } finally {
    await session.close();
    await rm(marker, { force: true });
  }
});

type UpstreamFailure = UpstreamError['failure'];
