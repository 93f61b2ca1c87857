import { randomBytes } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '@portcullis/runtime';
import {
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type UpstreamCredentials,
  UpstreamError,
  type UpstreamFailure,
  type UpstreamRequestOptions,
  type UpstreamSession,
  type UpstreamSessionInit,
} from './connection.ts';
import { initializeParams, negotiatedResult } from './handshake.ts';
import {
  classify,
  DEFAULT_MAX_MESSAGE_BYTES,
  isUnreachableCode,
  noTakerError,
  OpenRequest,
  progressTokenOfNotification,
} from './open-request.ts';
import { SseParser, SseTooLargeError } from './sse.ts';

/**
 * A raw MCP Streamable HTTP client session (spec 2025-06-18 / 2025-11-25) on node:http: one POST
 * per request on a shared keep-alive pool, answers as application/json or as an SSE stream parsed
 * incrementally, the optional GET stream for messages outside any request, and DELETE on close.
 * It does what the SDK's StreamableHTTPClientTransport + Client do for one session, without their
 * per-call costs (fetch, web streams, zod parsing of every message); see ADR 0041.
 */

export interface HttpUpstreamOptions {
  credentials: UpstreamCredentials;
  logger: Logger;
  /** The keep-alive pool for POST/DELETE. Shared by the connector; a session alone makes its own. */
  agents?: HttpAgents;
  /** Deadline of the initialize exchange (and of notifications/initialized). */
  initializeTimeoutMs?: number;
  /** Deadline of send() (a notification or a response to the upstream). */
  sendTimeoutMs?: number;
  /** Deadline of the best-effort DELETE on close(). */
  closeTimeoutMs?: number;
  /** The most bytes one upstream message (JSON body or SSE event) may take. */
  maxMessageBytes?: number;
  /** Protocol versions accepted from the upstream's initialize result. */
  supportedProtocolVersions?: readonly string[];
  /** Backoff of the GET stream's reconnection while a listener is attached. */
  reconnect?: { initialMs: number; maxMs: number };
}

/**
 * The sockets the connector shares among its HTTP sessions. Short exchanges (POST, DELETE) use a
 * bounded keep-alive pool per upstream origin; long-lived SSE GET streams get their own agent so
 * that many listening sessions never starve the hot path of sockets.
 */
export interface HttpAgents {
  http: http.Agent;
  https: https.Agent;
  streamsHttp: http.Agent;
  streamsHttps: https.Agent;
}

/** Builds the agents: `maxSockets` bounds concurrent POSTs per upstream origin (the rest queue). */
export function createHttpAgents(maxSockets = 128): HttpAgents {
  // keepAlive: the hot path must reuse connections. Every socket a burst opened stays pooled until
  // the upstream closes it (its keep-alive timeout): closing the ones above a smaller idle bound
  // made each burst reconnect, a TCP handshake per call exactly when the broker is busiest.
  const pooled = { keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'lifo' as const };
  // Streams hold their socket for their whole life: no pooling, no bound besides the sessions.
  const streams = { keepAlive: false };
  return {
    http: new http.Agent(pooled),
    https: new https.Agent(pooled),
    streamsHttp: new http.Agent(streams),
    streamsHttps: new https.Agent(streams),
  };
}

export function destroyHttpAgents(agents: HttpAgents): void {
  agents.http.destroy();
  agents.https.destroy();
  agents.streamsHttp.destroy();
  agents.streamsHttps.destroy();
}

const ACCEPT_BOTH = 'application/json, text/event-stream';
/** An SSE answer must end soon after its response: a stream kept open beyond this is cut. */
const STREAM_LINGER_MS = 5000;
/** Messages to one upstream session POSTed and not answered yet; beyond it they are dropped. */
const MAX_MESSAGES_IN_FLIGHT = 64;
/** A GET stream open this long worked: its next reconnection starts the backoff over. */
const STABLE_STREAM_MS = 10_000;
/** The longest wait an upstream's SSE `retry:` field can ask for. */
const MAX_UPSTREAM_RETRY_MS = 5 * 60_000;

/** Idle time before TCP keep-alive probes on a GET stream. */
const STREAM_KEEPALIVE_MS = 30_000;

/** An SSE event id as a Last-Event-ID value, or undefined if it cannot be one (control characters). */
function usableEventId(id: string): string | undefined {
  return id.length > 0 && id.length <= 1024 && !/[^\t\x20-\x7e\x80-\xff]/.test(id) ? id : undefined;
}

/** An upstream's `retry:` as a timer delay: bounded (a delay over 2^31-1 ms would fire at once). */
function upstreamRetry(retryMs: number | undefined): number {
  return Math.min(retryMs ?? 0, MAX_UPSTREAM_RETRY_MS);
}

/**
 * Reads the rest of an answer whose body does not matter, so that its socket can return to the
 * pool — and cuts it if it has not ended within STREAM_LINGER_MS (an upstream may never end it).
 */
