import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

/** Connects the official MCP SDK client to a broker as the agent holding `key`. */
export async function connectAgent(
  brokerUrl: string,
  key: string,
  name = 'e2e-agent',
  /** The demo app's own endpoint by default, where tool names carry no app prefix. */
  path = '/mcp/apps/demo',
): Promise<Client> {
  const client = new Client({ name, version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${brokerUrl}${path}`), {
      requestInit: { headers: { Authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}
