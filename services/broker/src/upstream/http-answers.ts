import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { UpstreamError, type UpstreamFailure } from './connection.ts';
import { isUnreachableCode, type OpenRequest } from './open-request.ts';
import { type SseEvent, SseParser, SseTooLargeError } from './sse.ts';

/**
 * The answers to an HTTP upstream session's requests, read as undici hands them over
 * (`Dispatcher.dispatch` handlers): no Readable per answer, no promise per chunk. One class per
 * kind of answer, with its state in fields and its callbacks on the prototype — a finished call
 * then leaves nothing but young garbage (young-garbage.test.ts).
 */

/** An SSE answer must end soon after its response: a stream kept open beyond this is cut. */
export const STREAM_LINGER_MS = 5000;
/** How often a POST stream that ended before its response may be resumed with GET + Last-Event-ID. */
const MAX_STREAM_RESUMES = 5;
/** The longest wait an upstream's SSE `retry:` field can ask for. */
const MAX_UPSTREAM_RETRY_MS = 5 * 60_000;

/** Requests that may be sent twice without harm (reads and idempotent settings). */
const RETRY_SAFE_METHODS = new Set([
  'ping',
  'tools/list',
  'resources/list',
  'resources/templates/list',
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
  'prompts/list',
  'prompts/get',
  'completion/complete',
  'logging/setLevel',
]);

/**
 * The reason given to undici when the gateway itself ends a request. undici reports it back
 * through onResponseError at once, inside abort(): handlers ignore it (the aborting code settles
 * the request itself, with the failure that applies).
 */
export const ENDED = new Error('ended by the gateway');

export type ExchangeKind = 'post' | 'resume';

/** One JSON-RPC request in flight over HTTP: the shared bookkeeping plus the HTTP exchange carrying it. */
export interface HttpExchange {
  open: OpenRequest;
  body: string;
  /** undici's handle on the HTTP request in flight, to abort it (set once it is being sent). */
  controller: Dispatcher.DispatchController | undefined;
  /** Until it resolves, the POST is not sent (UpstreamRequestOptions.gate). */
  gate: Promise<unknown> | undefined;
  /** The gate has opened (or there was none): the POST, and any retry of it, may go out. */
  gateOpen: boolean;
  /** Whether any of the exchange's requests reached the upstream (else there is nothing to cancel). */
  sent: boolean;
  retried: boolean;
  resumes: number;
}

/** What an answer's handler needs of its session: made once per session, not per call. */
export interface AnswerRoutes {
  appId: string;
  maxBytes: number;
  sessionId(): string | undefined;
  /** The session id an initialize answer carries. */
  adoptSessionId(sessionId: string): void;
  /** The upstream forgot the session (404). */
  expire(): void;
  onJsonBody(exchange: HttpExchange, body: Buffer, status: number): void;
  /** One message of an SSE answer. */
  onMessage(exchange: HttpExchange, value: unknown): void;
  /** The upstream broke the protocol on this exchange. */
  abandon(exchange: HttpExchange, message: string): void;
  /** Sends the POST again (a connection lost before any answer, for a request safe to repeat). */
  resend(exchange: HttpExchange): void;
  /** Resumes an SSE answer that ended early: GET with Last-Event-ID. */
  resume(exchange: HttpExchange, lastEventId: string): void;
}

/** An SSE event id as a Last-Event-ID value, or undefined if it cannot be one (control characters). */
export function usableEventId(id: string): string | undefined {
  return id.length > 0 && id.length <= 1024 && !/[^\t\x20-\x7e\x80-\xff]/.test(id) ? id : undefined;
}

/** An upstream's `retry:` as a timer delay: bounded (a delay over 2^31-1 ms would fire at once). */
export function upstreamRetry(retryMs: number | undefined): number {
  return Math.min(retryMs ?? 0, MAX_UPSTREAM_RETRY_MS);
}

export function mediaType(header: string | string[] | undefined): string {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return '';
  const semicolon = value.indexOf(';');
  return (semicolon === -1 ? value : value.slice(0, semicolon)).trim().toLowerCase();
}

