import assert from 'node:assert/strict';
import { createServer, type Server as HttpServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ErrorCode, ListToolsRequestSchema, McpError, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { toolFingerprint } from '@portcullis/contracts';
import { freePort } from '@portcullis/testing';
import { listUpstreamTools, stdioParameters, UpstreamToolsError } from './upstream-tools.ts';

// The registration-time listing through the SDK client: pagination is followed, broken listings
// are refused with a code, and a stdio child gets exactly the configured environment. The paging
// server is the SDK's own Server over its Streamable HTTP transport (server-everything does not
// paginate); the environment check runs the real server-everything.

const everything = join(
  dirname(createRequire(import.meta.url).resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist/index.js',
);

/** What the paging server answers to tools/list, by scenario (the URL path). */
const scenarios: Record<string, (cursor: string | undefined) => { tools: Tool[]; nextCursor?: string }> = {
  paged: (cursor) => {
    const page = Number(cursor ?? 0);
    const tools = [0, 1].map((i) => ({
      name: `tool-${page}-${i}`,
      description: `page ${page}`,
      inputSchema: { type: 'object' as const },
    }));
    return page < 2 ? { tools, nextCursor: String(page + 1) } : { tools };
  },
  duplicate: (cursor) => ({
    tools: [{ name: 'same', inputSchema: { type: 'object' as const } }],
    ...(cursor ? {} : { nextCursor: 'again' }),
  }),
  endless: (cursor) => ({ tools: [], nextCursor: `${Number(cursor ?? 0) + 1}` }),
  vendor: () => ({
    tools: [
      {
        name: 'annotated',
        inputSchema: { type: 'object' as const },
        // A member of annotations the SDK's schema does not know: kept by the broker's raw listing.
        annotations: { readOnlyHint: true, 'x-vendor-risk': 'low' } as Tool['annotations'],
      },
      { name: 'unstorable', description: 'nul \u0000 inside', inputSchema: { type: 'object' as const } },
    ],
  }),
  odd: () => ({
    tools: [
      { name: 'fine', inputSchema: { type: 'object' as const } },
      { name: 'a/../b', inputSchema: { type: 'object' as const } },
    ],
  }),
};

let http: HttpServer;
let base: string;

before(async () => {
  http = createServer(async (req, res) => {
    const scenario = req.url?.slice(1) ?? '';
    // Stateless: one SDK server and transport per request, as the SDK documents for that mode.
    const server = new Server({ name: 'paging', version: '1.0.0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, (request) => {
      const answer = scenarios[scenario];
      if (!answer) throw new McpError(ErrorCode.MethodNotFound, 'no tools here');
      return answer(request.params?.cursor);
    });
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    await server.connect(transport);
    res.on('close', () => void server.close());
    await transport.handleRequest(req, res);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => http.listen(port, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${port}`;
});

after(() => new Promise<void>((resolve) => http.close(() => resolve())));

const list = (path: string) =>
  listUpstreamTools({ type: 'http', url: `${base}/${path}` }, { timeoutMs: 5000 });

test('every page of tools/list is followed and each tool fingerprinted', async () => {
  const listed = await list('paged');
  assert.deepEqual(
    [...listed.tools.keys()],
    ['tool-0-0', 'tool-0-1', 'tool-1-0', 'tool-1-1', 'tool-2-0', 'tool-2-1'],
  );
  const pin = listed.tools.get('tool-1-0')!;
  assert.equal(
    pin.fingerprint,
    toolFingerprint({ name: 'tool-1-0', description: 'page 1', inputSchema: { type: 'object' } }),
  );
  assert.deepEqual(listed.rejected, []);
});

test('pins are made from the listing as the upstream sent it, as the broker fingerprints it', async () => {
  const listed = await list('vendor');
  const raw = {
    name: 'annotated',
    inputSchema: { type: 'object' },
    annotations: { readOnlyHint: true, 'x-vendor-risk': 'low' },
  };
  // Through the SDK's listTools() the unknown member was dropped: a pin the broker never matched.
  assert.equal(listed.tools.get('annotated')?.fingerprint, toolFingerprint(raw));
  assert.deepEqual(
    listed.rejected.map((each) => each.name),
    ['unstorable'],
    'a definition no database can store is rejected, not pinned',
  );
});

test('a broken listing is refused with upstream_invalid; bad names are left unpinned', async () => {
  const failure = async (path: string) => {
    const error = await list(path).then(
      () => assert.fail('expected a failure'),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof UpstreamToolsError);
    return error;
  };
  assert.match((await failure('duplicate')).message, /lists the tool same twice/);
  assert.equal((await failure('duplicate')).code, 'upstream_invalid');
  assert.match((await failure('endless')).message, /did not end after 100 pages/);
  const refused = await failure('nothing');
  assert.equal(refused.code, 'upstream_invalid');
  assert.match(refused.message, /no tools here/);
  const odd = await list('odd');
  assert.deepEqual([...odd.tools.keys()], ['fine']);
  assert.deepEqual(odd.rejected, [{ name: 'a/../b', reason: 'not a valid MCP tool name' }]);
});

test('an upstream that is not there, or too slow, is upstream_unreachable', async () => {
  const dead = await listUpstreamTools(
    { type: 'http', url: `http://127.0.0.1:${await freePort()}/mcp` },
    { timeoutMs: 5000 },
  ).catch((error: unknown) => error);
  assert.equal((dead as UpstreamToolsError).code, 'upstream_unreachable');
  // `sleep` never speaks MCP: the deadline ends the attempt and the child with it.
  const started = performance.now();
  const slow = await listUpstreamTools(
    { type: 'stdio', command: '/bin/sleep', args: ['30'], env: {} },
    { timeoutMs: 500 },
  ).catch((error: unknown) => error);
  assert.equal((slow as UpstreamToolsError).code, 'upstream_unreachable');
  assert.match((slow as Error).message, /deadline/);
  assert.ok(performance.now() - started < 10_000);
});

test('a stdio child gets exactly the configured environment, nothing of ours', async () => {
  const client = new Client({ name: 'env-check', version: '1.0.0' });
  await client.connect(
    new StdioClientTransport(
      stdioParameters({
        type: 'stdio',
        command: process.execPath,
        args: [everything, 'stdio'],
        env: { GREETING: 'hello' },
      }),
    ),
  );
  try {
    const result = (await client.callTool({ name: 'get-env', arguments: {} })) as {
      content: { type: string; text: string }[];
    };
    assert.deepEqual(JSON.parse(result.content[0]!.text), { GREETING: 'hello' });
  } finally {
    await client.close();
  }
});
