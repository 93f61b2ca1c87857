import type { Logger } from '@portcullis/runtime';
import type { GatewayMetrics } from '../gateway-metrics.ts';
import {
  type JsonRpcId,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type UpstreamConnector,
  UpstreamError,
  type UpstreamSession,
  type UpstreamTarget,
} from '../upstream/connection.ts';
import type { Catalog, ListKind } from './catalog.ts';
import { redacted, withheldUnderRedaction } from './content-guard.ts';
import { RpcCode, RpcError, sessionNotFound } from './json-rpc.ts';
import type { Namespace } from './namespacing.ts';
import type { NotificationStream, ReplyChannel } from './reply.ts';
import type { SessionRecord, SessionStore } from './session-store.ts';

/** What every live session on this replica shares. */
export interface LiveSessionDeps {
  store: SessionStore;
  connector: UpstreamConnector;
  catalog: Catalog;
  /** How to reach an app; undefined when the directory has no connection for it. */
  target(appId: string): UpstreamTarget | undefined;
  logger: Logger;
  instanceId: string;
  /** Longest wait for an upstream answer to a gateway-initiated request (initialize, lists). */
  upstreamTimeoutMs: number;
  /** How long a relayed server-initiated request waits for the client's answer. */
  clientResponseTimeoutMs: number;
  /** Counts upstream sessions that ended and stdio children restarted, or not (GatewayMetrics). */
  metrics: Pick<GatewayMetrics, 'upstreamEnded' | 'upstreamRestarted' | 'upstreamRestartFailed'>;
}

const UNINSPECTABLE_DROPPED =
  'an upstream message DLP could not inspect (nested too deep or too large) was not relayed';

/** Server-initiated requests the client may receive, and the capability it must have declared. */
const CLIENT_METHODS: Record<string, string> = {
  'sampling/createMessage': 'sampling',
  'elicitation/create': 'elicitation',
  'roots/list': 'roots',
};

const LIST_CHANGED: Record<string, ListKind[]> = {
  'notifications/tools/list_changed': ['tools'],
  'notifications/prompts/list_changed': ['prompts'],
  'notifications/resources/list_changed': ['resources', 'resourceTemplates'],
};

interface PendingClientRequest {
  upstream: UpstreamSession;
  upstreamId: JsonRpcId;
  appId: string;
  timer: NodeJS.Timeout;
}

/**
 * This replica's working state for one MCP session: the upstream sessions it opened for the
 * session's apps, its open standalone stream, the agent requests it is running, and the
 * server-initiated requests it relayed. Everything that must outlive the replica is in the
 * SessionRecord in Redis; this object can be rebuilt from it on any replica.
 */
export class LiveSession {
  record: SessionRecord;
  readonly namespace: Namespace;
  readonly #deps: LiveSessionDeps;
  readonly #upstreams = new Map<string, Promise<UpstreamSession>>();
  /** Agent request id → its abort controller, for notifications/cancelled. */
  readonly inflight = new Map<JsonRpcId, AbortController>();
  /** Calls running per app whose fields the policy redacts (beginRedactedCall). */
  readonly #redactedCalls = new Map<string, number>();
  readonly #pending = new Map<string, PendingClientRequest>();
  readonly #detach = new Map<string, () => void>();
  /** The apps whose upstream streams the standalone stream may carry (those the agent may reach). */
  #followed = new Set<string>();
  #stream: NotificationStream | undefined;
  #sequence = 0;
  /** Closed or released: no upstream is opened any more (nobody would close it). */
  #closed = false;
  lastUsed = performance.now();

  constructor(record: SessionRecord, namespace: Namespace, deps: LiveSessionDeps) {
    this.record = record;
    this.namespace = namespace;
    this.#deps = deps;
  }

  get id(): string {
    return this.record.id;
  }

  get stream(): NotificationStream | undefined {
    return this.#stream;
  }

