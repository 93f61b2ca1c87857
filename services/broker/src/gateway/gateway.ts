import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import { PROBLEM_CONTENT_TYPE, problem } from '@portcullis/runtime';
import type { Authenticator, Credential } from '../auth/authenticator.ts';
import { writeAuthRefusal } from '../auth/respond.ts';
import type { HostOriginRefusal } from '../host-origin.ts';
import {
  type JsonRpcId,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  UpstreamError,
} from '../upstream/connection.ts';
import type { Caller } from './enforcement.ts';
import { BodyError, type BodyLimits, readJsonBody } from './http-body.ts';
import {
  type ClassifiedMessage,
  classify,
  errorResponse,
  noLongerAuthorized,
  RpcCode,
  RpcError,
  resultResponse,
  STORE_RETRY_AFTER_MS,
  sessionNotFound,
  sessionStoreUnavailable,
} from './json-rpc.ts';
import { LiveSession, type LiveSessionDeps, upstreamRpcError } from './live-session.ts';
import { METHODS, type MethodDeps } from './methods.ts';
import { aggregateNamespace, appNamespace } from './namespacing.ts';
import type { BusMessage, ReplicaBus } from './replica-bus.ts';
import { NotificationStream, ReplyChannel } from './reply.ts';
import type { SessionRefusal } from './session-admission.ts';
import { type SessionRecord, type SessionScope, SessionStoreUnavailable } from './session-store.ts';

export interface GatewayOptions {
  sessionDeps: LiveSessionDeps;
  methodDeps: MethodDeps;
  authenticator: Authenticator;
  checkHostOrigin: (host: string | undefined, origin: string | undefined) => HostOriginRefusal | undefined;
  bus: ReplicaBus;
  limits: BodyLimits;
  /** The apps an agent's aggregate endpoint shows: entitled, and reachable through the directory. */
  appsOf(agentId: string): string[];
  /** Whether an app id names an app with an upstream connection. */
  appExists(appId: string): boolean;
  /** Whether the directory knows the agent and it is active (not suspended). */
  agentActive(agentId: string): boolean;
  serverInfo: { name: string; version: string };
  /** The refusal when the agent may not open another session now (session-admission.ts). */
  admitSession(agentId: string): Promise<SessionRefusal | undefined>;
  /** Comment lines on idle standalone streams, so proxies keep them open. */
  keepAliveMs: number;
  /** A session unused this long leaves this replica's memory (it stays in Redis). */
  localIdleMs: number;
  /** A local copy of a session is re-read from Redis when older than this (deletes propagate). */
  localRecheckMs: number;
  /**
   * How often a session whose only activity is an open standalone stream is marked in use in
   * Redis; well within the session's idle timeout, or it would expire under a listening client.
   */
  streamKeepAliveMs: number;
}

const SERVER_CAPABILITIES = {
  tools: { listChanged: true },
  resources: { subscribe: true, listChanged: true },
  prompts: { listChanged: true },
  completions: {},
  logging: {},
};
const INSTRUCTIONS =
  'Tools, resources and prompts are served through the Portcullis gateway: every use is authorized by policy and audited.';
/** Largest client capabilities object a session may carry (real clients send a few hundred bytes). */
const MAX_CAPABILITIES_CHARS = 16_384;
const MCP_PATH = /^\/mcp(?:\/apps\/([a-z][a-z0-9-]{0,62}))?\/?(?:\?.*)?$/;

interface Local {
  session: LiveSession;
  loadedAt: number;
  /** When this replica last marked the session in use in Redis for its open stream. */
  keptAlive: number;
}

/**
 * The agent-facing MCP endpoint (Streamable HTTP), on plain node:http: `/mcp` is the aggregate of
 * every app the agent is entitled to, `/mcp/apps/<app>` one app without prefixes. Each request is
 * checked (Host/Origin, then authentication) before anything else; sessions live in Redis so any
 * replica serves any request.
 *
 * Invariants: a session answers only to the agent that created it and only on the endpoint it was
 * created on — anything else is "session not found", the same answer as for an id that never
 * existed; authentication runs on every request, so a suspension or revocation applies inside a
 * session at once; the inbound credential is never forwarded, stored or logged.
 */