function drainBriefly(response: http.IncomingMessage): void {
  const cut = setTimeout(() => response.destroy(), STREAM_LINGER_MS);
  response.once('close', () => clearTimeout(cut));
  response.resume();
}
/** How often a POST stream that ended before its response may be resumed with GET + Last-Event-ID. */
const MAX_STREAM_RESUMES = 5;

type ExchangeKind = 'post' | 'resume';

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

/** One JSON-RPC request in flight over HTTP: the shared bookkeeping plus the HTTP exchange carrying it. */
interface HttpExchange {
  open: OpenRequest;
  body: string;
  request: http.ClientRequest | undefined;
  /** The POST that carried the message last (a resumption GET replaces `request`, not this). */
  posted: http.ClientRequest | undefined;
  /** Until it resolves, the POST is not sent (UpstreamRequestOptions.gate). */
  gate: Promise<unknown> | undefined;
  /** The gate has opened (or there was none): the POST, and any retry of it, may go out. */
  gateOpen: boolean;
  /** Whether any of the exchange's requests reached the upstream (else there is nothing to cancel). */
  sent: boolean;
  retried: boolean;
  resumes: number;
}

/**
 * Headers the protocol and HTTP itself own: a lease never sets them (the protocol's own values
 * win), and with the headers passed to node as a flat list — which skips its per-header
 * bookkeeping — a lease's copy would otherwise be sent beside ours. The framing and hop-by-hop
 * headers matter most: a lease's Transfer-Encoding beside our Content-Length would let one
 * upstream read a request differently from node (request smuggling on a shared keep-alive socket).
 */
const PROTOCOL_HEADERS = new Set([
  'host',
  'accept',
  'content-type',
  'content-length',
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
  // Also part of the gate's guarantee: with Expect, node sends the headers before end() is called.
  'expect',
]);

/** Whether the request's agent holds an idle keep-alive connection it would hand this request. */
function hasIdleConnection(options: https.RequestOptions): boolean {
  const agent = options.agent as http.Agent;
  // The pool is keyed by `host` (as node's ClientRequest sets it from `hostname`).
  return (agent.freeSockets[agent.getName({ ...options, host: options.hostname })]?.length ?? 0) > 0;
}

function mediaType(header: string | undefined): string {
  if (!header) return '';
  const semicolon = header.indexOf(';');
  return (semicolon === -1 ? header : header.slice(0, semicolon)).trim().toLowerCase();
}

function errorCode(error: unknown): unknown {
  return typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
}

/** Opens (or resumes) a Streamable HTTP session with an upstream, per UpstreamConnector.open. */
export async function openHttpSession(
  appId: string,
  url: string,
  init: UpstreamSessionInit,
  options: HttpUpstreamOptions,
): Promise<HttpUpstreamSession> {
  const session = new HttpUpstreamSession(appId, url, options);
  if (init.resume) {
    session.adopt(init.resume.sessionId, init.resume.initializeResult);
    return session;
  }
  try {
    await session.initialize(init);
  } catch (error) {
    await session.close();
    throw error;
  }
  return session;
}

export class HttpUpstreamSession implements UpstreamSession {
  readonly appId: string;
  initializeResult: Record<string, unknown> = {};
  onClosed?: (error: UpstreamError) => void;

  readonly #url: URL;
  readonly #isHttps: boolean;
  /** What every request of this session shares, computed once (see #requestOptions). */
  readonly #hostname: string;
  readonly #port: string | undefined;
  readonly #path: string;
  readonly #hostHeader: string;
  readonly #servername: string;
  /** Host, session id and protocol version as a flat header list; rebuilt when either changes. */
  #sessionHeaders: string[] = [];
  readonly #credentials: UpstreamCredentials;
  readonly #logger: Logger;
  readonly #agents: HttpAgents;
  readonly #ownsAgents: boolean;
  readonly #maxBytes: number;
  readonly #supported: readonly string[];
  readonly #initializeTimeoutMs: number;
  readonly #sendTimeoutMs: number;
  /** Messages (notifications, answers) POSTed and not yet answered: bounded by MAX_MESSAGES_IN_FLIGHT. */
  #sending = 0;
  #flooded = false;
  readonly #closeTimeoutMs: number;
  readonly #reconnect: { initialMs: number; maxMs: number };
  /** Our upstream ids carry a random tag: replicas resuming one upstream session never reuse an id. */
  readonly #idTag = randomBytes(6).toString('base64url');
  #nextId = 1;
  #sessionId: string | undefined;
  #protocolVersion: string | undefined;
  readonly #exchanges = new Map<string, HttpExchange>();
  #closed = false;
  #closing: Promise<void> | undefined;
  #listener: ((message: JsonRpcRequest | JsonRpcNotification) => void) | undefined;
  #stream:
    | { request: http.ClientRequest | undefined; timer: NodeJS.Timeout | undefined; attempts: number }
    | undefined;
  #streamLastEventId: string | undefined;
  #streamRetryMs: number | undefined;
  #streamUnsupported = false;

