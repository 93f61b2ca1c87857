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

/** A raw initialize on the aggregate endpoint with a bearer credential, as any client's first request. */
export function rawInitialize(brokerUrl: string, credential: string): Promise<Response> {
  return fetch(`${brokerUrl}/mcp`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${credential}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
    },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } },
    }),
  });
}