  /**
   * Runs `work` on the session's upstream for an app, opening (or resuming) it first. When a
   * resumed upstream session turns out to be gone (the upstream answered 404), it is opened afresh
   * and `work` runs once more: the upstream never saw the first attempt.
   */
  async withUpstream<T>(appId: string, work: (upstream: UpstreamSession) => Promise<T>): Promise<T> {
    const upstream = await this.upstream(appId);
    try {
      return await work(upstream);
    } catch (error) {
      if (!(error instanceof UpstreamError) || error.failure !== 'closed' || !this.record.upstreams[appId])
        throw error;
      await this.#forget(appId);
      return work(await this.upstream(appId));
    }
  }

  upstream(appId: string): Promise<UpstreamSession> {
    // A request still running when the session ended (DELETE, eviction, this replica letting go)
    // must not open an upstream: its child or upstream session would outlive the session.
    if (this.#closed) return Promise.reject(sessionNotFound());
    let opening = this.#upstreams.get(appId);
    if (!opening) {
      opening = this.#open(appId);
      this.#upstreams.set(appId, opening);
      opening.catch(() => this.#upstreams.delete(appId));
    }
    return opening;
  }

  async #open(appId: string): Promise<UpstreamSession> {
    const { connector, store, logger } = this.#deps;
    const target = this.#deps.target(appId);
    if (!target)
      throw new RpcError(RpcCode.UpstreamFailed, `App ${appId} has no upstream connection configured`, {
        code: 'app_unavailable',
        appId,
      });
    const resumable = target.transport.type === 'http';
    // Another replica may have opened this app for the session since the record was read.
    let stored = resumable
      ? (this.record.upstreams[appId] ?? (await store.load(this.id))?.upstreams[appId])
      : undefined;
    const connect = async (resume: typeof stored) => {
      try {
        return await connector.open(target, {
          protocolVersion: this.record.protocolVersion,
          clientCapabilities: this.record.clientCapabilities,
          clientInfo: this.record.clientInfo,
          agentId: this.record.agentId,
          ...(resume ? { resume } : {}),
        });
      } catch (error) {
        throw upstreamRpcError(appId, error);
      }
    };
    let session = await connect(stored);
    try {
      // A session initialized here (not resumed) must learn the agent's log level and subscriptions.
      let initializedHere = stored === undefined;
      if (!stored && resumable && session.sessionId) {
        // Only what a resuming replica uses: the rest (server info, instructions) may be large,
        // and the record is read on every reload of the session.
        const { protocolVersion, capabilities } = session.initializeResult;
        const fresh = { sessionId: session.sessionId, initializeResult: { protocolVersion, capabilities } };
        const winner = await store.claimUpstream(this.id, appId, fresh);
        if (winner.sessionId !== fresh.sessionId) {
          // Lost a race with another replica: use its upstream session, end ours.
          void session.close();
          session = await connect(winner);
          initializedHere = false;
        }
        stored = winner;
        this.record = { ...this.record, upstreams: { ...this.record.upstreams, [appId]: winner } };
      }
      const opened = session;
      // Hooks through locals, not literals assigned to the properties (see the grit rule in scripts/biome).
      const onClosed = (error: UpstreamError) => {
        logger.info({ appId, session: this.id, failure: error.failure }, 'upstream session ended');
        this.#deps.metrics.upstreamEnded(appId, error.failure);
        // A stdio session restarts its child by itself (then onRestarted); an HTTP one is gone.
        if (resumable) void this.#forget(appId);
      };
      const onRestarted = () => {
        this.#deps.metrics.upstreamRestarted(appId);
        this.#deps.catalog.invalidate(appId);
        this.#replayState(appId, opened).catch((error) =>
          logger.warn({ err: error, appId }, 'state not replayed to a restarted upstream'),
        );
      };
      const onRestartFailed = () => this.#deps.metrics.upstreamRestartFailed(appId);
      session.onClosed = onClosed;
      session.onRestarted = onRestarted;
      session.onRestartFailed = onRestartFailed;
      if (initializedHere) await this.#replayState(appId, session);
      if (this.#stream && this.#followed.has(appId)) this.#listen(appId, session);
      return session;
    } catch (error) {
      // Whatever failed after the connection (the state replay, Redis), the upstream session is
      // nobody's: closed here, or its stdio child would run (and hold its slot) for good.
      session.onClosed = undefined;
      await session.close().catch(() => undefined);
      throw error;
    }
  }

  /** A freshly initialized upstream session learns what the agent set earlier: log level, subscriptions. */
  async #replayState(appId: string, session: UpstreamSession): Promise<void> {
    const capabilities = (session.initializeResult.capabilities ?? {}) as Record<string, unknown>;
    const timeoutMs = this.#deps.upstreamTimeoutMs;
    if (this.record.logLevel && capabilities.logging)
      await session.request('logging/setLevel', { level: this.record.logLevel }, { timeoutMs });
    for (const exposed of this.record.subscriptions) {
      const target = this.namespace.resolveUri(exposed);
      if (target?.appId === appId)
        await session.request('resources/subscribe', { uri: target.uri }, { timeoutMs });
    }
  }

