import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { Client as SdkClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { pinnedMembers } from '@portcullis/contracts';
import { waitFor } from '@portcullis/testing';
import { actionClassOf } from '../../services/broker/src/action-class.ts';
import { connectAgent } from '../support/agent.ts';
import { filesystemScript } from '../support/everything.ts';
import { TestStack } from '../support/stack.ts';

// @modelcontextprotocol/server-filesystem (nobody here wrote it) registered as a stdio app over a
// temporary directory, behind a real broker. What an agent sees and may do follows the tools' own
// MCP annotations: with a read grant it lists exactly the read-only tools and reads files as it
// would directly, and a write is denied by policy before it reaches the server; a write grant
// covers the non-destructive writes, and an admin's action-class override covers write_file.

const APP = 'fs';
const FILE_TEXT = 'Portcullis keeps the gate.\nSecond line of the note.\n';
let stack: TestStack;
let dir = '';
let file = '';
let brokerUrl = '';
let direct: Client;
let directTools: Tool[] = [];
const keys: Record<string, string> = {};

async function ok(response: Response, status = 200): Promise<unknown> {
  const text = await response.text();
  assert.equal(response.status, status, text);
  return text ? (JSON.parse(text) as unknown) : undefined;
}

const prefixed = (name: string) => `${APP}__${name}`;
const unprefixed = (name: string) => name.slice(APP.length + 2);
const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);

/** The upstream's own tools whose action class (from their annotations) is one of `classes`. */
const toolsOfClasses = (...classes: string[]) =>
  directTools.filter((tool) => classes.includes(actionClassOf(tool.annotations))).map((tool) => tool.name);

async function withAgent<T>(name: string, work: (client: Client) => Promise<T>): Promise<T> {
  const client = await connectAgent(brokerUrl, keys[name]!, name, '/mcp');
  try {
    return await work(client);
  } finally {
    await client.close();
  }
}

async function expectDenied(client: Client, tool: string, args: Record<string, unknown>): Promise<void> {
  const result = (await client.callTool({ name: prefixed(tool), arguments: args })) as CallToolResult;
  assert.equal(result.isError, true, JSON.stringify(result));
  const decision = result._meta?.['portcullis/decision'] as { code: string; reasons: string[] };
  assert.equal(decision.code, 'denied');
  assert.deepEqual(decision.reasons, ['no_entitlement']);
}

before(async () => {
  stack = await TestStack.create();
  dir = await stack.scratchDir('portcullis-fs-');
  file = join(dir, 'note.txt');
  await writeFile(file, FILE_TEXT);
  await stack.startDecision();
  const transport = { type: 'stdio', command: process.execPath, args: [filesystemScript, dir] };
  await ok(await stack.api('PUT', `/v1/apps/${APP}/connection`, { name: 'Files', transport }));
  for (const [agent, actions] of [
    ['fs-reader', ['read']],
    ['fs-writer', ['read', 'write']],
  ] as const) {
    await ok(await stack.api('PUT', `/v1/agents/${agent}`, { owner: 'fiona@example.com' }));
    await ok(
      await stack.api('PUT', `/v1/agents/${agent}/entitlements/${APP}`, { grants: [{ actions }] }),
      204,
    );
    keys[agent] = (
      (await ok(await stack.api('POST', `/v1/agents/${agent}/keys`), 201)) as { key: string }
    ).key;
  }
  await stack.directoryPublished();
  brokerUrl = (await stack.startBroker({ UPSTREAM_URL: '', UPSTREAM_APP_ID: '' })).url;

  direct = new SdkClient({ name: 'fs-direct', version: '1.0.0' });
  await direct.connect(
    new StdioClientTransport({ command: transport.command, args: transport.args, stderr: 'ignore' }),
  );
  directTools = (await direct.listTools()).tools;
});

after(async () => {
  await direct?.close();
  await stack?.stop();
});

