/**
 * The load generator of `pnpm bench:gateway`: a minimal MCP client speaking HTTP/1.1 straight on
 * keep-alive sockets, the same for every path the bench measures.
 *
 * Why not node:http or undici: on this 2-core machine the load generator shares the CPU with the
 * system under test, so what it spends is taken from the figures. Measured at 500 calls/s in an
 * open loop against the raw upstream (2026-11-29), a `tools/call` cost the load generator about
 * 290–370 µs of CPU through `http.request` and 310–360 µs through undici's `Pool.request`, and
 * about 150 µs here (58 of which are the open loop's own timer). It can be this small because
 * the bench sends one kind of request and its servers answer with a `Content-Length` (or chunked)
 * body: it parses only the status line and the headers of each answer, and frames its body.
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  /** Header names in lower case; a repeated header keeps its last value. */
  headers: Record<string, string>;
  body: Buffer;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const CRLF = Buffer.from('\r\n');
/** An answer larger than this is a broken server, not a benchmark answer. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

/** One keep-alive connection carrying one exchange at a time. */
class Connection {
  readonly #socket: Socket;
  #received: Buffer = Buffer.alloc(0);
  #pending: { resolve: (response: RawResponse) => void; reject: (error: Error) => void } | undefined;
  #broken: Error | undefined;
  #exchanges = 0;
  #answering = false;

  constructor(host: string, port: number) {
    this.#socket = connect(port, host);
    this.#socket.setNoDelay(true);
    this.#socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    this.#socket.on('error', (error) => this.#fail(error));
    this.#socket.on('close', () => this.#fail(new Error('the server closed the connection')));
  }

  get usable(): boolean {
    return this.#broken === undefined;
  }

  /**
   * Whether the exchange that just failed may be sent again elsewhere: the connection had carried
   * an exchange before (kept alive) and nothing of this one's answer came — a server that closed it
   * while idle, its FIN not yet read when the request went out (node's http.Agent retries these).
   */
  get retryable(): boolean {
    return this.#exchanges > 1 && !this.#answering;
  }

  exchange(request: string): Promise<RawResponse> {
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.#pending)
      return Promise.reject(new Error('an exchange is already in flight on this connection'));
    this.#exchanges++;
    this.#answering = false;
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
      this.#socket.write(request);
    });
  }

  close(): void {
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    this.#answering = true;
    this.#received = this.#received.length === 0 ? chunk : Buffer.concat([this.#received, chunk]);
    if (this.#received.length > MAX_RESPONSE_BYTES) {
      this.#fail(new Error(`answer over ${MAX_RESPONSE_BYTES} bytes`));
      return;
    }
    let response: RawResponse | undefined;
    try {
      response = this.#parse();
    } catch (error) {
      this.#fail(error as Error);
      return;
    }
    if (!response) return;
    const pending = this.#pending;
    this.#pending = undefined;
    if (pending) pending.resolve(response);
    else this.#fail(new Error('an answer arrived with no request in flight'));
  }

  /** The complete answer at the start of what was received (consumed), or undefined for more. */
  #parse(): RawResponse | undefined {
    const received = this.#received;
    const headEnd = received.indexOf(HEAD_END);
    if (headEnd < 0) return undefined;
    const lines = received.toString('latin1', 0, headEnd).split('\r\n');
    const statusLine = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
    if (!statusLine) throw new Error(`not an HTTP/1.1 answer: ${lines[0]}`);
    const headers: Record<string, string> = {};
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const bodyStart = headEnd + HEAD_END.length;
    const framed =
      headers['transfer-encoding'] === 'chunked'
        ? dechunk(received, bodyStart)
        : byLength(received, bodyStart, headers['content-length']);
    if (!framed) return undefined;
    this.#received = received.subarray(framed.end);
    if (headers.connection === 'close') this.#fail(new Error('the server closes this connection'));
    return { status: Number(statusLine[1]), headers, body: framed.body };
  }

  #fail(error: Error): void {
    this.#broken ??= error;
    this.#socket.destroy();
    const pending = this.#pending;
    this.#pending = undefined;
    pending?.reject(error);
  }
}

function byLength(
  received: Buffer,
  start: number,
  contentLength: string | undefined,
): { body: Buffer; end: number } | undefined {
  if (contentLength === undefined || !/^\d+$/.test(contentLength)) {
    throw new Error('an answer with neither Content-Length nor chunked framing');
  }
  const end = start + Number(contentLength);
  return received.length < end ? undefined : { body: received.subarray(start, end), end };
}