  async #forget(appId: string): Promise<void> {
    this.#upstreams.delete(appId);
    this.#detach.get(appId)?.();
    this.#detach.delete(appId);
    if (this.record.upstreams[appId]) {
      const { [appId]: _gone, ...rest } = this.record.upstreams;
      this.record = { ...this.record, upstreams: rest };
      await this.#deps.store.setUpstream(this.id, appId, undefined).catch(() => undefined);
    }
  }

  /** Attaches the standalone stream; upstream streams of the apps in use are followed while it is open. */
  attachStream(stream: NotificationStream, appIds: readonly string[]): void {
    this.#stream?.close();
    this.#stream = stream;
    stream.onClose(() => {
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      for (const detach of this.#detach.values()) detach();
      this.#detach.clear();
    });
    this.#followed = new Set();
    this.follow(appIds);
  }

  /**
   * Sets the apps whose upstream streams reach the agent while its standalone stream is open. The
   * gateway calls it when the agent's entitlements change: an app it lost stops reaching it (its
   * notifications and server-initiated requests included), a newly entitled app starts.
   */
  follow(appIds: readonly string[]): void {
    const stream = this.#stream;
    if (!stream) return;
    this.#followed = new Set(appIds);
    for (const [appId, detach] of [...this.#detach])
      if (!this.#followed.has(appId)) {
        detach();
        this.#detach.delete(appId);
      }
    for (const appId of this.#followed)
      if (!this.#detach.has(appId))
        this.upstream(appId).then(
          (session) => {
            if (this.#stream === stream && this.#followed.has(appId) && !this.#detach.has(appId))
              this.#listen(appId, session);
          },
          (error) => this.#deps.logger.warn({ err: error, appId }, 'upstream stream not opened'),
        );
  }

  #listen(appId: string, session: UpstreamSession): void {
    this.#detach.get(appId)?.();
    this.#detach.set(
      appId,
      session.listen((message) => this.relay(appId, session, message)),
    );
  }

  /**
   * A call to `appId` whose fields the policy redacts starts: until it ends, everything the app
   * sends this session besides answers is withheld or refused (content-guard.ts), whichever way
   * it comes — on the call's reply, on the session's GET stream, or credited to another request.
   */
  beginRedactedCall(appId: string): void {
    this.#redactedCalls.set(appId, (this.#redactedCalls.get(appId) ?? 0) + 1);
  }

  endRedactedCall(appId: string): void {
    const open = (this.#redactedCalls.get(appId) ?? 0) - 1;
    if (open > 0) this.#redactedCalls.set(appId, open);
    else this.#redactedCalls.delete(appId);
  }

  /**
   * Brings a message from an upstream to the agent: on the reply channel of the request it belongs
   * to when there is one, else on the standalone stream. Server-initiated requests get an id of
   * this replica (`<instance>~<n>`), so the client's answer can be routed back here from any replica.
   */
  relay(
    appId: string,
    upstream: UpstreamSession,
    message: JsonRpcRequest | JsonRpcNotification,
    channel?: ReplyChannel,
  ): void {
    // Transports call this from their sockets' and pipes' event handlers, where a throw would end
    // the process: whatever goes wrong with one upstream message stays with that message.
    try {
      this.#relay(appId, upstream, message, channel, this.#redactedCalls.has(appId));
    } catch (error) {
      this.#deps.logger.error(
        { err: error, appId, method: message.method.slice(0, 128) },
        'upstream message not relayed',
      );
    }
  }

  #relay(
    appId: string,
    upstream: UpstreamSession,
    message: JsonRpcRequest | JsonRpcNotification,
    channel: ReplyChannel | undefined,
    underRedaction: boolean,
  ): void {
    // DLP on everything an upstream sends the agent besides the answer itself (log messages,
    // progress text, sampling and elicitation requests): redacted, whatever the operation's modes.
    const deliver = (safe: JsonRpcRequest | JsonRpcNotification): boolean =>
      (channel?.canStream && channel.send(safe)) || (this.#stream?.send(safe) ?? false);
    if ('id' in message) {
      this.#relayServerRequest(appId, upstream, message, deliver, underRedaction);
      return;
    }
    const kinds = LIST_CHANGED[message.method];
    if (kinds) for (const kind of kinds) this.#deps.catalog.invalidate(appId, kind);
    const own = underRedaction ? withheldUnderRedaction(message) : message;
    if (!own) return;
    const safe = redacted(this.#translateNotification(appId, own));
    if (safe) deliver(safe);
    // Nothing of it reaches the agent, not even in part: a notification is informative only.
    else this.#deps.logger.warn({ appId, method: message.method.slice(0, 128) }, UNINSPECTABLE_DROPPED);
  }

  #translateNotification(appId: string, message: JsonRpcNotification): JsonRpcNotification {
    const params = message.params ?? {};
    if (message.method === 'notifications/resources/updated' && typeof params.uri === 'string')
      return { ...message, params: { ...params, uri: this.namespace.resourceUri(appId, params.uri) } };
    if (message.method === 'notifications/cancelled') {
      // The upstream withdrew one of its own requests: name it by the id the client knows.
      for (const [gatewayId, pending] of this.#pending)
        if (pending.appId === appId && pending.upstreamId === params.requestId) {
          this.#settle(gatewayId);
          return { ...message, params: { ...params, requestId: gatewayId } };
        }
    }
    return message;
  }

  #relayServerRequest(
    appId: string,
    upstream: UpstreamSession,
    message: JsonRpcRequest,
    deliver: (outgoing: JsonRpcRequest) => boolean,
    underRedaction: boolean,
  ): void {
    const refuse = (code: number, text: string) =>
      void upstream
        .send({ jsonrpc: '2.0', id: message.id, error: { code, message: text } })
        .catch((error) =>
          this.#deps.logger.warn({ err: error, appId }, 'could not answer an upstream request'),
        );
    if (message.method === 'ping') {
      void upstream.send({ jsonrpc: '2.0', id: message.id, result: {} }).catch(() => undefined);
      return;
    }
    const capability = CLIENT_METHODS[message.method];
    if (!capability) {
      refuse(RpcCode.MethodNotFound, `Method not found: ${message.method}`);
      return;
    }
    if (!this.record.clientCapabilities[capability]) {
      refuse(RpcCode.MethodNotFound, `The client did not declare the ${capability} capability`);
      return;
    }
    // A sampling or elicitation request carries the upstream's free-form text to the client: from
    // a call whose fields the policy redacts, it could carry those fields. Not relayed (roots/list
    // carries nothing of the upstream's).
    if (underRedaction && capability !== 'roots') {
      refuse(
        RpcCode.InvalidRequest,
        `The gateway does not relay ${message.method} from a call whose answers the policy redacts`,
      );
      return;
    }
    const gatewayId = `${this.#deps.instanceId}~${++this.#sequence}`;
    const timer = setTimeout(() => {
      if (this.#settle(gatewayId)) refuse(RpcCode.RequestTimeout, 'The client did not answer in time');
    }, this.#deps.clientResponseTimeoutMs);
    timer.unref();
    this.#pending.set(gatewayId, { upstream, upstreamId: message.id, appId, timer });
    const safe = redacted({ ...message, id: gatewayId });
    if (!safe) {
      this.#settle(gatewayId);
      this.#deps.logger.warn({ appId, method: message.method.slice(0, 128) }, UNINSPECTABLE_DROPPED);
      refuse(RpcCode.InternalError, 'The request could not be inspected by DLP (too deep or too large)');
    } else if (!deliver(safe)) {
      this.#settle(gatewayId);
      refuse(RpcCode.InternalError, 'The client cannot be reached: no stream is open to it');
    }
  }

  /** The client's answer to a relayed request; false when this replica relayed no such request. */
  async answerServerRequest(message: JsonRpcResponse): Promise<boolean> {
    const gatewayId = String(message.id);
    const pending = this.#pending.get(gatewayId);
    if (!pending) return false;
    this.#settle(gatewayId);
    // The client's answer (a sampled message, what a user typed into an elicitation form) passes
    // DLP on its way upstream too; one it cannot inspect becomes an error for the upstream.
    const safe = redacted(message);
    await pending.upstream.send(
      safe
        ? { ...safe, id: pending.upstreamId }
        : {
            jsonrpc: '2.0',
            id: pending.upstreamId,
            error: {
              code: RpcCode.InternalError,
              message: "The client's answer could not be inspected by DLP (too deep or too large)",
            },
          },
    );
    return true;
  }

  #settle(gatewayId: string): boolean {
    const pending = this.#pending.get(gatewayId);
    if (!pending) return false;
    clearTimeout(pending.timer);
    this.#pending.delete(gatewayId);
    return true;
  }

  /** The apps whose upstream sessions are open on this replica. */
  openApps(): string[] {
    return [...this.#upstreams.keys()];
  }

  /** Ends the session everywhere: upstream sessions are closed (HTTP DELETE, child stopped). */
  async close(): Promise<void> {
    await this.#drop((session) => session.close());
  }

  /** Lets go of this replica's share of the session; the session itself lives on (replica shutdown). */
  async release(): Promise<void> {
    await this.#drop((session) => (session.release ? session.release() : Promise.resolve()));
  }

  async #drop(end: (session: UpstreamSession) => Promise<void>): Promise<void> {
    this.#closed = true;
    this.#stream?.close();
    for (const controller of this.inflight.values()) controller.abort();
    for (const gatewayId of [...this.#pending.keys()]) this.#settle(gatewayId);
    const opened = [...this.#upstreams.values()];
    this.#upstreams.clear();
    await Promise.allSettled(
      opened.map((opening) =>
        opening.then(async (session) => {
          session.onClosed = undefined;
          await end(session);
        }),
      ),
    );
  }
}

/** An upstream transport failure as the JSON-RPC error the agent receives. */
export function upstreamRpcError(appId: string, error: unknown): RpcError {
  if (error instanceof RpcError) return error;
  if (error instanceof UpstreamError) {
    const messages: Record<string, string> = {
      timeout: `Upstream ${appId} did not answer in time`,
      unreachable: `Upstream ${appId} is unreachable`,
      protocol: `Upstream ${appId} broke the MCP protocol`,
      closed: `Upstream ${appId} ended the session`,
      cancelled: 'The request was cancelled',
    };
    return new RpcError(
      error.failure === 'timeout' ? RpcCode.RequestTimeout : RpcCode.UpstreamFailed,
      messages[error.failure] ?? `Upstream ${appId} failed`,
      { code: `upstream_${error.failure}`, appId, retryable: error.failure !== 'protocol' },
    );
  }
  return new RpcError(RpcCode.UpstreamFailed, `Upstream ${appId} failed`, { code: 'upstream_failed', appId });
}