  constructor(appId: string, url: string, options: HttpUpstreamOptions) {
    this.appId = appId;
    this.#url = new URL(url);
    if (this.#url.protocol !== 'http:' && this.#url.protocol !== 'https:') {
      throw new UpstreamError(appId, 'unreachable', `unsupported upstream URL scheme ${this.#url.protocol}`);
    }
    this.#isHttps = this.#url.protocol === 'https:';
    this.#hostname = this.#url.hostname.replace(/^\[|\]$/g, '');
    this.#port = this.#url.port || undefined;
    this.#path = `${this.#url.pathname}${this.#url.search}`;
    this.#hostHeader = this.#url.host;
    // What node would derive per request from the Host header: the TLS server name (none for an IP).
    this.#servername = this.#isHttps && isIP(this.#hostname) === 0 ? this.#hostname : '';
    this.#setSessionHeaders(undefined, undefined);
    this.#credentials = options.credentials;
    this.#logger = options.logger;
    this.#ownsAgents = options.agents === undefined;
    this.#agents = options.agents ?? createHttpAgents();
    this.#maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#supported = options.supportedProtocolVersions ?? SUPPORTED_PROTOCOL_VERSIONS;
    this.#initializeTimeoutMs = options.initializeTimeoutMs ?? 10_000;
    this.#sendTimeoutMs = options.sendTimeoutMs ?? 10_000;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 2_000;
    this.#reconnect = options.reconnect ?? { initialMs: 250, maxMs: 30_000 };
  }

  get sessionId(): string | undefined {
    return this.#sessionId;
  }

  /** The protocol version negotiated with the upstream (sent as MCP-Protocol-Version). */
  get protocolVersion(): string | undefined {
    return this.#protocolVersion;
  }

  /** Takes over a session another replica initialized: no handshake, the same session id. */
  adopt(sessionId: string, initializeResult: Record<string, unknown>): void {
    const version = initializeResult.protocolVersion;
    if (typeof version !== 'string' || !this.#supported.includes(version)) {
      throw new UpstreamError(
        this.appId,
        'protocol',
        `cannot resume: unsupported protocol version ${String(version)}`,
      );
    }
    this.#setSessionHeaders(sessionId, version);
    this.initializeResult = initializeResult;
  }