export class Gateway {
  readonly #options: GatewayOptions;
  readonly #local = new Map<string, Local>();
  /** What authenticated each open standalone stream: re-checked when the directory changes. */
  readonly #streamCredentials = new WeakMap<NotificationStream, Credential>();
  readonly #sweeper: NodeJS.Timeout;
  #inFlight = 0;
  #closing = false;

  constructor(options: GatewayOptions) {
    this.#options = options;
    this.#sweeper = setInterval(
      () => this.#sweep(),
      Math.min(options.localIdleMs, options.streamKeepAliveMs, 60_000),
    );
    this.#sweeper.unref();
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  async start(): Promise<void> {
    await this.#options.bus.start((message) => this.#onBus(message));
  }

  /** MCP sessions this replica holds in memory (a gauge in /metrics). */
  get localSessions(): number {
    return this.#local.size;
  }

  /** The raw handler: claims /mcp and /mcp/apps/<app>; everything else goes on to express. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): boolean => {
    const match = MCP_PATH.exec(req.url ?? '');
    if (!match) return false;
    this.#inFlight++;
    res.once('close', () => this.#inFlight--);
    const scope: SessionScope = match[1] ? { kind: 'app', appId: match[1] } : { kind: 'aggregate' };
    this.#serve(req, res, scope).catch((error) => {
      if (error instanceof SessionStoreUnavailable) {
        this.#options.sessionDeps.logger.warn({ err: error.cause }, 'session store did not answer');
        if (!res.headersSent) return sendStoreUnavailable(res, null);
      } else this.#options.sessionDeps.logger.error({ err: error }, 'mcp request failed');
      if (!res.headersSent)
        sendRpcError(res, 500, null, new RpcError(RpcCode.InternalError, 'Internal error'));
      else res.destroy();
    });
    return true;
  };

  async #serve(req: IncomingMessage, res: ServerResponse, scope: SessionScope): Promise<void> {
    const refusal = this.#options.checkHostOrigin(req.headers.host, req.headers.origin);
    if (refusal) return sendProblem(res, 403, refusal.code, 'Forbidden', refusal.detail);
    if (this.#closing) {
      res.setHeader('retry-after', '1');
      return sendProblem(
        res,
        503,
        'shutting_down',
        'Service Unavailable',
        'This replica is shutting down; retry.',
      );
    }
    const auth = await this.#options.authenticator.authenticate(req.headers);
    if (!auth.ok) {
      req.resume();
      return writeAuthRefusal(res, auth);
    }
    const caller: Caller = { agent: auth.agent, ...(auth.user ? { user: auth.user } : {}) };
    if (scope.kind === 'app' && !this.#options.appExists(scope.appId)) {
      req.resume();
      return sendProblem(res, 404, 'unknown_app', 'Not Found', `No app ${scope.appId} is registered.`);
    }
    const version = header(req.headers, 'mcp-protocol-version');
    if (version !== undefined && !SUPPORTED_PROTOCOL_VERSIONS.includes(version)) {
      req.resume();
      return sendRpcError(
        res,
        400,
        null,
        new RpcError(RpcCode.InvalidRequest, `Unsupported MCP-Protocol-Version ${version.slice(0, 40)}`, {
          supported: SUPPORTED_PROTOCOL_VERSIONS,
        }),
      );
    }
    switch (req.method) {
      case 'POST':
        return this.#post(req, res, scope, caller, auth.credential);
      case 'GET':
        return this.#get(req, res, scope, caller, auth.credential);
      case 'DELETE':
        return this.#delete(req, res, scope, caller);
      default:
        req.resume();
        res.setHeader('allow', 'GET, POST, DELETE');
        return sendRpcError(res, 405, null, new RpcError(RpcCode.ConnectionClosed, 'Method not allowed'));
    }
  }

  async #post(
    req: IncomingMessage,
    res: ServerResponse,
    scope: SessionScope,
    caller: Caller,
    credential: Credential,
  ): Promise<void> {
    let body: unknown;
    try {
      body = await readJsonBody(req, this.#options.limits);
    } catch (error) {
      if (error instanceof BodyError) return sendRpcError(res, error.status, null, error);
      throw error;
    }
    // The credential was checked when the headers arrived; a slow client's body may come minutes
    // later, after its key was revoked or its agent suspended. Checked again before acting on it.
    if (!this.#options.authenticator.stillValid(credential))
      return writeAuthRefusal(res, this.#options.authenticator.noLongerValid());
    const classified = classify(body);
    if (classified instanceof RpcError) return sendRpcError(res, 400, idOf(body), classified);
    try {
      await this.#message(req, res, scope, caller, credential, classified, idOf(body));
    } catch (error) {
      // Answered with the request's id, so that the client matches the refusal to its request.
      if (!(error instanceof SessionStoreUnavailable) || res.headersSent) throw error;
      this.#options.sessionDeps.logger.warn({ err: error.cause }, 'session store did not answer');
      sendStoreUnavailable(res, idOf(body));
    }
  }

  /** A POST's JSON-RPC message, parsed: an initialize, or a message of an existing session. */
  async #message(
    req: IncomingMessage,
    res: ServerResponse,
    scope: SessionScope,
    caller: Caller,
    credential: Credential,
    classified: Exclude<ClassifiedMessage, RpcError>,
    id: JsonRpcId | null,
  ): Promise<void> {
    const sessionId = header(req.headers, 'mcp-session-id');
    const accepts = header(req.headers, 'accept') ?? '*/*';
    const streams = /text\/event-stream|\*\/\*/i.test(accepts);

    if (classified.kind === 'request' && classified.message.method === 'initialize') {
      if (sessionId)
        return sendRpcError(
          res,
          400,
          classified.message.id,
          new RpcError(RpcCode.InvalidRequest, 'initialize must not carry a session id'),
        );
      return this.#initialize(res, scope, caller, classified.message);
    }
    if (!sessionId)
      return sendRpcError(
        res,
        400,
        id,
        new RpcError(
          RpcCode.InvalidRequest,
          'No session: send an initialize request first (Mcp-Session-Id missing)',
        ),
      );
    const session = await this.#session(sessionId, caller, scope);
    if (!session) return sendRpcError(res, 404, id, sessionNotFound());
    session.lastUsed = performance.now();

    if (classified.kind === 'notification') {
      res.writeHead(202).end();
      return this.#notification(session, classified.message, this.#appsFor(scope, caller.agent.id));
    }
    if (classified.kind === 'response') {
      res.writeHead(202).end();
      return this.#clientResponse(session, classified.message);
    }
    const channel = new ReplyChannel(res, { 'mcp-session-id': session.id }, streams);
    channel.finish(await this.#request(session, caller, credential, scope, classified.message, channel));
  }

  async #request(
    session: LiveSession,
    caller: Caller,
    credential: Credential,
    scope: SessionScope,
    request: JsonRpcRequest,
    channel: ReplyChannel,
  ): Promise<JsonRpcResponse> {
    const handler = Object.hasOwn(METHODS, request.method) ? METHODS[request.method] : undefined;
    if (!handler)
      return errorResponse(request.id, {
        code: RpcCode.MethodNotFound,
        message: `Method not found: ${request.method.slice(0, 128)}`,
      });
    const apps = this.#appsFor(scope, caller.agent.id);
    try {
      const { authenticator } = this.#options;
      const stillValid = () => authenticator.stillValid(credential);
      const context = { session, caller, apps, request, channel, stillValid };
      const outcome = await handler(this.#options.methodDeps, context);
      return 'jsonrpc' in outcome ? (outcome as JsonRpcResponse) : resultResponse(request.id, outcome);
    } catch (error) {
      if (error instanceof RpcError) return errorResponse(request.id, error.toObject());
      if (error instanceof SessionStoreUnavailable)
        return errorResponse(request.id, sessionStoreUnavailable().toObject());
      if (error instanceof UpstreamError)
        return errorResponse(request.id, upstreamRpcError(error.appId, error).toObject());
      this.#options.sessionDeps.logger.error({ err: error, method: request.method }, 'request failed');
      return errorResponse(request.id, { code: RpcCode.InternalError, message: 'Internal error' });
    }
  }

  async #initialize(
    res: ServerResponse,
    scope: SessionScope,
    caller: Caller,
    request: JsonRpcRequest,
  ): Promise<void> {
    const params = request.params ?? {};
    const requested = typeof params.protocolVersion === 'string' ? params.protocolVersion : '';
    const protocolVersion = SUPPORTED_PROTOCOL_VERSIONS.includes(requested)
      ? requested
      : LATEST_PROTOCOL_VERSION;
    const clientInfo = params.clientInfo as SessionRecord['clientInfo'] | undefined;
    // The capabilities are kept in Redis for the session's life: bound what one session may store.
    if (JSON.stringify(params.capabilities ?? {}).length > MAX_CAPABILITIES_CHARS)
      return sendRpcError(
        res,
        400,
        request.id,
        new RpcError(RpcCode.InvalidParams, `capabilities larger than ${MAX_CAPABILITIES_CHARS} characters`, {
          code: 'invalid_params',
        }),
      );
    if (
      !clientInfo ||
      typeof clientInfo.name !== 'string' ||
      typeof params.capabilities !== 'object' ||
      params.capabilities === null
    )
      return sendRpcError(
        res,
        400,
        request.id,
        new RpcError(RpcCode.InvalidParams, 'initialize needs capabilities and clientInfo', {
          code: 'invalid_params',
        }),
      );
    const refusal = await this.#options.admitSession(caller.agent.id);
    if (refusal) {
      this.#options.methodDeps.metrics?.rateLimited(refusal.reason);
      res.setHeader('retry-after', String(Math.max(1, Math.ceil(refusal.retryAfterMs / 1000))));
      return sendRpcError(res, refusal.status, request.id, refusal.error);
    }
    const { record, ended } = await this.#options.sessionDeps.store.create({
      agentId: caller.agent.id,
      ...(caller.user ? { userId: caller.user.id } : {}),
      scope,
      protocolVersion,
      clientCapabilities: params.capabilities as Record<string, unknown>,
      clientInfo: {
        name: clientInfo.name.slice(0, 200),
        version: String(clientInfo.version ?? '').slice(0, 100),
      },
    });
    if (ended.length > 0) void this.#endDisplaced(ended, caller.agent.id);
    const session = this.#live(record);
    const body = JSON.stringify(
      resultResponse(request.id, {
        protocolVersion,
        capabilities: SERVER_CAPABILITIES,
        serverInfo: this.#options.serverInfo,
        instructions: INSTRUCTIONS,
      }),
    );
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'mcp-session-id': session.id,
    });
    res.end(body);
  }

  async #get(
    req: IncomingMessage,
    res: ServerResponse,
    scope: SessionScope,
    caller: Caller,
    credential: Credential,
  ): Promise<void> {
    req.resume();
    if (!/text\/event-stream/i.test(header(req.headers, 'accept') ?? ''))
      return sendRpcError(
        res,
        406,
        null,
        new RpcError(RpcCode.InvalidRequest, 'Not Acceptable: the stream needs Accept: text/event-stream'),
      );
    const session = await this.#requireSession(req, res, scope, caller);
    if (!session) return;
    // The directory may have changed while the session was loaded: a revocation or suspension
    // applied then found no stream to close. Check again now, synchronously, before opening it.
    if (!this.#options.authenticator.stillValid(credential))
      return writeAuthRefusal(res, this.#options.authenticator.noLongerValid());
    const stream = new NotificationStream(res, { 'mcp-session-id': session.id }, this.#options.keepAliveMs);
    this.#streamCredentials.set(stream, credential);
    // A stream lives no longer than the access token that opened it; the client reconnects with a
    // fresh one (a key has no expiry: its revocation is a directory change, see directoryChanged).
    if (credential.method === 'oauth') closeAt(stream, credential.expiresAtMs);
    const apps = this.#appsFor(scope, caller.agent.id);
    session.attachStream(stream, apps);
  }

  /** The request's session for GET and DELETE, or undefined after answering 400/404. */
  async #requireSession(
    req: IncomingMessage,
    res: ServerResponse,
    scope: SessionScope,
    caller: Caller,
  ): Promise<LiveSession | undefined> {
    const sessionId = header(req.headers, 'mcp-session-id');
    const session = sessionId ? await this.#session(sessionId, caller, scope) : undefined;
    if (!session)
      sendRpcError(
        res,
        sessionId ? 404 : 400,
        null,
        sessionId ? sessionNotFound() : new RpcError(RpcCode.InvalidRequest, 'Mcp-Session-Id missing'),
      );
    return session;
  }

  async #delete(
    req: IncomingMessage,
    res: ServerResponse,
    scope: SessionScope,
    caller: Caller,
  ): Promise<void> {
    req.resume();
    const session = await this.#requireSession(req, res, scope, caller);
    if (!session) return;
    this.#local.delete(session.id);
    await closeEverywhere(session);
    await this.#options.sessionDeps.store.drop(session.id, session.record.agentId);
    await this.#options.bus.toAll({ type: 'session-closed', sessionId: session.id }).catch(() => undefined);
    res.writeHead(204).end();
  }

  async #notification(
    session: LiveSession,
    message: JsonRpcNotification,
    entitled: readonly string[],
  ): Promise<void> {
    const params = message.params ?? {};
    switch (message.method) {
      case 'notifications/cancelled': {
        const requestId = params.requestId;
        if (typeof requestId !== 'string' && typeof requestId !== 'number') return;
        const controller = session.inflight.get(requestId);
        if (controller) controller.abort(new Error(String(params.reason ?? 'cancelled by the client')));
        else
          await this.#options.bus.toAll({
            type: 'cancel',
            sessionId: session.id,
            requestId,
            ...(typeof params.reason === 'string' ? { reason: params.reason } : {}),
          });
        return;
      }
      case 'notifications/roots/list_changed':
        // Every upstream of the session that may ask for roots should ask again.
        await Promise.allSettled(
          [...new Set([...session.openApps(), ...Object.keys(session.record.upstreams)])]
            .filter((appId) => entitled.includes(appId))
            .map((appId) => session.withUpstream(appId, (upstream) => upstream.send(message))),
        );
        return;
      default:
        // notifications/initialized and anything else need no action from the gateway.
        return;
    }
  }

  async #clientResponse(session: LiveSession, message: JsonRpcResponse): Promise<void> {
    const id = String(message.id);
    const at = id.lastIndexOf('~');
    const owner = at > 0 ? id.slice(0, at) : '';
    // Only ids this gateway issued (`<replica>~<n>`) are routed; anything else is dropped.
    if (!/^[\w.:-]{1,128}$/.test(owner)) return;
    if (owner === this.#options.sessionDeps.instanceId) {
      await session
        .answerServerRequest(message)
        .catch((error) =>
          this.#options.sessionDeps.logger.warn({ err: error }, 'client answer not delivered upstream'),
        );
      return;
    }
    if (owner)
      await this.#options.bus.toReplica(owner, { type: 'client-response', sessionId: session.id, message });
  }

  /**
   * Sessions the store took out of Redis to keep an agent within its bound (or past their idle
   * expiry): ended as DELETE ends one, in the background. Every replica (this one too, on the
   * broadcast) lets go of its copy and the stdio children with it; the upstream sessions, wherever
   * they were opened, are resumed here from the record and closed.
   */
  async #endDisplaced(records: readonly SessionRecord[], agentId: string): Promise<void> {
    const { logger } = this.#options.sessionDeps;
    logger.info(
      { agentId, sessions: records.length },
      "ended the agent's sessions beyond MAX_SESSIONS_PER_AGENT (least recently used) or past their idle expiry",
    );
    for (const record of records) {
      await this.#options.bus.toAll({ type: 'session-closed', sessionId: record.id }).catch(() => undefined);
      const session = new LiveSession(record, this.#namespaceOf(record), this.#options.sessionDeps);
      await closeEverywhere(session).catch((error: unknown) =>
        logger.warn({ err: error, sessionId: record.id }, 'could not close a displaced session upstream'),
      );
    }
  }

  #onBus(message: BusMessage): void {
    const local = this.#local.get(message.sessionId);
    if (!local) return;
    switch (message.type) {
      case 'client-response':
        void local.session.answerServerRequest(message.message).catch(() => undefined);
        return;
      case 'cancel':
        local.session.inflight
          .get(message.requestId)
          ?.abort(new Error(message.reason ?? 'cancelled by the client'));
        return;
      case 'session-closed':
        this.#local.delete(message.sessionId);
        void local.session.release();
        return;
    }
  }

  /**
   * The apps a session may reach now: on the aggregate, every app the agent is entitled to; on an
   * app's own endpoint, that app only if the agent is entitled to it (else none: listings are empty,
   * streams follow nothing, and calls get the policy's denial without touching the upstream).
   */
  #appsFor(scope: SessionScope, agentId: string): string[] {
    const entitled = this.#options.appsOf(agentId);
    return scope.kind === 'app' ? entitled.filter((appId) => appId === scope.appId) : entitled;
  }

  /** The session if it exists, belongs to this agent and was opened on this endpoint. */
  async #session(id: string, caller: Caller, scope: SessionScope): Promise<LiveSession | undefined> {
    let local = this.#local.get(id);
    if (!local || performance.now() - local.loadedAt > this.#options.localRecheckMs) {
      const record = await this.#options.sessionDeps.store.load(id);
      if (!record) {
        if (local) {
          this.#local.delete(id);
          void local.session.release();
        }
        return undefined;
      }
      // Another request may have built the local copy while this one waited for Redis: reuse it,
      // or the replaced copy's upstream sessions (stdio children) would never be closed.
      local ??= this.#local.get(id);
      if (local) {
        local.session.record = record;
        local.loadedAt = performance.now();
      } else {
        this.#live(record);
        local = this.#local.get(id);
      }
    }
    const session = local?.session;
    if (!session || session.record.agentId !== caller.agent.id) return undefined;
    // A delegated session belongs to its user too: another user's token for the same agent is refused.
    if ((session.record.userId ?? undefined) !== caller.user?.id) return undefined;
    const stored = session.record.scope;
    if (
      stored.kind !== scope.kind ||
      (stored.kind === 'app' && scope.kind === 'app' && stored.appId !== scope.appId)
    )
      return undefined;
    return session;
  }

  #live(record: SessionRecord): LiveSession {
    const session = new LiveSession(record, this.#namespaceOf(record), this.#options.sessionDeps);
    const now = performance.now();
    this.#local.set(record.id, { session, loadedAt: now, keptAlive: now });
    return session;
  }

  #namespaceOf(record: SessionRecord) {
    return record.scope.kind === 'app'
      ? appNamespace(record.scope.appId)
      : aggregateNamespace((appId) => this.#options.appExists(appId));
  }

  /**
   * The directory changed: sessions with an open stream are told their lists may differ. Agents
   * named are those whose entitlements or state changed; `everyone` for app or policy changes.
   */
  directoryChanged(change: {
    agents: ReadonlySet<string>;
    everyone: boolean;
    apps: ReadonlySet<string>;
  }): void {
    for (const appId of change.apps) this.#options.methodDeps.catalog.invalidate(appId);
    for (const { session } of this.#local.values()) {
      if (!(change.everyone || change.agents.has(session.record.agentId))) continue;
      if (!this.#options.agentActive(session.record.agentId)) {
        // Suspended: its calls in flight end now — one held at the audit gate is never sent, one
        // running upstream is cancelled there — rather than running on after the suspension.
        for (const controller of session.inflight.values())
          controller.abort(noLongerAuthorized('agent_suspended'));
        // Authentication runs on every request, but a standalone stream opened before would go on
        // carrying upstream notifications and server-initiated requests. The client's
        // reconnection is a new request, and is refused (403 agent_suspended).
        session.stream?.close();
        continue;
      }
      if (!session.stream) continue;
      // The same for a stream whose key was revoked (401 on reconnection).
      const credential = this.#streamCredentials.get(session.stream);
      if (credential && !this.#options.authenticator.stillValid(credential)) {
        session.stream.close();
        continue;
      }
      // A session follows the upstreams of the apps the agent is entitled to now only.
      session.follow(this.#appsFor(session.record.scope, session.record.agentId));
      for (const method of [
        'notifications/tools/list_changed',
        'notifications/resources/list_changed',
        'notifications/prompts/list_changed',
      ])
        session.stream.send({ jsonrpc: '2.0', method });
    }
  }

  #sweep(): void {
    const now = performance.now();
    const { store, logger } = this.#options.sessionDeps;
    for (const [id, local] of this.#local) {
      const { session } = local;
      if (session.stream) {
        // A client that only listens sends nothing that would refresh its session in Redis.
        if (now - local.keptAlive >= this.#options.streamKeepAliveMs) {
          local.keptAlive = now;
          store.keepAlive(id, session.record.agentId).then(
            (alive) => {
              // Gone from Redis: ended on another replica (its message lost) or expired. Let go
              // as the session-closed message would have; the client's stream ends with it.
              if (alive || this.#local.get(id) !== local) return;
              this.#local.delete(id);
              void session.release();
            },
            (error: unknown) => {
              logger.warn({ err: error, session: id }, 'a streaming session not kept alive');
            },
          );
        }
      } else if (session.inflight.size === 0 && now - session.lastUsed > this.#options.localIdleMs) {
        this.#local.delete(id);
        void session.release();
      }
    }
  }

  /** Replica shutdown: refuse new requests, let go of local state; the sessions live on in Redis. */
  async close(): Promise<void> {
    this.#closing = true;
    clearInterval(this.#sweeper);
    const sessions = [...this.#local.values()].map((local) => local.session);
    this.#local.clear();
    await Promise.allSettled(sessions.map((session) => session.release()));
    await this.#options.bus.stop();
  }
}

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function idOf(body: unknown): JsonRpcId | null {
  const id = (body as { id?: unknown } | null)?.id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}

/** 503 with Retry-After: Redis did not answer, so nothing about the session could be known or done. */
function sendStoreUnavailable(res: ServerResponse, id: JsonRpcId | null): void {
  res.setHeader('retry-after', String(STORE_RETRY_AFTER_MS / 1000));
  sendRpcError(res, 503, id, sessionStoreUnavailable());
}

function sendRpcError(res: ServerResponse, status: number, id: JsonRpcId | null, error: RpcError): void {
  const body = JSON.stringify(errorResponse(id, error.toObject()));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function sendProblem(res: ServerResponse, status: number, code: string, title: string, detail: string): void {
  const body = JSON.stringify(problem(code, status, title, detail));
  res.writeHead(status, { 'content-type': PROBLEM_CONTENT_TYPE, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Longest delay setTimeout takes (about 24.8 days); a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Ends a stream at `atMs` (epoch ms), however far ahead, unless it closed before. */
function closeAt(stream: NotificationStream, atMs: number): void {
  let timer: NodeJS.Timeout;
  const arm = () => {
    const left = atMs - Date.now();
    if (left <= 0) return stream.close();
    timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
    timer.unref();
  };
  arm();
  stream.onClose(() => clearTimeout(timer));
}

/**
 * Ends a session's upstream sessions, also those opened on other replicas: their ids are in the
 * record, so they are resumed here to be closed.
 */
async function closeEverywhere(session: LiveSession): Promise<void> {
  for (const appId of Object.keys(session.record.upstreams))
    await session.upstream(appId).catch(() => undefined);
  await session.close();
}
