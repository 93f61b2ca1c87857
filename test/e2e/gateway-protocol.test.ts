import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  LoggingMessageNotificationSchema,
  type McpError,
  type Progress,
  ResourceUpdatedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { pinnedMembers } from '@portcullis/contracts';
import { type ClientLog, capableClient } from '../support/everything.ts';
import { everythingEntry, TestStack } from '../support/stack.ts';

// Every feature of MCP, through the gateway as directly: the same SDK client, declaring sampling,
// elicitation and roots, talks to @modelcontextprotocol/server-everything once directly and once
// through the gateway's aggregate endpoint, and must see the same things (names namespaced).

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const APP = 'everything';
const STDIO_APP = 'everything-stdio';
let stack: TestStack;
/** The same server-everything features, directly, per app: over Streamable HTTP and over stdio. */
const direct = new Map<string, { client: Client; log: ClientLog }>();
let gateway: { client: Client; log: ClientLog };
let brokerUrl = '';
let key = '';

before(async () => {
  stack = await TestStack.create();
  stack.upstreamUrl = await stack.startEverythingHttp();
  const stdio = { type: 'stdio' as const, command: process.execPath, args: [everythingEntry, 'stdio'] };
  await stack.startDecision();
  await stack.seed({
    apps: [
      {
        id: APP,
        name: 'server-everything over HTTP',
        connection: { transport: { type: 'http', url: stack.upstreamUrl } },
      },
      { id: STDIO_APP, name: 'server-everything over stdio', connection: { transport: stdio } },
    ],
    agents: [
      {
        name: 'protocol-agent',
        owner: 'owner@example.com',
        entitlements: { [APP]: ['read', 'write'], [STDIO_APP]: ['read', 'write'] },
      },
    ],
  });
  key = await stack.issueKey('protocol-agent');
  // Registered apps only: no static development app.
  brokerUrl = (await stack.startBroker({ UPSTREAM_URL: '', UPSTREAM_APP_ID: '' })).url;
  direct.set(APP, await capableClient(stack.upstreamUrl));
  direct.set(
    STDIO_APP,
    await capableClient(
      new StdioClientTransport({ command: stdio.command, args: stdio.args, stderr: 'ignore' }),
    ),
  );
  gateway = await capableClient(`${brokerUrl}/mcp`, { Authorization: `Bearer ${key}` });
});

after(async () => {
  await Promise.allSettled([
    ...[...direct.values()].map(({ client }) => client.close()),
    gateway?.client.close(),
  ]);
  await stack?.stop();
});