  /** The handshake: initialize, check the negotiated version, then notifications/initialized. */
  async initialize(init: UpstreamSessionInit): Promise<void> {
    const response = await this.request('initialize', initializeParams(init), {
      timeoutMs: this.#initializeTimeoutMs,
    });
    const result = negotiatedResult(this.appId, response, this.#supported, 'protocol');
    this.#setSessionHeaders(this.#sessionId, result.protocolVersion);
    this.initializeResult = result;
    await this.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  }

  request(
    method: string,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions,
  ): Promise<JsonRpcResponse> {
    if (this.#closed)
      return Promise.reject(new UpstreamError(this.appId, 'closed', 'upstream session is closed'));
    if (options.signal?.aborted) {
      return Promise.reject(
        new UpstreamError(this.appId, 'cancelled', `${method} was cancelled by the caller`),
      );
    }
    const id = `${this.#idTag}-${this.#nextId++}`;
    const body = JSON.stringify(
      params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params },
    );
    const open = new OpenRequest(this.appId, id, method, params, options, (request, failure) =>
      this.#giveUp(exchange, request, failure),
    );
    const exchange: HttpExchange = {
      open,
      body,
      request: undefined,
      posted: undefined,
      gate: options.gate,
      gateOpen: options.gate === undefined,
      sent: false,
      retried: false,
      resumes: 0,
    };
    this.#exchanges.set(id, exchange);
    open.whenSettled(() => this.#exchanges.delete(id));
    this.#send(exchange, 'post');
    return open.promise;
  }

  async send(message: JsonRpcNotification | JsonRpcResponse): Promise<void> {
    if (this.#closed) throw new UpstreamError(this.appId, 'closed', 'upstream session is closed');
    // Each message is a POST of its own. An upstream sending requests faster than their answers
    // complete (a ping flood) would have them pile up without bound: beyond the bound, dropped —
    // the upstream's own requests then time out on its side — with one warning per flood.
    if (this.#sending >= MAX_MESSAGES_IN_FLIGHT) {
      if (!this.#flooded)
        this.#logger.warn(
          { appId: this.appId, inFlight: this.#sending },
          'too many messages to the upstream in flight; dropping until they complete',
        );
      this.#flooded = true;
      return;
    }
    this.#sending++;
    let response: { status: number };
    try {
      response = await this.#simpleExchange('POST', JSON.stringify(message), this.#sendTimeoutMs);
    } finally {
      this.#sending--;
      if (this.#sending === 0) this.#flooded = false;
    }
    if (response.status === 404 && this.#sessionId) {
      this.#expire();
      throw new UpstreamError(this.appId, 'closed', 'upstream session expired (HTTP 404)');
    }
    if (response.status < 200 || response.status >= 300) {
      throw new UpstreamError(
        this.appId,
        'protocol',
        `upstream answered HTTP ${response.status} to a message`,
      );
    }
  }

  listen(onMessage: (message: JsonRpcRequest | JsonRpcNotification) => void): () => void {
    this.#listener = onMessage;
    if (!this.#stream && !this.#closed && !this.#streamUnsupported) {
      this.#stream = { request: undefined, timer: undefined, attempts: 0 };
      void this.#openStream();
    }
    return () => {
      if (this.#listener !== onMessage) return;
      this.#listener = undefined;
      this.#stopStream();
    };
  }

  close(): Promise<void> {
    if (!this.#closing) this.#closing = this.#shutDown(true);
    return this.#closing;
  }

  /** Stops using the session here without a DELETE: another replica resumes it by id. */
  release(): Promise<void> {
    if (!this.#closing) this.#closing = this.#shutDown(false);
    return this.#closing;
  }

  async #shutDown(endUpstream: boolean): Promise<void> {
    const wasOpen = !this.#closed;
    this.#closed = true;
    this.#listener = undefined;
    this.#stopStream();
    this.#failAll('closed', 'upstream session closed');
    if (endUpstream && wasOpen && this.#sessionId) {
      try {
        const response = await this.#simpleExchange('DELETE', undefined, this.#closeTimeoutMs);
        if (response.status >= 400 && response.status !== 404 && response.status !== 405) {
          this.#logger.debug(
            { appId: this.appId, status: response.status },
            'upstream refused session DELETE',
          );
        }
      } catch (error) {
        this.#logger.debug(
          { appId: this.appId, err: (error as Error).message },
          'upstream session DELETE failed',
        );
      }
    }
    if (this.#ownsAgents) destroyHttpAgents(this.#agents);
  }

  /** The upstream forgot the session (404): everything open fails 'closed' and onClosed fires once. */
  #expire(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#listener = undefined;
    this.#stopStream();
    const error = new UpstreamError(this.appId, 'closed', 'upstream session expired (HTTP 404)');
    this.#failAll('closed', error.message);
    this.#closing = this.#ownsAgents
      ? Promise.resolve().then(() => destroyHttpAgents(this.#agents))
      : Promise.resolve();
    this.onClosed?.(error);
  }

  #failAll(failure: UpstreamFailure, message: string): void {
    for (const exchange of [...this.#exchanges.values()]) {
      exchange.request?.destroy();
      exchange.open.fail(failure, message);
    }
  }

  #setSessionHeaders(sessionId: string | undefined, protocolVersion: string | undefined): void {
    this.#sessionId = sessionId;
    this.#protocolVersion = protocolVersion;
    const list = ['host', this.#hostHeader];
    if (sessionId) list.push('mcp-session-id', sessionId);
    if (protocolVersion) list.push('mcp-protocol-version', protocolVersion);
    this.#sessionHeaders = list;
  }

  /**
   * The headers of one request as a flat [name, value, …] list: the lease's (never one the protocol
   * owns), then the protocol's. Node validates every name and value of the list as it would an object's.
   */
  #headers(
    credentialHeaders: Record<string, string> | undefined,
    accept: string,
    body: string | undefined,
    extra?: { name: string; value: string },
  ): string[] {
    const list: string[] = [];
    if (credentialHeaders) {
      // One value per name, whatever its case (the last wins, as node's header object did).
      const lease = new Map<string, string>();
      for (const name of Object.keys(credentialHeaders)) {
        const lower = name.toLowerCase();
        if (!PROTOCOL_HEADERS.has(lower)) lease.set(lower, credentialHeaders[name] as string);
      }
      for (const [name, value] of lease) list.push(name, value);
    }
    list.push('accept', accept);
    if (body !== undefined)
      list.push('content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)));
    for (const item of this.#sessionHeaders) list.push(item);
    if (extra) list.push(extra.name, extra.value);
    return list;
  }

  #requestOptions(method: string, headers: string[], stream: boolean): https.RequestOptions {
    const agents = this.#agents;
    return {
      method,
      protocol: this.#url.protocol,
      hostname: this.#hostname,
      port: this.#port,
      path: this.#path,
      headers,
      // Given, so that the agent does not derive it from the Host header on every request.
      servername: this.#servername,
      agent: this.#isHttps
        ? stream
          ? agents.streamsHttps
          : agents.https
        : stream
          ? agents.streamsHttp
          : agents.http,
    };
  }

  /**
   * Creates the request; node throws synchronously on a header it refuses (a lease value with a
   * newline, say). That becomes an UpstreamError naming the error code, never the header's value.
   */
  #createRequest(options: https.RequestOptions): http.ClientRequest {
    try {
      return (this.#isHttps ? https : http).request(options);
    } catch (error) {
      throw new UpstreamError(
        this.appId,
        'unreachable',
        `cannot build the upstream request (${String(errorCode(error) ?? 'invalid request')})`,
      );
    }
  }

  /**
   * Sends the HTTP request of an exchange (the POST of a message, or the GET resuming its stream)
   * with this call's credential, and routes its answer; every failure ends in the exchange's
   * OpenRequest. A plain promise chain rather than async functions: this is the hot path, and each
   * async frame costs a promise and a microtask per call.
   */
  #send(exchange: HttpExchange, kind: ExchangeKind, lastEventId?: string): void {
    const noCredential = (error: unknown) =>
      exchange.open.fail('unreachable', 'no upstream credential could be obtained', error);
    let leasing: ReturnType<UpstreamCredentials['forRequest']>;
    try {
      leasing = this.#credentials.forRequest(this.appId);
    } catch (error) {
      // A credential source that throws instead of rejecting must fail this request, not escape it.
      noCredential(error);
      return;
    }
    leasing.then(
      (credentials) => this.#sendWith(exchange, kind, credentials.headers, lastEventId),
      noCredential,
    );
  }

  #sendWith(
    exchange: HttpExchange,
    kind: ExchangeKind,
    credentialHeaders: Record<string, string> | undefined,
    lastEventId: string | undefined,
  ): void {
    const { open } = exchange;
    if (open.settled) return;
    const post = kind === 'post';
    const headers = post
      ? this.#headers(credentialHeaders, ACCEPT_BOTH, exchange.body)
      : this.#headers(credentialHeaders, 'text/event-stream', undefined, {
          name: 'last-event-id',
          value: lastEventId as string,
        });
    const options = this.#requestOptions(post ? 'POST' : 'GET', headers, !post);
    const gate = exchange.gateOpen ? undefined : exchange.gate;
    if (gate !== undefined && !hasIdleConnection(options)) {
      // No pooled connection to hold while the call is being recorded: rather than open one (or
      // queue for one) just to wait, the request is built once the gate opens.
      gate.then(
        () => {
          this.#gateOpened(exchange);
          this.#sendWith(exchange, kind, credentialHeaders, lastEventId);
        },
        () => open.notAdmitted(),
      );
      return;
    }
    let request: http.ClientRequest;
    try {
      request = this.#createRequest(options);
    } catch (error) {
      const failure = error as UpstreamError;
      open.fail(failure.failure, failure.message);
      return;
    }
    exchange.request = request;
    request.on('response', (response) => this.#onPostResponse(exchange, response, kind));
    if (!post) {
      request.on('error', (error) => {
        open.fail('unreachable', `upstream stream resumption failed: ${error.message}`, error);
      });
      request.end();
      return;
    }
    request.on('error', (error) => {
      if (open.settled) return;
      // Sending again is safe in two cases. Nothing was sent yet: the pooled socket closed while the
      // request waited for its gate. Or a keep-alive socket the upstream closed while idle failed at
      // once, before it answered anything (node's documented reusedSocket retry) — never for
      // tools/call then: the upstream may have read it before closing, and a tool must not run twice.
      if (
        !exchange.retried &&
        (!exchange.sent ||
          (request.reusedSocket && errorCode(error) === 'ECONNRESET' && RETRY_SAFE_METHODS.has(open.method)))
      ) {
        exchange.retried = true;
        this.#send(exchange, 'post');
        return;
      }
      open.fail(
        isUnreachableCode(errorCode(error)) || error.message === 'socket hang up'
          ? 'unreachable'
          : 'protocol',
        `upstream request failed: ${error.message}`,
        error,
      );
    });
    if (gate === undefined) {
      this.#post(exchange, request);
      return;
    }
    // Built on an idle pooled connection; nothing is written before end(). A retry made while
    // waiting (the connection closed) waits for the same gate.
    gate.then(
      () => {
        this.#gateOpened(exchange);
        // A retry replaced this request (its socket closed while it waited): the retry sends.
        if (exchange.request !== request || request.destroyed) return;
        if (open.settled) request.destroy();
        else this.#post(exchange, request);
      },
      () => {
        open.notAdmitted();
        request.destroy();
      },
    );
  }

  /** The gate opened: the upstream gets its whole deadline from now, not from when the call was judged. */
  #gateOpened(exchange: HttpExchange): void {
    if (exchange.gateOpen) return;
    exchange.gateOpen = true;
    exchange.open.restartDeadline();
  }

  #post(exchange: HttpExchange, request: http.ClientRequest): void {
    exchange.sent = true;
    exchange.posted = request;
    try {
      request.end(exchange.body);
    } catch (error) {
      // Called from a promise reaction: a throw here would be an unhandled rejection.
      exchange.open.fail('unreachable', 'upstream request could not be sent', error);
    }
  }

  #onPostResponse(exchange: HttpExchange, response: http.IncomingMessage, kind: ExchangeKind): void {
    const { open } = exchange;
    if (open.settled) {
      response.destroy();
      return;
    }
    const status = response.statusCode ?? 0;
    if (open.method === 'initialize' && kind === 'post') {
      const sessionId = response.headers['mcp-session-id'];
      if (typeof sessionId === 'string' && sessionId.length > 0)
        this.#setSessionHeaders(sessionId, this.#protocolVersion);
    }
    if (status === 404 && this.#sessionId && open.method !== 'initialize') {
      drainBriefly(response);
      this.#expire();
      return;
    }
    const type = mediaType(response.headers['content-type']);
    if (status === 200 && type === 'text/event-stream') {
      this.#readRequestStream(exchange, response, kind);
      return;
    }
    if (type === 'application/json' && ((status >= 200 && status < 300) || status >= 400)) {
      this.#readBody(response, (error, body) => {
        if (open.settled) return;
        if (error) {
          open.fail(error.failure, error.message, error.cause);
          return;
        }
        this.#onJsonBody(exchange, body, status);
      });
      return;
    }
    drainBriefly(response);
    open.fail(
      'protocol',
      `upstream answered ${open.method} with HTTP ${status} and content type "${type || 'none'}"`,
    );
  }

  #onJsonBody(exchange: HttpExchange, body: Buffer, status: number): void {
    const { open } = exchange;
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      open.fail('protocol', `upstream answered ${open.method} with a body that is not JSON (HTTP ${status})`);
      return;
    }
    if (status >= 400) {
      // An HTTP error is passed through only when its body is a JSON-RPC error about this request
      // (or about no request in particular, id null): e.g. the SDK's 400 "Bad Request" answers.
      const message = classify(value);
      const id = message?.kind === 'response' ? message.message.id : undefined;
      if (
        message?.kind === 'response' &&
        'error' in message.message &&
        (id === open.id || id === null || id === undefined)
      ) {
        open.resolve({ jsonrpc: '2.0', id: open.id, error: message.message.error });
      } else {
        open.fail('protocol', `upstream answered ${open.method} with HTTP ${status}`);
      }
      return;
    }
    const messages = Array.isArray(value) ? value : [value];
    for (const item of messages) {
      if (open.settled) return;
      this.#onRequestMessage(exchange, item);
    }
    if (!open.settled) open.fail('protocol', `upstream's answer to ${open.method} holds no response`);
  }

  /** One message on the answer to our request: its response, or a message that belongs to it. */
  #onRequestMessage(exchange: HttpExchange, value: unknown): void {
    const { open } = exchange;
    const message = classify(value);
    if (!message) {
      this.#abandon(
        exchange,
        `upstream sent a message that is not JSON-RPC 2.0 while answering ${open.method}`,
      );
      return;
    }
    if (message.kind === 'response') {
      if (message.message.id === open.id) open.resolve(message.message);
      else {
        // A response for another of our requests may arrive here after a stream resumption.
        const other =
          typeof message.message.id === 'string' ? this.#exchanges.get(message.message.id) : undefined;
        if (other) other.open.resolve(message.message);
        else this.#abandon(exchange, `upstream answered ${open.method} with a response for another id`);
      }
      return;
    }
    if (!open.deliver(message.message)) this.#unclaimed(message.message);
  }

  /** Reads an SSE answer to a request until its response; resumes once the stream ends early. */
  #readRequestStream(exchange: HttpExchange, response: http.IncomingMessage, kind: ExchangeKind): void {
    const { open } = exchange;
    let linger: NodeJS.Timeout | undefined;
    // Once the request settled, what follows on its stream is read only so that the socket can go
    // back to the pool, and for STREAM_LINGER_MS at most: an upstream that keeps it open (silent
    // or not) would otherwise hold a socket, and its pool slot, for good. A resumption GET is never
    // pooled: it is cut at once.
    const cutAfterSettled = () => {
      if (response.complete || response.destroyed) return;
      if (kind === 'resume') response.destroy();
      else linger ??= setTimeout(() => response.destroy(), STREAM_LINGER_MS);
    };
    open.promise.then(cutAfterSettled, cutAfterSettled);
    const parser = new SseParser(this.#maxBytes, (event) => {
      if (event.data.length === 0 || (event.event !== undefined && event.event !== 'message')) return;
      if (open.settled) return;
      let value: unknown;
      try {
        value = JSON.parse(event.data);
      } catch {
        this.#abandon(exchange, `upstream sent an SSE event that is not JSON while answering ${open.method}`);
        return;
      }
      this.#onRequestMessage(exchange, value);
    });
    response.on('data', (chunk: Buffer) => {
      // After the response: drained (see cutAfterSettled).
      if (open.settled) return;
      try {
        parser.push(chunk);
      } catch (error) {
        response.destroy();
        open.fail(
          'protocol',
          error instanceof SseTooLargeError
            ? `upstream message exceeds ${this.#maxBytes} bytes`
            : `upstream SSE stream failed: ${(error as Error).message}`,
        );
      }
    });
    response.on('close', () => {
      clearTimeout(linger);
      parser.end();
      if (open.settled) return;
      if (!response.complete) {
        open.fail('unreachable', `upstream connection lost while answering ${open.method}`);
        return;
      }
      // The stream ended before our response: per the 2025-11-25 spec the server may close it
      // after an event id and expects the client to resume it with GET + Last-Event-ID.
      const lastEventId = parser.lastEventId === undefined ? undefined : usableEventId(parser.lastEventId);
      if (lastEventId !== undefined && exchange.resumes < MAX_STREAM_RESUMES) {
        exchange.resumes++;
        setTimeout(() => {
          if (!open.settled) this.#send(exchange, 'resume', lastEventId);
        }, upstreamRetry(parser.retryMs));
        return;
      }
      this.#abandon(exchange, `upstream ended the stream before answering ${open.method}`);
    });
  }

  /** The upstream broke the protocol on this exchange: drop its connection (never reused) and fail it. */
  #abandon(exchange: HttpExchange, message: string): void {
    exchange.request?.destroy();
    exchange.open.fail('protocol', message);
  }

  /** The request's deadline passed or its caller aborted: drop the exchange, tell the upstream. */
  #giveUp(exchange: HttpExchange, open: OpenRequest, failure: 'timeout' | 'cancelled'): void {
    // Written only if it got a connection: one still queued in the agent for a free socket (all
    // `maxSocketsPerUpstream` busy) never reached the upstream, and has nothing to cancel there.
    // A stream being resumed was answering: its POST was written, whatever its GET's state.
    const written = exchange.sent && (exchange.resumes > 0 || exchange.posted?.socket != null);
    exchange.request?.destroy();
    if (!written || open.method === 'initialize' || this.#closed) return;
    const reason = failure === 'timeout' ? 'timeout' : 'cancelled by the client';
    this.send({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: open.id, reason },
    }).catch((error: Error) =>
      this.#logger.debug({ appId: this.appId, err: error.message }, 'notifications/cancelled not delivered'),
    );
  }

  /** A message with no request to take it: the listener, else an error answer for a request. */
  #unclaimed(message: JsonRpcRequest | JsonRpcNotification): void {
    if (this.#listener) {
      this.#listener(message);
      return;
    }
    if ('id' in message) {
      this.send(noTakerError(message.id, message.method)).catch(() => undefined);
    } else {
      this.#logger.debug(
        { appId: this.appId, method: message.method },
        'upstream notification dropped: no listener',
      );
    }
  }

  /** A message on the GET stream: a response or progress for an open request goes to it. */
  #onStreamMessage(value: unknown): void {
    const message = classify(value);
    if (!message) {
      this.#logger.warn({ appId: this.appId }, 'upstream sent a non JSON-RPC message on its stream; ignored');
      return;
    }
    if (message.kind === 'response') {
      const id = message.message.id;
      const exchange = typeof id === 'string' ? this.#exchanges.get(id) : undefined;
      if (exchange) exchange.open.resolve(message.message);
      return;
    }
    const token = progressTokenOfNotification(message.message);
    if (token !== undefined) {
      for (const exchange of this.#exchanges.values()) {
        if (exchange.open.progressToken === token) {
          if (!exchange.open.deliver(message.message)) this.#unclaimed(message.message);
          return;
        }
      }
    }
    this.#unclaimed(message.message);
  }

  async #openStream(): Promise<void> {
    const stream = this.#stream;
    if (!stream || this.#closed) return;
    let credentials: Awaited<ReturnType<UpstreamCredentials['forRequest']>>;
    try {
      credentials = await this.#credentials.forRequest(this.appId);
    } catch (error) {
      this.#logger.warn(
        { appId: this.appId, err: (error as Error).message },
        'no credential for the upstream stream',
      );
      this.#scheduleStream();
      return;
    }
    if (this.#stream !== stream) return;
    const headers = this.#headers(
      credentials.headers,
      'text/event-stream',
      undefined,
      this.#streamLastEventId ? { name: 'last-event-id', value: this.#streamLastEventId } : undefined,
    );
    let request: http.ClientRequest;
    try {
      request = this.#createRequest(this.#requestOptions('GET', headers, true));
    } catch (error) {
      this.#logger.warn({ appId: this.appId, err: (error as Error).message }, 'upstream stream not opened');
      this.#scheduleStream();
      return;
    }
    // A stream may be quiet for hours: TCP keep-alive finds a peer that vanished (a half-open
    // connection would otherwise stop its notifications without a word), and it is reopened.
    request.on('socket', (socket) => socket.setKeepAlive(true, STREAM_KEEPALIVE_MS));
    stream.request = request;
    request.on('error', (error) => {
      if (this.#stream !== stream) return;
      this.#logger.debug({ appId: this.appId, err: error.message }, 'upstream stream failed');
      this.#scheduleStream();
    });
    request.on('response', (response) => {
      if (this.#stream !== stream) {
        response.destroy();
        return;
      }
      const status = response.statusCode ?? 0;
      if (status === 405) {
        // The upstream offers no GET stream: nothing to listen to, and nothing wrong.
        response.resume();
        this.#streamUnsupported = true;
        this.#stream = undefined;
        return;
      }
      if (status === 404 && this.#sessionId) {
        response.resume();
        this.#expire();
        return;
      }
      if (status !== 200 || mediaType(response.headers['content-type']) !== 'text/event-stream') {
        response.resume();
        this.#logger.warn({ appId: this.appId, status }, 'upstream refused its GET stream; retrying');
        this.#scheduleStream();
        return;
      }
      // The backoff starts over only for a stream that worked: one that carried a message or stayed
      // open a while. An upstream accepting and closing at once is retried ever more slowly.
      const openedAt = performance.now();
      let delivered = false;
      const parser = new SseParser(this.#maxBytes, (event) => {
        // An id node would refuse as a header value would break every reconnection: not resumed.
        if (event.id !== undefined) this.#streamLastEventId = usableEventId(event.id);
        if (event.data.length === 0 || (event.event !== undefined && event.event !== 'message')) return;
        delivered = true;
        let value: unknown;
        try {
          value = JSON.parse(event.data);
        } catch {
          this.#logger.warn({ appId: this.appId }, 'upstream sent a non-JSON event on its stream; ignored');
          return;
        }
        this.#onStreamMessage(value);
      });
      response.on('data', (chunk: Buffer) => {
        try {
          parser.push(chunk);
        } catch {
          this.#logger.warn({ appId: this.appId }, 'upstream stream event over the size bound; reconnecting');
          response.destroy();
        }
      });
      response.on('close', () => {
        parser.end();
        if (parser.retryMs !== undefined) this.#streamRetryMs = parser.retryMs;
        if (delivered || performance.now() - openedAt >= STABLE_STREAM_MS) stream.attempts = 0;
        if (this.#stream === stream) this.#scheduleStream();
      });
    });
    request.end();
  }

  #scheduleStream(): void {
    const stream = this.#stream;
    if (!stream || this.#closed) return;
    stream.request = undefined;
    const backoff = Math.min(this.#reconnect.maxMs, this.#reconnect.initialMs * 2 ** stream.attempts);
    stream.attempts++;
    // The upstream's `retry:` may ask for a longer wait, never a shorter one than the backoff.
    stream.timer = setTimeout(
      () => void this.#openStream(),
      Math.max(backoff, upstreamRetry(this.#streamRetryMs)),
    );
  }

  #stopStream(): void {
    const stream = this.#stream;
    this.#stream = undefined;
    // A new listener starts afresh: resuming (Last-Event-ID) is for reconnecting the same listener.
    this.#streamLastEventId = undefined;
    if (!stream) return;
    clearTimeout(stream.timer);
    stream.request?.destroy();
  }

  /** A request whose answer matters only by its status (notifications, responses, DELETE). */
  async #simpleExchange(method: 'POST' | 'DELETE', body: string | undefined, timeoutMs: number) {
    const credentials = await this.#credentials.forRequest(this.appId).catch((error: unknown) => {
      throw new UpstreamError(this.appId, 'unreachable', 'no upstream credential could be obtained', {
        cause: error,
      });
    });
    const headers = this.#headers(credentials.headers, ACCEPT_BOTH, body);
    return new Promise<{ status: number }>((resolve, reject) => {
      const request = this.#createRequest(this.#requestOptions(method, headers, false)); // a throw here rejects
      const timer = setTimeout(() => {
        request.destroy();
        reject(
          new UpstreamError(
            this.appId,
            'timeout',
            `upstream did not answer ${method} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      request.on('response', (response) => {
        clearTimeout(timer);
        drainBriefly(response);
        resolve({ status: response.statusCode ?? 0 });
      });
      request.on('error', (error) => {
        clearTimeout(timer);
        reject(
          new UpstreamError(this.appId, 'unreachable', `upstream ${method} failed: ${error.message}`, {
            cause: error,
          }),
        );
      });
      request.end(body);
    });
  }

  /** Reads a whole body, refusing more than the message bound. */
  #readBody(
    response: http.IncomingMessage,
    done: (error: UpstreamError | undefined, body: Buffer) => void,
  ): void {
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > this.#maxBytes) {
      response.destroy();
      done(
        new UpstreamError(this.appId, 'protocol', `upstream message exceeds ${this.#maxBytes} bytes`),
        Buffer.alloc(0),
      );
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let finished = false;
    response.on('data', (chunk: Buffer) => {
      if (finished) return;
      size += chunk.length;
      if (size > this.#maxBytes) {
        finished = true;
        response.destroy();
        done(
          new UpstreamError(this.appId, 'protocol', `upstream message exceeds ${this.#maxBytes} bytes`),
          Buffer.alloc(0),
        );
        return;
      }
      chunks.push(chunk);
    });
    response.on('end', () => {
      if (finished) return;
      finished = true;
      done(undefined, chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size));
    });
    response.on('close', () => {
      if (finished) return;
      finished = true;
      done(
        new UpstreamError(this.appId, 'unreachable', 'upstream connection lost mid-answer'),
        Buffer.alloc(0),
      );
    });
  }
}
