import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A plain round-robin HTTP load balancer, as in front of broker replicas in production: no sticky
 * sessions, each request to the next backend in turn. Like nginx's `proxy_next_upstream error`, a
 * backend that refuses the connection is skipped for that request (the request body is buffered so
 * it can be replayed). Responses, SSE streams included, are piped through unbuffered.
 */
export class RoundRobinProxy {
  readonly #server: Server;
  readonly backends: string[];
  #next = 0;
  /** Which backend served each request, in order, for tests to inspect. */
  readonly served: string[] = [];

  private constructor(server: Server, backends: string[]) {
    this.#server = server;
    this.backends = backends;
  }

  static async start(backends: string[]): Promise<RoundRobinProxy> {
    let proxy: RoundRobinProxy | undefined;
    const server = createServer((req, res) => {
      void proxy!.#forward(req, res);
    });
    proxy = new RoundRobinProxy(server, backends);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async #forward(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks);
    for (let attempt = 0; attempt < this.backends.length; attempt++) {
      const backend = this.backends[this.#next++ % this.backends.length]!;
      const outcome = await new Promise<'sent' | 'refused'>((resolve) => {
        const target = new URL(req.url ?? '/', backend);
        const upstream = httpRequest(
          target,
          { method: req.method, headers: { ...req.headers, host: target.host } },
          (response) => {
            this.served.push(backend);
            res.writeHead(response.statusCode ?? 502, response.headers);
            response.pipe(res);
            res.once('close', () => response.destroy());
            resolve('sent');
          },
        );
        upstream.once('error', (error: NodeJS.ErrnoException) => {
          if (!res.headersSent && (error.code === 'ECONNREFUSED' || error.code === 'ECONNRESET'))
            resolve('refused');
          else {
            res.destroy();
            resolve('sent');
          }
        });
        res.once('close', () => upstream.destroy());
        upstream.end(body);
      });
      if (outcome === 'sent') return;
    }
    res.writeHead(502, { 'content-type': 'text/plain' }).end('no backend available');
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }
}