for (const app of [APP, STDIO_APP])
  describe(`server-everything (${app === APP ? 'Streamable HTTP' : 'stdio'}) through the aggregate endpoint`, () => {
    const prefixed = (name: string) => `${app}__${name}`;
    const prefixedUri = (uri: string) => `${app}+${uri}`;
    const straight = () => direct.get(app)!;

    it('initializes with the gateway as server and the negotiated protocol version', () => {
      assert.equal(gateway.client.getServerVersion()?.name, 'portcullis-gateway');
      const capabilities = gateway.client.getServerCapabilities();
      assert.ok(
        capabilities?.tools &&
          capabilities.resources?.subscribe &&
          capabilities.prompts &&
          capabilities.logging,
      );
    });

    it('lists the same tools, namespaced, with identical definitions (the pinned members of each)', async () => {
      const [all, listed] = await Promise.all([gateway.client.listTools(), straight().client.listTools()]);
      const mine = { tools: all.tools.filter((tool) => tool.name.startsWith(`${app}__`)) };
      // What the pin covers, nothing else: members outside it (execution, _meta, icons) could
      // change after approval unseen, so the gateway does not pass them on.
      const expected = listed.tools.map((tool) => ({ ...pinnedMembers(tool), name: prefixed(tool.name) }));
      const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
      assert.deepEqual(mine.tools.toSorted(byName), expected.toSorted(byName));
      assert.ok(mine.tools.some((tool) => tool.name === prefixed('trigger-sampling-request')));
    });

    it('calls tools with identical results', async () => {
      for (const [name, args] of [
        ['echo', { message: 'hello through the gateway' }],
        ['get-sum', { a: 19, b: 23 }],
        ['get-structured-content', { location: 'New York' }],
        ['get-tiny-image', {}],
      ] as const) {
        const [mine, theirs] = await Promise.all([
          gateway.client.callTool({ name: prefixed(name), arguments: args }),
          straight().client.callTool({ name, arguments: args }),
        ]);
        assert.deepEqual(mine, theirs, name);
      }
    });

    it('passes upstream errors through faithfully', async () => {
      const outcome = async (call: () => Promise<unknown>) =>
        call().then(
          (result) => ({ result }),
          (error: Error & { code?: number }) => ({ code: error.code, message: error.message }),
        );
      const [mine, theirs] = await Promise.all([
        outcome(() =>
          gateway.client.callTool({ name: prefixed('get-sum'), arguments: { a: 'not a number' } }),
        ),
        outcome(() => straight().client.callTool({ name: 'get-sum', arguments: { a: 'not a number' } })),
      ]);
      assert.deepEqual(mine, theirs);
    });

    it('relays progress notifications of a long-running tool', async () => {
      const run = async (client: Client, name: string) => {
        const progress: Progress[] = [];
        const result = await client.callTool({ name, arguments: { duration: 0.6, steps: 3 } }, undefined, {
          onprogress: (update) => progress.push(update),
        });
        return { result, progress: progress.map(({ progress: step, total }) => ({ step, total })) };
      };
      const [mine, theirs] = await Promise.all([
        run(gateway.client, prefixed('trigger-long-running-operation')),
        run(straight().client, 'trigger-long-running-operation'),
      ]);
      // Every step, in order, as the server sends them; the result as the server gives it. (The
      // direct SDK stdio client now and then drops a last notification that races the result, so
      // the steps are compared with what the server sends rather than with that client.)
      assert.deepEqual(
        mine.progress,
        [1, 2, 3].map((step) => ({ step, total: 3 })),
      );
      assert.deepEqual(mine.result, theirs.result);
    });

    it('cancels a call upstream when the client cancels, without hanging', async () => {
      const controller = new AbortController();
      const started = performance.now();
      const call = gateway.client.callTool(
        { name: prefixed('trigger-long-running-operation'), arguments: { duration: 20, steps: 20 } },
        undefined,
        { signal: controller.signal },
      );
      setTimeout(() => controller.abort('changed my mind'), 300);
      await assert.rejects(call);
      assert.ok(performance.now() - started < 5000, 'the cancellation took effect promptly');
      await gateway.client.ping();
    });

    it('relays sampling, elicitation and roots requests to the client and their answers back', async () => {
      // One gateway client serves both variants: count what this test adds.
      const before = {
        ...gateway.log,
        samplingRequests: gateway.log.samplingRequests.length,
        elicitationRequests: gateway.log.elicitationRequests.length,
      };
      const sampled = await gateway.client.callTool({
        name: prefixed('trigger-sampling-request'),
        arguments: { prompt: 'Say hello', maxTokens: 20 },
      });
      assert.match(JSON.stringify(sampled), /sampled by the e2e client/);
      assert.equal(gateway.log.samplingRequests.length, before.samplingRequests + 1);

      const elicited = await gateway.client.callTool({
        name: prefixed('trigger-elicitation-request'),
        arguments: {},
      });
      assert.match(JSON.stringify(elicited), /Ada Lovelace/);
      assert.equal(gateway.log.elicitationRequests.length, before.elicitationRequests + 1);

      const roots = await gateway.client.callTool({ name: prefixed('get-roots-list'), arguments: {} });
      assert.match(JSON.stringify(roots), /file:\/\/\/workspace\/project/);
      assert.ok(gateway.log.rootsRequests > 0);
    });

    it('lists and reads resources and templates, namespaced, with identical contents', async () => {
      const [all, theirs] = await Promise.all([
        gateway.client.listResources(),
        straight().client.listResources(),
      ]);
      const mine = { resources: all.resources.filter((resource) => resource.uri.startsWith(`${app}+`)) };
      assert.deepEqual(
        mine.resources,
        theirs.resources.map((resource) => ({ ...resource, uri: prefixedUri(resource.uri) })),
      );
      const [myTemplates, theirTemplates] = await Promise.all([
        gateway.client.listResourceTemplates(),
        straight().client.listResourceTemplates(),
      ]);
      assert.deepEqual(
        myTemplates.resourceTemplates.filter((template) => template.uriTemplate.startsWith(`${app}+`)),
        theirTemplates.resourceTemplates.map((template) => ({
          ...template,
          uriTemplate: prefixedUri(template.uriTemplate),
        })),
      );
      const first = theirs.resources[0]!;
      const [read, readDirect] = await Promise.all([
        gateway.client.readResource({ uri: prefixedUri(first.uri) }),
        straight().client.readResource({ uri: first.uri }),
      ]);
      assert.deepEqual(withoutClock(read), withoutClock(readDirect));
      const dynamic = 'demo://resource/dynamic/text/7';
      assert.deepEqual(
        withoutClock(await gateway.client.readResource({ uri: prefixedUri(dynamic) })),
        withoutClock(await straight().client.readResource({ uri: dynamic })),
      );
    });

    it('delivers resource update notifications for a subscription, and stops after unsubscribe', async () => {
      const uri = 'demo://resource/static/document/architecture.md';
      const updates: string[] = [];
      gateway.client.setNotificationHandler(ResourceUpdatedNotificationSchema, (notification) => {
        updates.push(notification.params.uri);
      });
      await gateway.client.subscribeResource({ uri: prefixedUri(uri) });
      await gateway.client.callTool({ name: prefixed('toggle-subscriber-updates'), arguments: {} });
      try {
        const deadline = performance.now() + 12_000;
        while (updates.length === 0 && performance.now() < deadline)
          await new Promise((r) => setTimeout(r, 100));
        assert.deepEqual([...new Set(updates)], [prefixedUri(uri)]);
      } finally {
        await gateway.client.callTool({ name: prefixed('toggle-subscriber-updates'), arguments: {} });
        await gateway.client.unsubscribeResource({ uri: prefixedUri(uri) });
      }
    });

    it('lists and gets prompts, and completes their arguments, like the server does', async () => {
      const [all, theirs] = await Promise.all([
        gateway.client.listPrompts(),
        straight().client.listPrompts(),
      ]);
      assert.deepEqual(
        all.prompts.filter((prompt) => prompt.name.startsWith(`${app}__`)),
        theirs.prompts.map((prompt) => ({ ...prompt, name: prefixed(prompt.name) })),
      );
      for (const [name, args] of [
        ['simple-prompt', {}],
        ['args-prompt', { city: 'Lisbon', state: 'Lisboa' }],
      ] as const) {
        const [got, gotDirect] = await Promise.all([
          gateway.client.getPrompt({ name: prefixed(name), arguments: args }),
          straight().client.getPrompt({ name, arguments: args }),
        ]);
        assert.deepEqual(got, gotDirect, name);
      }
      const argument = { name: 'department', value: 'E' };
      const [completed, completedDirect] = await Promise.all([
        gateway.client.complete({
          ref: { type: 'ref/prompt', name: prefixed('completable-prompt') },
          argument,
        }),
        straight().client.complete({ ref: { type: 'ref/prompt', name: 'completable-prompt' }, argument }),
      ]);
      assert.deepEqual(completed, completedDirect);
      assert.ok(completed.completion.values.length > 0);
    });

    it('sets the log level upstream and relays log messages', async () => {
      const messages: unknown[] = [];
      gateway.client.setNotificationHandler(LoggingMessageNotificationSchema, (notification) => {
        messages.push(notification.params);
      });
      await gateway.client.setLoggingLevel('debug');
      await gateway.client.callTool({ name: prefixed('toggle-simulated-logging'), arguments: {} });
      try {
        const deadline = performance.now() + 12_000;
        while (messages.length === 0 && performance.now() < deadline)
          await new Promise((r) => setTimeout(r, 100));
        assert.ok(messages.length > 0, 'log messages arrived through the gateway');
      } finally {
        await gateway.client.callTool({ name: prefixed('toggle-simulated-logging'), arguments: {} });
      }
    });

    it('answers ping', async () => {
      assert.deepEqual(await gateway.client.ping(), {});
    });
  });