export function errorCode(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

/**
 * Why a request got no answer at all: unreachable (the connection, or a request that could not
 * be built — named by its error code only, never its text, which may quote a header), or protocol
 * (the answer's HTTP framing was broken).
 */
function requestFailure(error: Error): { failure: UpstreamFailure; message: string } {
  const code = errorCode(error);
  if (code === 'UND_ERR_INVALID_ARG')
    return { failure: 'unreachable', message: `cannot build the upstream request (${code})` };
  if (typeof code === 'string' && code.startsWith('HPE_'))
    return { failure: 'protocol', message: `upstream answered with broken HTTP (${code})` };
  return {
    failure: 'unreachable',
    message: `upstream request failed: ${isUnreachableCode(code) ? String(code) : error.message}`,
  };
}

type AnswerMode = 'pending' | 'json' | 'sse' | 'ignored';

/**
 * The answer to one request of an exchange (the POST of a message, or the GET resuming its SSE
 * stream): application/json read whole within the message bound, text/event-stream parsed as it
 * comes, anything else a protocol failure. Every outcome ends in the exchange's OpenRequest.
 */
export class ExchangeAnswer implements Dispatcher.DispatchHandler {
  readonly #routes: AnswerRoutes;
  readonly #exchange: HttpExchange;
  readonly #kind: ExchangeKind;
  #mode: AnswerMode = 'pending';
  #status = 0;
  #chunks: Buffer[] = [];
  #size = 0;
  #parser: SseParser | undefined;
  #linger: NodeJS.Timeout | undefined;
  #ended = false;

  constructor(routes: AnswerRoutes, exchange: HttpExchange, kind: ExchangeKind) {
    this.#routes = routes;
    this.#exchange = exchange;
    this.#kind = kind;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    const exchange = this.#exchange;
    exchange.controller = controller;
    // Settled while it waited for a connection (deadline, cancellation, close): never written.
    // undici aborts it before its first byte (and drops the connection it was given).
    if (exchange.open.settled) {
      controller.abort(ENDED);
      return;
    }
    // Only now is it written: a request that never got this far has nothing to cancel upstream.
    exchange.sent = true;
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    status: number,
    headers: IncomingHttpHeaders,
  ): void {
    const open = this.#exchange.open;
    if (open.settled) {
      controller.abort(ENDED);
      return;
    }
    this.#status = status;
    if (open.method === 'initialize' && this.#kind === 'post') {
      const sessionId = headers['mcp-session-id'];
      if (typeof sessionId === 'string' && sessionId.length > 0) this.#routes.adoptSessionId(sessionId);
    }
    if (status === 404 && this.#routes.sessionId() && open.method !== 'initialize') {
      this.#ignoreRest(controller);
      this.#routes.expire();
      return;
    }
    const type = mediaType(headers['content-type']);
    if (status === 200 && type === 'text/event-stream') {
      this.#readStream(controller);
      return;
    }
    if (type === 'application/json' && ((status >= 200 && status < 300) || status >= 400)) {
      const declared = Number(headers['content-length']);
      if (Number.isFinite(declared) && declared > this.#routes.maxBytes) {
        this.#tooLarge(controller);
        return;
      }
      this.#mode = 'json';
      return;
    }
    this.#ignoreRest(controller);
    open.fail(
      'protocol',
      `upstream answered ${open.method} with HTTP ${status} and content type "${type || 'none'}"`,
    );
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    // After the request settled, what follows is read only to be dropped (see #readStream).
    if (this.#exchange.open.settled) return;
    if (this.#mode === 'json') {
      this.#size += chunk.length;
      if (this.#size > this.#routes.maxBytes) this.#tooLarge(controller);
      else this.#chunks.push(chunk);
    } else if (this.#mode === 'sse') {
      try {
        this.#parser?.push(chunk);
      } catch (error) {
        this.#exchange.open.fail(
          'protocol',
          error instanceof SseTooLargeError
            ? `upstream message exceeds ${this.#routes.maxBytes} bytes`
            : `upstream SSE stream failed: ${(error as Error).message}`,
        );
        controller.abort(ENDED);
      }
    }
  }

  onResponseEnd(): void {
    this.#ended = true;
    clearTimeout(this.#linger);
    const open = this.#exchange.open;
    if (this.#mode === 'json') {
      if (open.settled) return;
      const body = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
      this.#chunks = [];
      this.#routes.onJsonBody(this.#exchange, body, this.#status);
    } else if (this.#mode === 'sse') {
      const parser = this.#parser as SseParser;
      parser.end();
      if (!open.settled) this.#endedEarly(parser);
    }
  }

  /** Also called, with no controller, when undici refuses to build or queue the request. */
  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    this.#ended = true;
    clearTimeout(this.#linger);
    const exchange = this.#exchange;
    const { open } = exchange;
    this.#parser?.end();
    // The gateway's own abort (undici calls back at once): whoever aborted settles the request.
    if (open.settled || error === ENDED) return;
    if (this.#mode === 'json') {
      open.fail('unreachable', 'upstream connection lost mid-answer');
      return;
    }
    if (this.#mode === 'sse') {
      open.fail('unreachable', `upstream connection lost while answering ${open.method}`);
      return;
    }
    if (this.#mode === 'ignored') return;
    // No answer at all.
    if (this.#kind === 'resume') {
      open.fail('unreachable', `upstream stream resumption failed: ${requestFailure(error).message}`, error);
      return;
    }
    // A connection that failed before any answer (a keep-alive socket the upstream closed while
    // idle, say) is tried once more for a request safe to repeat — never tools/call: the upstream
    // may have read it before closing, and a tool must not run twice.
    if (
      exchange.sent &&
      !exchange.retried &&
      RETRY_SAFE_METHODS.has(open.method) &&
      isUnreachableCode(errorCode(error))
    ) {
      exchange.retried = true;
      this.#routes.resend(exchange);
      return;
    }
    const { failure, message } = requestFailure(error);
    open.fail(failure, message, errorCode(error) === 'UND_ERR_INVALID_ARG' ? undefined : error);
  }

  #tooLarge(controller: Dispatcher.DispatchController): void {
    this.#exchange.open.fail('protocol', `upstream message exceeds ${this.#routes.maxBytes} bytes`);
    controller.abort(ENDED);
  }

  /**
   * An answer whose body does not matter: read and dropped so that its connection can be reused,
   * and cut if it has not ended within STREAM_LINGER_MS (an upstream may never end it).
   */
  #ignoreRest(controller: Dispatcher.DispatchController): void {
    this.#mode = 'ignored';
    this.#linger = setTimeout(() => controller.abort(ENDED), STREAM_LINGER_MS);
  }

  #readStream(controller: Dispatcher.DispatchController): void {
    this.#mode = 'sse';
    const exchange = this.#exchange;
    this.#parser = new SseParser(this.#routes.maxBytes, (event) => this.#onEvent(event));
    // Once the request settled, what follows on its stream is read only so that the connection can
    // be reused, and for STREAM_LINGER_MS at most: an upstream that keeps it open (silent or not)
    // would otherwise hold a connection, and its pool slot, for good. A resumption GET is cut at once.
    const cutAfterSettled = () => {
      if (this.#ended) return;
      if (this.#kind === 'resume') controller.abort(ENDED);
      else this.#linger ??= setTimeout(() => controller.abort(ENDED), STREAM_LINGER_MS);
    };
    exchange.open.promise.then(cutAfterSettled, cutAfterSettled);
  }

  #onEvent(event: SseEvent): void {
    if (event.data.length === 0 || (event.event !== undefined && event.event !== 'message')) return;
    const open = this.#exchange.open;
    if (open.settled) return;
    let value: unknown;
    try {
      value = JSON.parse(event.data);
    } catch {
      this.#routes.abandon(
        this.#exchange,
        `upstream sent an SSE event that is not JSON while answering ${open.method}`,
      );
      return;
    }
    this.#routes.onMessage(this.#exchange, value);
  }

  /**
   * The stream ended before our response: per the 2025-11-25 spec the server may close it after
   * an event id and expects the client to resume it with GET + Last-Event-ID.
   */
  #endedEarly(parser: SseParser): void {
    const exchange = this.#exchange;
    const { open } = exchange;
    const lastEventId = parser.lastEventId === undefined ? undefined : usableEventId(parser.lastEventId);
    if (lastEventId !== undefined && exchange.resumes < MAX_STREAM_RESUMES) {
      exchange.resumes++;
      setTimeout(() => {
        if (!open.settled) this.#routes.resume(exchange, lastEventId);
      }, upstreamRetry(parser.retryMs));
      return;
    }
    this.#routes.abandon(exchange, `upstream ended the stream before answering ${open.method}`);
  }
}

