/**
 * The seam between the gateway and one upstream MCP server ("app"). The gateway speaks JSON-RPC
 * messages; an UpstreamSession carries them over Streamable HTTP (http.ts) or to a supervised
 * child process over stdio (stdio.ts). The SDK stays the protocol reference and serves everything
 * off the hot path; these connections are raw so that an established session's tools/call costs
 * close to one plain HTTP round trip (see docs/gateway.md, "Performance").
 *
 * One UpstreamSession belongs to one agent session and one app: the upstream sees each agent
 * session as its own client, so subscriptions, log levels and server-initiated requests never
 * leak between agents.
 */

export type JsonRpcId = string | number;

export interface JsonRpcRequest {
  jsonrpc: '2.0';
  id: JsonRpcId;
  method: string;
  params?: Record<string, unknown>;
}

export interface JsonRpcNotification {
  jsonrpc: '2.0';
  method: string;
  params?: Record<string, unknown>;
}

export interface JsonRpcResultResponse {
  jsonrpc: '2.0';
  id: JsonRpcId;
  result: Record<string, unknown>;
}

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export interface JsonRpcErrorResponse {
  jsonrpc: '2.0';
  id: JsonRpcId | null;
  error: JsonRpcErrorObject;
}

export type JsonRpcResponse = JsonRpcResultResponse | JsonRpcErrorResponse;
export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

/** How the gateway reaches an app. Secrets never live here: the credential seam adds them per call. */
export type UpstreamTransport =
  | { type: 'http'; url: string }
  | {
      type: 'stdio';
      command: string;
      args: string[];
      /** Extra environment for the child; the broker's own environment is NOT inherited. */
      env: Record<string, string>;
      cwd?: string;
    };

export interface UpstreamTarget {
  appId: string;
  transport: UpstreamTransport;
}

/**
 * The credential-lease seam (the credential issue fills it). Called before every upstream HTTP
 * request and before a stdio child starts; "no upstream auth" returns nothing. What it returns is
 * used for that one request and never logged, stored or returned to the agent.
 */
export interface UpstreamCredentials {
  forRequest(appId: string): Promise<{ headers?: Record<string, string>; env?: Record<string, string> }>;
}

/** What the gateway tells an upstream when it opens (or resumes) a session for an agent session. */
export interface UpstreamSessionInit {
  /** The protocol version the agent negotiated with the gateway; offered to the upstream. */
  protocolVersion: string;
  /** The agent client's capabilities, so the upstream only asks for sampling/elicitation/roots the client has. */
  clientCapabilities: Record<string, unknown>;
  clientInfo: { name: string; version: string; [key: string]: unknown };
  /** The agent whose session this is: stdio children are bounded per agent as well as per replica. */
  agentId?: string;
  /**
   * Resume instead of initialize (HTTP only): the upstream session id and initialize result another
   * replica stored in Redis. Stdio sessions cannot be resumed; they initialize a fresh child.
   */
  resume?: { sessionId: string; initializeResult: Record<string, unknown> };
}

/** Why an upstream exchange failed at the transport level (upstream JSON-RPC errors are NOT these). */
export type UpstreamFailure =
  | 'timeout' // no response within the deadline
  | 'unreachable' // connection refused/reset, DNS, child could not start
  | 'protocol' // the upstream broke MCP/JSON-RPC (bad JSON, wrong content type, response without id…)
  | 'closed' // the session ended (child exited, upstream answered 404 for the session, close() called)
  | 'cancelled'; // the caller's signal aborted the request

export class UpstreamError extends Error {
  readonly failure: UpstreamFailure;
  readonly appId: string;

  constructor(appId: string, failure: UpstreamFailure, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UpstreamError';
    this.appId = appId;
    this.failure = failure;
  }
}