describe("an app's own endpoint", () => {
  it('serves the same app without prefixes', async () => {
    const own = await capableClient(`${brokerUrl}/mcp/apps/${APP}`, { Authorization: `Bearer ${key}` });
    try {
      const [mine, theirs] = await Promise.all([own.client.listTools(), direct.get(APP)!.client.listTools()]);
      assert.deepEqual(
        mine.tools.map((tool) => tool.name).sort(),
        theirs.tools.map((tool) => tool.name).sort(),
      );
      assert.deepEqual(
        await own.client.callTool({ name: 'echo', arguments: { message: 'own endpoint' } }),
        await direct.get(APP)!.client.callTool({ name: 'echo', arguments: { message: 'own endpoint' } }),
      );
    } finally {
      await own.client.close();
    }
  });
});

describe('bounds per session', () => {
  it('holds at most 100 resource subscriptions, refusing the next with too_many_subscriptions', async () => {
    const own = await capableClient(`${brokerUrl}/mcp/apps/${APP}`, { Authorization: `Bearer ${key}` });
    const uri = (n: number) => `demo://resource/dynamic/text/${n}`;
    try {
      for (let n = 1; n <= 100; n++) await own.client.subscribeResource({ uri: uri(n) });
      await assert.rejects(own.client.subscribeResource({ uri: uri(101) }), (error: McpError) => {
        assert.equal(error.code, -32602);
        assert.deepEqual(error.data, { code: 'too_many_subscriptions', limit: 100 });
        return true;
      });
      // One it already holds is no new subscription; a place freed by unsubscribing can be taken.
      await own.client.subscribeResource({ uri: uri(7) });
      await own.client.unsubscribeResource({ uri: uri(7) });
      await own.client.subscribeResource({ uri: uri(101) });
    } finally {
      await own.client.close();
    }
  });
});

