import type { ServerResponse } from 'node:http';
import type { JsonRpcMessage } from '../upstream/connection.ts';

/**
 * Most bytes a stream may have waiting for a client that does not read: beyond it the stream is
 * closed (the client reconnects and misses what was dropped) rather than held in memory.
 */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

const SSE_HEADERS = {
  'content-type': 'text/event-stream',
  'cache-control': 'no-cache, no-transform',
  'x-accel-buffering': 'no',
};

/** Writes one server-sent event carrying a JSON-RPC message. */
function writeEvent(res: ServerResponse, message: JsonRpcMessage, eventId?: string): boolean {
  return res.write(
    `${eventId ? `id: ${eventId}\n` : ''}event: message\ndata: ${JSON.stringify(message)}\n\n`,
  );
}

/**
 * The answer to one POSTed request. It starts as a plain JSON response and turns into an SSE
 * stream only when something must reach the client before the final response (progress, log
 * messages, a server-initiated request): the common case costs one JSON write, and clients that
 * accept only JSON still get every final answer.
 */
export class ReplyChannel {
  readonly #res: ServerResponse;
  readonly #headers: Record<string, string>;
  readonly #canStream: boolean;
  #streaming = false;
  #done = false;

  constructor(res: ServerResponse, headers: Record<string, string>, acceptsEventStream: boolean) {
    this.#res = res;
    this.#headers = headers;
    this.#canStream = acceptsEventStream;
  }

  /** False when the client accepts only JSON, so nothing can reach it before the final answer. */
  get canStream(): boolean {
    return this.#canStream && !this.#done;
  }

  /** Sends a message ahead of the final response; false when it could not be delivered. */
  send(message: JsonRpcMessage): boolean {
    if (!this.canStream || this.#res.destroyed) return false;
    if (!this.#streaming) {
      this.#streaming = true;
      this.#res.writeHead(200, { ...SSE_HEADERS, ...this.#headers });
    }
    if (this.#res.writableLength > MAX_BUFFERED_BYTES) {
      this.#res.destroy();
      return false;
    }
    writeEvent(this.#res, message);
    return true;
  }

  /** Sends the final response and ends the HTTP response. */
  finish(message: JsonRpcMessage, status = 200): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#res.destroyed) return;
    if (this.#streaming) {
      writeEvent(this.#res, message);
      this.#res.end();
      return;
    }
    const body = JSON.stringify(message);
    this.#res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      ...this.#headers,
    });
    this.#res.end(body);
  }

  /** Invokes `listener` if the client goes away before the final response. */
  onAbandoned(listener: () => void): void {
    this.#res.once('close', () => {
      if (!this.#done) listener();
    });
  }
}

/**
 * The session's standalone stream (GET): server-to-client messages not tied to a request —
 * list_changed, resource updates, log messages, and server-initiated requests. A comment line every
 * `keepAliveMs` keeps proxies from closing an idle stream.
 */
export class NotificationStream {
  readonly #res: ServerResponse;
  readonly #timer: NodeJS.Timeout;
  #closed = false;
  #sequence = 0;

  constructor(res: ServerResponse, headers: Record<string, string>, keepAliveMs: number) {
    this.#res = res;
    res.writeHead(200, { ...SSE_HEADERS, ...headers });
    // An early comment flushes the headers through proxies at once.
    res.write(': stream open\n\n');
    this.#timer = setInterval(() => res.write(': keep-alive\n\n'), keepAliveMs);
    this.#timer.unref();
    res.once('close', () => this.close());
  }

  send(message: JsonRpcMessage): boolean {
    if (this.#closed) return false;
    if (this.#res.writableLength > MAX_BUFFERED_BYTES) {
      this.close();
      return false;
    }
    this.#sequence++;
    writeEvent(this.#res, message, String(this.#sequence));
    return true;
  }

  onClose(listener: () => void): void {
    if (this.#closed) listener();
    else this.#res.once('close', listener);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (!this.#res.writableEnded) this.#res.end();
  }
}