export interface UpstreamRequestOptions {
  /** Deadline for the response; on expiry the request is cancelled upstream and rejects with 'timeout'. */
  timeoutMs: number;
  /** Aborting sends notifications/cancelled upstream and rejects with 'cancelled'. */
  signal?: AbortSignal;
  /** A progress notification for this request restarts the deadline (long-running tools). */
  resetTimeoutOnProgress?: boolean;
  /**
   * With resetTimeoutOnProgress: the longest the request stays open however much progress it
   * reports (default: ten times `timeoutMs`).
   */
  maxTimeoutMs?: number;
  /**
   * Messages the upstream sends while this request is open and that belong to it: progress
   * notifications, log messages, and server-initiated requests (sampling, elicitation, roots).
   * Delivered in order, before the promise resolves.
   */
  onMessage?: (message: JsonRpcRequest | JsonRpcNotification) => void;
  /**
   * Holds the request until `gate` resolves: the transport prepares it (over HTTP it builds the
   * request and takes a pooled connection), but nothing reaches the upstream before. If `gate`
   * rejects, nothing is ever sent and `request` rejects with 'cancelled'. The gateway passes the
   * durable recording of the call here, so the preparation overlaps the disk write. Every
   * transport must honour it: the rule that no call runs before it is recorded rests on it
   * (test/e2e/audit-spool.test.ts asks the upstream itself).
   */
  gate?: Promise<unknown>;
}

export interface UpstreamSession {
  readonly appId: string;
  /** The upstream's Mcp-Session-Id (HTTP), undefined for stdio or a stateless upstream. */
  readonly sessionId: string | undefined;
  /** The upstream's initialize result: protocolVersion, capabilities, serverInfo, instructions. */
  readonly initializeResult: Record<string, unknown>;

  /**
   * Sends one request and resolves with the upstream's response: a result or a JSON-RPC error,
   * both as values, passed through faithfully. The session assigns its own upstream ids; the
   * caller's `id` is not sent, and the returned response carries the upstream id (the caller puts
   * its own back). Rejects only with UpstreamError.
   */
  request(
    method: string,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions,
  ): Promise<JsonRpcResponse>;

  /** Sends a notification, or the agent's response to a server-initiated request. */
  send(message: JsonRpcNotification | JsonRpcResponse): Promise<void>;

  /**
   * Messages the upstream sends outside any request: list_changed, resources/updated, log
   * messages, and server-initiated requests with no request open. For HTTP this opens the GET SSE
   * stream (reconnecting with backoff while the listener is attached); stdio delivers them as they
   * come. Only one listener at a time; the returned function detaches it.
   */
  listen(onMessage: (message: JsonRpcRequest | JsonRpcNotification) => void): () => void;

  /** Ends the session: DELETE for HTTP (best effort), stop the child for stdio. Idempotent. */
  close(): Promise<void>;

  /**
   * Lets go of this replica's resources without ending the upstream session, so another replica
   * can resume it (HTTP: stop the GET stream, forget sockets). Stdio sessions cannot be resumed,
   * so for them this is close(). Idempotent.
   */
  release?(): Promise<void>;

  /**
   * Called once when the session ends for a reason other than close() (child exit, 404).
   * Stdio is supervised: there it fires each time the child ends unexpectedly (its upstream state
   * is lost), and the session then restarts the child by itself until close() is called.
   */
  onClosed?: (error: UpstreamError) => void;

  /**
   * Stdio only: a restarted child finished its handshake; initializeResult now holds its answer.
   * Subscriptions and the log level did not survive the restart: replay them here if they matter.
   */
  onRestarted?: (initializeResult: Record<string, unknown>) => void;
  /** stdio only: an attempt to start the child again failed; the next follows after the backoff. */
  onRestartFailed?: (error: UpstreamError) => void;
}

/** Opens upstream sessions; one implementation per transport, chosen by target.transport.type. */
export interface UpstreamConnector {
  open(target: UpstreamTarget, init: UpstreamSessionInit): Promise<UpstreamSession>;
}