describe('a second client nobody here wrote: the MCP Inspector CLI', () => {
  const inspector = join(
    dirname(require.resolve('@modelcontextprotocol/inspector-cli/package.json')),
    'build/index.js',
  );
  const inspect = async (...args: string[]) => {
    const { stdout } = await run(
      process.execPath,
      [
        inspector,
        `${brokerUrl}/mcp`,
        '--transport',
        'http',
        '--header',
        `Authorization: Bearer ${key}`,
        ...args,
      ],
      // The CLI finds its own package.json relative to the working directory.
      { timeout: 30_000, cwd: dirname(inspector) },
    );
    return JSON.parse(stdout) as Record<string, unknown>;
  };

  it('lists tools through the gateway', async () => {
    const listed = (await inspect('--method', 'tools/list')) as { tools: { name: string }[] };
    assert.ok(listed.tools.some((tool) => tool.name === `${APP}__echo`));
  });

  it('calls a tool through the gateway', async () => {
    const called = await inspect(
      '--method',
      'tools/call',
      '--tool-name',
      `${APP}__echo`,
      '--tool-arg',
      'message=inspected',
    );
    assert.match(JSON.stringify(called), /inspected/);
  });
});

/**
 * server-everything's dynamic resources say when they were made, to the second: two reads of the
 * same resource can straddle a second, so the time of day is masked before comparing.
 */
function withoutClock<T>(result: T): T {
  return JSON.parse(JSON.stringify(result).replace(/\b\d{1,2}:\d{2}:\d{2}( [AP]M)?/g, '<time>')) as T;
}
