import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';

// A minimal agent: any MCP client works the same way. It lists the tools it can reach, reads a
// record (allowed), and tries to delete one (denied by policy unless it holds a delete entitlement).
// On the gateway's aggregate endpoint (/mcp) tools are named <app>__<tool>.
const url = process.env.PORTCULLIS_MCP_URL ?? 'http://127.0.0.1:8080/mcp';
const key = process.env.PORTCULLIS_AGENT_KEY;
if (!key) {
  console.error('set PORTCULLIS_AGENT_KEY to an agent key (portcullis directory issue-key <agent>)');
  process.exit(2);
}

const client = new Client({ name: 'example-agent', version: '1.0.0' });
await client.connect(
  new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${key}` } },
  }),
);
const { tools } = await client.listTools();
console.log(`tools: ${tools.map((tool) => tool.name).join(', ')}`);

for (const [name, args] of [
  ['demo__read_record', { id: 'r-1' }],
  ['demo__delete_record', { id: 'r-1' }],
] as const) {
  const result = (await client.callTool({ name, arguments: args })) as CallToolResult;
  const text = result.content.map((part) => (part.type === 'text' ? part.text : `[${part.type}]`)).join(' ');
  console.log(`${name}(${JSON.stringify(args)}) → ${result.isError ? 'ERROR ' : ''}${text}`);
}
await client.close();
