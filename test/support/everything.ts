import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { freePort, type ServiceProcess, startProcess, waitFor } from '@portcullis/testing';

const require = createRequire(import.meta.url);

/** The entry script of `@modelcontextprotocol/server-everything`, a real MCP server nobody here wrote. */
export const everythingScript = join(
  dirname(require.resolve('@modelcontextprotocol/server-everything/package.json')),
  'dist/index.js',
);

/** The entry script of `@modelcontextprotocol/server-filesystem`. */
export const filesystemScript = join(
  dirname(require.resolve('@modelcontextprotocol/server-filesystem/package.json')),
  'dist/index.js',
);

/** Starts server-everything over Streamable HTTP; returns its /mcp URL and process. */
export async function startEverythingHttp(): Promise<{ url: string; process: ServiceProcess }> {
  const port = await freePort();
  const process = await startProcess({
    name: 'server-everything',
    script: everythingScript,
    args: ['streamableHttp'],
    env: { PORT: String(port) },
  });
  const url = `http://127.0.0.1:${port}/mcp`;
  await waitFor('server-everything listening', async () => {
    try {
      await fetch(url, { method: 'GET' });
      return true;
    } catch {
      return false;
    }
  });
  return { url, process };
}

/** What a test client saw arrive from the server while it ran. */
export interface ClientLog {
  samplingRequests: unknown[];
  elicitationRequests: unknown[];
  rootsRequests: number;
}

export const CLIENT_ROOTS = [{ uri: 'file:///workspace/project', name: 'project' }];

/**
 * An SDK client declaring sampling, elicitation and roots, answering each with fixed, recognisable
 * values, so a test can tell the server-initiated requests reached it through whatever is between.
 */
export async function capableClient(
  url: string,
  headers: Record<string, string> = {},
): Promise<{ client: Client; log: ClientLog }> {
  const log: ClientLog = { samplingRequests: [], elicitationRequests: [], rootsRequests: 0 };
  const client = new Client(
    { name: 'portcullis-e2e', version: '1.0.0' },
    { capabilities: { sampling: {}, elicitation: { form: {} }, roots: { listChanged: true } } },
  );
  client.setRequestHandler(CreateMessageRequestSchema, async (request) => {
    log.samplingRequests.push(request.params);
    return {
      model: 'e2e-model',
      role: 'assistant',
      content: { type: 'text', text: 'sampled by the e2e client' },
    };
  });
  client.setRequestHandler(ElicitRequestSchema, async (request) => {
    log.elicitationRequests.push(request.params);
    return { action: 'accept', content: { name: 'Ada Lovelace', email: 'ada@example.org' } };
  });
  client.setRequestHandler(ListRootsRequestSchema, async () => {
    log.rootsRequests++;
    return { roots: CLIENT_ROOTS };
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } }));
  return { client, log };
}