describe('an agent with a read grant', () => {
  test('lists exactly the tools whose annotations make them read-only, with their definitions', async () => {
    const readOnly = toolsOfClasses('read');
    // Sanity: the server marks its readers readOnlyHint and its writers not.
    assert.ok(readOnly.includes('read_text_file') && readOnly.includes('list_directory'));
    assert.ok(!readOnly.includes('write_file') && !readOnly.includes('create_directory'));
    assert.ok(directTools.length > readOnly.length);

    const listed = await withAgent('fs-reader', async (client) => (await client.listTools()).tools);
    assert.deepEqual(listed.map((tool) => unprefixed(tool.name)).sort(), readOnly.toSorted());
    for (const tool of listed) assert.equal(tool.annotations?.readOnlyHint, true, tool.name);
    // The members the pin covers (execution, _meta and the like are not passed on).
    const expected = directTools
      .filter((tool) => readOnly.includes(tool.name))
      .map((tool) => ({ ...pinnedMembers(tool), name: prefixed(tool.name) }));
    assert.deepEqual(listed.toSorted(byName), expected.toSorted(byName));
  });

  test('reads the file through the gateway exactly as directly', async () => {
    const args = { path: file };
    const [mine, theirs] = await Promise.all([
      withAgent('fs-reader', (client) =>
        client.callTool({ name: prefixed('read_text_file'), arguments: args }),
      ),
      direct.callTool({ name: 'read_text_file', arguments: args }),
    ]);
    assert.deepEqual(mine, theirs);
    assert.equal(((mine as CallToolResult).content[0] as { text: string }).text, FILE_TEXT);
  });

  test('a write is denied by policy with a reason, and the file is unchanged', async () => {
    await withAgent('fs-reader', async (client) => {
      await expectDenied(client, 'write_file', { path: file, content: 'overwritten' });
      await expectDenied(client, 'create_directory', { path: join(dir, 'made-by-reader') });
    });
    assert.equal(await readFile(file, 'utf8'), FILE_TEXT);
    await assert.rejects(stat(join(dir, 'made-by-reader')), { code: 'ENOENT' });
  });
});

describe('an agent with a write grant', () => {
  test('lists the read and write tools; destructive ones (judged delete) stay hidden', async () => {
    const expected = toolsOfClasses('read', 'write');
    assert.ok(expected.includes('create_directory'));
    assert.ok(toolsOfClasses('delete').includes('write_file'), 'write_file declares destructiveHint');
    const listed = await withAgent('fs-writer', async (client) => (await client.listTools()).tools);
    assert.deepEqual(listed.map((tool) => unprefixed(tool.name)).sort(), expected.toSorted());
  });

  test('a write-class tool works; write_file needs more than a write grant', async () => {
    await withAgent('fs-writer', async (client) => {
      const made = (await client.callTool({
        name: prefixed('create_directory'),
        arguments: { path: join(dir, 'reports') },
      })) as CallToolResult;
      assert.notEqual(made.isError, true, JSON.stringify(made));
      assert.ok((await stat(join(dir, 'reports'))).isDirectory());
      await expectDenied(client, 'write_file', { path: file, content: 'overwritten' });
    });
    assert.equal(await readFile(file, 'utf8'), FILE_TEXT);
  });

  test("with an admin's override judging write_file a write, the write grant covers it", async () => {
    const response = await stack.api('PUT', `/v1/apps/${APP}`, {
      name: 'Files',
      policy: { tools: { write_file: { action_class: 'write' } } },
    });
    assert.equal(response.status, 204, await response.text());
    await stack.directoryPublished();
    await withAgent('fs-writer', async (client) => {
      await waitFor('write_file listed', async () =>
        (await client.listTools()).tools.some((tool) => tool.name === prefixed('write_file')),
      );
      const written = (await client.callTool({
        name: prefixed('write_file'),
        arguments: { path: file, content: 'Rewritten through the gateway.\n' },
      })) as CallToolResult;
      assert.notEqual(written.isError, true, JSON.stringify(written));
    });
    assert.equal(await readFile(file, 'utf8'), 'Rewritten through the gateway.\n');
    // The reader's read grant still does not cover it.
    await withAgent('fs-reader', (client) =>
      expectDenied(client, 'write_file', { path: file, content: 'overwritten' }),
    );
    assert.equal(await readFile(file, 'utf8'), 'Rewritten through the gateway.\n');
  });
});
