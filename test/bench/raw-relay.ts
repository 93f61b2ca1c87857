/**
 * The floor of `pnpm bench:gateway`: a bare node:http relay that forwards each request to the
 * raw upstream and its answer back, doing nothing else (no authentication, policy, audit or DLP).
 * What it adds to the direct path is what one more process hop costs on this machine, the part of
 * the gateway's added latency that no work inside the broker can remove.
 * Usage: node test/bench/raw-relay.ts <port> <upstream url>
 */
import { closeSync, constants, openSync, unlinkSync, write } from 'node:fs';
import { Agent, createServer, type IncomingHttpHeaders, request } from 'node:http';
import { join } from 'node:path';

const port = Number(process.argv[2]);
const upstream = new URL(process.argv[3] as string);
/** With a directory: before forwarding, one O_DSYNC append of an audit-sized record there. */
const durableDir = process.argv[4];
const durablePath = durableDir ? join(durableDir, `relay-${process.pid}.log`) : undefined;
const durableFd = durablePath
  ? openSync(durablePath, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_DSYNC)
  : undefined;
const AUDIT_SIZED_RECORD = Buffer.alloc(700, 0x61);
const agent = new Agent({ keepAlive: true, maxSockets: 128 });
/** The request headers an MCP exchange needs upstream, and the answer's headers it needs back. */
const FORWARDED = ['content-type', 'accept', 'mcp-session-id', 'mcp-protocol-version'];
const RETURNED = ['content-type', 'mcp-session-id'];

/** The named headers of a message, with the content length of the body about to be sent. */
function picked(from: IncomingHttpHeaders, names: string[], length: number): Record<string, string | number> {
  const headers: Record<string, string | number> = { 'content-length': length };
  for (const name of names) {
    const value = from[name];
    if (typeof value === 'string') headers[name] = value;
  }
  return headers;
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    if (durableFd === undefined) forward();
    else
      write(durableFd, AUDIT_SIZED_RECORD, (error) => {
        if (error) res.writeHead(500).end();
        else forward();
      });
  });
  const forward = () => {
    const body = Buffer.concat(chunks);
    const headers = picked(req.headers, FORWARDED, body.length);
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
          res
            .writeHead(answer.statusCode ?? 502, picked(answer.headers, RETURNED, payload.length))
            .end(payload);
        });
      },
    );
    forwarded.on('error', () => res.writeHead(502).end());
    forwarded.end(body);
  };
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () =>
  server.close(() => {
    if (durableFd !== undefined && durablePath) {
      closeSync(durableFd);
      unlinkSync(durablePath);
    }
    process.exit(0);
  }),
);