/** A chunked body's bytes and where the message ends, or undefined while it is incomplete. */
function dechunk(received: Buffer, start: number): { body: Buffer; end: number } | undefined {
  const parts: Buffer[] = [];
  let at = start;
  for (;;) {
    const lineEnd = received.indexOf(CRLF, at);
    if (lineEnd < 0) return undefined;
    const size = Number.parseInt(received.toString('latin1', at, lineEnd).split(';')[0] as string, 16);
    if (!Number.isFinite(size)) throw new Error('a malformed chunk size');
    const dataStart = lineEnd + CRLF.length;
    if (size === 0) {
      // No trailers from these servers: the last chunk is followed by one empty line.
      const end = dataStart + CRLF.length;
      return received.length < end ? undefined : { body: Buffer.concat(parts), end };
    }
    if (received.length < dataStart + size + CRLF.length) return undefined;
    parts.push(received.subarray(dataStart, dataStart + size));
    at = dataStart + size + CRLF.length;
  }
}

/** An MCP client on a pool of keep-alive connections (at most `maxConnections`, then queued). */
export class RawClient {
  readonly #host: string;
  readonly #port: number;
  readonly #path: string;
  readonly #headers: Record<string, string>;
  readonly #maxConnections: number;
  /** Most recently used last, reused first, as node's http.Agent does. */
  readonly #idle: Connection[] = [];
  readonly #waiting: ((connection: Connection) => void)[] = [];
  #open = 0;
  #id = 0;
  #fixedHead = '';

  constructor(url: string, headers: Record<string, string>, maxConnections = 64) {
    const parsed = new URL(url);
    this.#host = parsed.hostname;
    this.#port = Number(parsed.port);
    this.#path = parsed.pathname;
    this.#headers = { ...headers };
    this.#maxConnections = maxConnections;
    this.#buildHead();
  }

  async initialize(): Promise<void> {
    const answer = await this.#post({
      jsonrpc: '2.0',
      id: ++this.#id,
      method: 'initialize',
      params: {
        protocolVersion: '2025-06-18',
        capabilities: {},
        clientInfo: { name: 'bench', version: '1' },
      },
    });
    if (answer.status !== 200) throw new Error(`initialize answered ${answer.status}: ${answer.body}`);
    const session = answer.headers['mcp-session-id'];
    if (session) this.#headers['mcp-session-id'] = session;
    this.#headers['mcp-protocol-version'] = '2025-06-18';
    this.#buildHead();
    await this.#post({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  async call(name: string): Promise<void> {
    const { status, body } = await this.#post({
      jsonrpc: '2.0',
      id: ++this.#id,
      method: 'tools/call',
      params: { name, arguments: { message: 'benchmark payload' } },
    });
    if (status !== 200 || !body.includes('benchmark payload')) {
      throw new Error(`unexpected answer (${status}): ${body.toString('utf8', 0, 300)}`);
    }
  }

  close(): void {
    for (const connection of this.#idle.splice(0)) connection.close();
  }

  /** The request line and the headers every request of this client carries. */
  #buildHead(): void {
    const headers = {
      host: `${this.#host}:${this.#port}`,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...this.#headers,
    };
    this.#fixedHead = `POST ${this.#path} HTTP/1.1\r\n${Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('')}`;
  }

  async #post(message: unknown): Promise<RawResponse> {
    const payload = JSON.stringify(message);
    const request = `${this.#fixedHead}content-length: ${Buffer.byteLength(payload)}\r\n\r\n${payload}`;
    const connection = await this.#take();
    try {
      return await connection.exchange(request);
    } catch (error) {
      if (!connection.retryable) throw error;
    } finally {
      this.#give(connection);
    }
    const fresh = await this.#take();
    try {
      return await fresh.exchange(request);
    } finally {
      this.#give(fresh);
    }
  }

  #take(): Promise<Connection> {
    // A server closes a connection idle past its keep-alive timeout (node's: 5 s); skip those.
    for (let idle = this.#idle.pop(); idle; idle = this.#idle.pop()) {
      if (idle.usable) return Promise.resolve(idle);
      idle.close();
      this.#open--;
    }
    if (this.#open < this.#maxConnections) {
      this.#open++;
      return Promise.resolve(new Connection(this.#host, this.#port));
    }
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #give(connection: Connection): void {
    if (!connection.usable) {
      connection.close();
      this.#open--;
      // A waiter gets a fresh connection in place of the broken one.
      const waiter = this.#waiting.shift();
      if (waiter) {
        this.#open++;
        waiter(new Connection(this.#host, this.#port));
      }
      return;
    }
    const waiter = this.#waiting.shift();
    if (waiter) waiter(connection);
    else this.#idle.push(connection);
  }
}
