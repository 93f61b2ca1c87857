/**
 * A minimal raw MCP server for `pnpm bench:gateway`: initialize, tools/list and an echo
 * tools/call, JSON responses only, on plain node:http, so its own cost is close to nothing.
 * Usage: node test/bench/raw-upstream.ts <port>
 */
import { createServer } from 'node:http';

const port = Number(process.argv[2]);
const tool = {
  name: 'echo',
  description: 'Echoes its message',
  inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
  annotations: { readOnlyHint: true },
};

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    if (req.method !== 'POST') {
      res.writeHead(req.method === 'DELETE' ? 200 : 405).end();
      return;
    }
    const message = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      id?: number | string;
      method: string;
      params?: { arguments?: { message?: string }; protocolVersion?: string };
    };
    if (message.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    let result: unknown;
    if (message.method === 'initialize')
      result = {
        protocolVersion: message.params?.protocolVersion ?? '2025-06-18',
        capabilities: { tools: {} },
        serverInfo: { name: 'raw-echo', version: '1' },
      };
    else if (message.method === 'tools/list') result = { tools: [tool] };
    else if (message.method === 'tools/call')
      result = { content: [{ type: 'text', text: message.params?.arguments?.message ?? '' }] };
    else result = {};
    const body = JSON.stringify({ jsonrpc: '2.0', id: message.id, result });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'mcp-session-id': 'raw-upstream-session',
    });
    res.end(body);
  });
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
