/**
 * The floor of `pnpm bench:gateway`: a bare node:http relay that forwards each request to the
 * raw upstream and its answer back, doing nothing else (no authentication, policy, audit or DLP).
 * What it adds to the direct path is what one more process hop costs on this machine, the part of
 * the gateway's added latency that no work inside the broker can remove.
 * Usage: node test/bench/raw-relay.ts <port> <upstream url>
 */
import { Agent, createServer, request } from 'node:http';

const port = Number(process.argv[2]);
const upstream = new URL(process.argv[3] as string);
const agent = new Agent({ keepAlive: true, maxSockets: 128 });
/** The request headers an MCP exchange needs upstream, and the answer's headers it needs back. */
const FORWARDED = ['content-type', 'accept', 'mcp-session-id', 'mcp-protocol-version'];
const RETURNED = ['content-type', 'mcp-session-id'];

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const headers: Record<string, string | number> = { 'content-length': body.length };
    for (const name of FORWARDED) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    const forwarded = request(
      {
        hostname: upstream.hostname,
        port: upstream.port,
        path: upstream.pathname,
        method: req.method,
        headers,
        agent,
      },
      (answer) => {
        const back: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => back.push(chunk));
        answer.on('end', () => {
          const payload = Buffer.concat(back);
          const returned: Record<string, string | number> = { 'content-length': payload.length };
          for (const name of RETURNED) {
            const value = answer.headers[name];
            if (typeof value === 'string') returned[name] = value;
          }
          res.writeHead(answer.statusCode ?? 502, returned).end(payload);
        });
      },
    );
    forwarded.on('error', () => res.writeHead(502).end());
    forwarded.end(body);
  });
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
