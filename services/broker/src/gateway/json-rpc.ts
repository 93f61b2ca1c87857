import type {
  JsonRpcErrorObject,
  JsonRpcErrorResponse,
  JsonRpcId,
  JsonRpcNotification,
  JsonRpcRequest,
  JsonRpcResponse,
} from '../upstream/connection.ts';

/** JSON-RPC 2.0 error codes, plus the MCP SDK's and the gateway's own server-error codes. */
export const RpcCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** The SDK's code for an unknown session and for a closed connection. */
  ConnectionClosed: -32000,
  SessionNotFound: -32001,
  RequestTimeout: -32001,
  /** Gateway: policy denied a resources/read or prompts/get (tools/call denials are tool results). */
  PolicyDenied: -32010,
  /** Gateway: policy requires a human approval first. */
  ApprovalRequired: -32011,
  /** Gateway: over a rate limit; retryable. */
  RateLimited: -32029,
  /** Gateway: the upstream app failed (timeout, unreachable, protocol violation, crash). */
  UpstreamFailed: -32013,
  /** Gateway: the tool's definition changed upstream and awaits an admin's approval. */
  ToolBlocked: -32014,
  /** Gateway: DLP found data the policy says must not pass. */
  DlpBlocked: -32015,
  /** Gateway: the agent was suspended, or the request's credential revoked, while the call waited or ran. */
  NoLongerAuthorized: -32016,
} as const;

/** An error the relay answers with; `data.code` is the stable machine-readable reason. */
export class RpcError extends Error {
  readonly code: number;
  readonly data: Record<string, unknown> | undefined;

  constructor(code: number, message: string, data?: Record<string, unknown>) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
    this.data = data;
  }

  toObject(): JsonRpcErrorObject {
    return { code: this.code, message: this.message, ...(this.data ? { data: this.data } : {}) };
  }
}

/** The session is unknown, expired, ended, or not the caller's: the client initializes again. */
export function sessionNotFound(): RpcError {
  return new RpcError(RpcCode.SessionNotFound, 'Session not found; initialize a new session', {
    code: 'session_not_found',
  });
}

/**
 * Ends a call whose agent was suspended, or whose credential was revoked, after the request was
 * authenticated: never sent upstream if it had not been yet, cancelled there if it had.
 */
export function noLongerAuthorized(code: 'agent_suspended' | 'credentials_no_longer_valid'): RpcError {
  return new RpcError(
    RpcCode.NoLongerAuthorized,
    code === 'agent_suspended'
      ? 'The agent was suspended: the call was stopped'
      : "The request's credential is no longer accepted: the call was stopped",
    { code, retryable: false },
  );
}

/** How long a client is asked to wait before retrying when Redis did not answer. */
export const STORE_RETRY_AFTER_MS = 1000;

/** Redis did not answer a session operation: nothing was done; the client retries shortly. */
export function sessionStoreUnavailable(): RpcError {
  return new RpcError(
    RpcCode.InternalError,
    'The session store did not answer: the request was not executed. Retry shortly.',
    { code: 'session_store_unavailable', retryable: true, retryAfterMs: STORE_RETRY_AFTER_MS },
  );
}

export function errorResponse(id: JsonRpcId | null, error: JsonRpcErrorObject): JsonRpcErrorResponse {
  return { jsonrpc: '2.0', id, error };
}

export function resultResponse(id: JsonRpcId, result: Record<string, unknown>): JsonRpcResponse {
  return { jsonrpc: '2.0', id, result };
}

export type ClassifiedMessage =
  | { kind: 'request'; message: JsonRpcRequest }
  | { kind: 'notification'; message: JsonRpcNotification }
  | { kind: 'response'; message: JsonRpcResponse };

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const isId = (value: unknown): value is JsonRpcId =>
  (typeof value === 'string' && value.length <= 256) ||
  (typeof value === 'number' && Number.isSafeInteger(value));

/**
 * Checks that a parsed body is one JSON-RPC 2.0 message and says which kind. Batches are refused:
 * MCP removed them in 2025-06-18, and one message per POST keeps every answer on its own stream.
 */
export function classify(body: unknown): ClassifiedMessage | RpcError {
  if (Array.isArray(body)) return new RpcError(RpcCode.InvalidRequest, 'JSON-RPC batches are not supported');
  if (!isPlainObject(body) || body.jsonrpc !== '2.0')
    return new RpcError(RpcCode.InvalidRequest, 'Not a JSON-RPC 2.0 message');
  if ('params' in body && body.params !== undefined && !isPlainObject(body.params))
    return new RpcError(RpcCode.InvalidRequest, 'params must be an object');
  if (typeof body.method === 'string') {
    if (body.method.length === 0 || body.method.length > 128)
      return new RpcError(RpcCode.InvalidRequest, 'method must be 1 to 128 characters');
    if (!('id' in body)) return { kind: 'notification', message: body as unknown as JsonRpcNotification };
    if (!isId(body.id)) return new RpcError(RpcCode.InvalidRequest, 'id must be a string or an integer');
    return { kind: 'request', message: body as unknown as JsonRpcRequest };
  }
  if ('result' in body || 'error' in body) {
    if (!isId(body.id)) return new RpcError(RpcCode.InvalidRequest, 'a response needs the id it answers');
    if ('result' in body ? !isPlainObject(body.result) : !isPlainObject(body.error))
      return new RpcError(RpcCode.InvalidRequest, 'malformed JSON-RPC response');
    return { kind: 'response', message: body as unknown as JsonRpcResponse };
  }
  return new RpcError(RpcCode.InvalidRequest, 'Not a JSON-RPC request, notification or response');
}
