import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ListRootsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';

const require = createRequire(import.meta.url);

/** The entry script of `@modelcontextprotocol/server-filesystem`. */
export const filesystemScript = join(
  dirname(require.resolve('@modelcontextprotocol/server-filesystem/package.json')),
  'dist/index.js',
);

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
  target: string | Transport,
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
  await client.connect(
    typeof target === 'string'
      ? new StreamableHTTPClientTransport(new URL(target), { requestInit: { headers } })
      : target,
  );
  return { client, log };
}