/**
 * The answer to a request that matters only by its status (a notification, a response to the
 * upstream's request, DELETE): settles on the status, then drops the body, within a deadline.
 */
export class StatusAnswer implements Dispatcher.DispatchHandler {
  readonly #appId: string;
  readonly #method: string;
  readonly #resolve: (answer: { status: number }) => void;
  readonly #reject: (error: UpstreamError) => void;
  readonly #deadline: NodeJS.Timeout;
  #controller: Dispatcher.DispatchController | undefined;
  #linger: NodeJS.Timeout | undefined;
  #settled = false;

  constructor(
    appId: string,
    method: string,
    timeoutMs: number,
    resolve: (answer: { status: number }) => void,
    reject: (error: UpstreamError) => void,
  ) {
    this.#appId = appId;
    this.#method = method;
    this.#resolve = resolve;
    this.#reject = reject;
    this.#deadline = setTimeout(() => this.#timedOut(timeoutMs), timeoutMs);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#settled) controller.abort(ENDED);
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number): void {
    clearTimeout(this.#deadline);
    if (this.#settled) {
      controller.abort(ENDED);
      return;
    }
    this.#settled = true;
    this.#resolve({ status });
    this.#linger = setTimeout(() => controller.abort(ENDED), STREAM_LINGER_MS);
  }

  onResponseData(): void {}

  onResponseEnd(): void {
    clearTimeout(this.#linger);
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    clearTimeout(this.#deadline);
    clearTimeout(this.#linger);
    if (this.#settled) return;
    this.#settled = true;
    const code = errorCode(error);
    this.#reject(
      new UpstreamError(
        this.#appId,
        'unreachable',
        `upstream ${this.#method} failed (${typeof code === 'string' ? code : error.message})`,
        { cause: error },
      ),
    );
  }

  #timedOut(timeoutMs: number): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#controller?.abort(ENDED);
    this.#reject(
      new UpstreamError(
        this.#appId,
        'timeout',
        `upstream did not answer ${this.#method} within ${timeoutMs} ms`,
      ),
    );
  }
}
