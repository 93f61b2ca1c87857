import {
  type JsonRpcId,
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  UpstreamError,
  type UpstreamFailure,
  type UpstreamRequestOptions,
} from './connection.ts';

/**
 * What both transports share: the bookkeeping of one request in flight (deadline, progress,
 * cancellation, settling exactly once) and the classification of incoming JSON-RPC messages.
 */

/** A hostile upstream must not make the broker buffer without bound: the most one message may take. */
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

/** Connection-level error codes that mean "could not reach the upstream" rather than "it misbehaved". */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
  'ENOENT',
  'EACCES',
  'UND_ERR_SOCKET',
]);

export function isUnreachableCode(code: unknown): boolean {
  return typeof code === 'string' && UNREACHABLE_CODES.has(code);
}

export type IncomingMessage =
  | { kind: 'response'; message: JsonRpcResponse }
  | { kind: 'request'; message: JsonRpcRequest }
  | { kind: 'notification'; message: JsonRpcNotification };

/**
 * Sorts one parsed JSON value into a response, a request or a notification, or undefined when it
 * is not a JSON-RPC 2.0 message at all (the caller treats that as a protocol violation).
 */
export function classify(value: unknown): IncomingMessage | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const message = value as Record<string, unknown>;
  if (message.jsonrpc !== '2.0') return undefined;
  const id = message.id;
  const hasId = typeof id === 'string' || typeof id === 'number';
  if (typeof message.method === 'string') {
    if (message.params !== undefined && (typeof message.params !== 'object' || message.params === null)) {
      return undefined;
    }
    return hasId
      ? { kind: 'request', message: message as unknown as JsonRpcRequest }
      : { kind: 'notification', message: message as unknown as JsonRpcNotification };
  }
  if ('result' in message) {
    if (!hasId || typeof message.result !== 'object' || message.result === null) return undefined;
    return { kind: 'response', message: message as unknown as JsonRpcResponse };
  }
  if ('error' in message) {
    const error = message.error as Record<string, unknown> | null;
    if (typeof error !== 'object' || error === null) return undefined;
    if (typeof error.code !== 'number' || typeof error.message !== 'string') return undefined;
    if (!(hasId || id === null || id === undefined)) return undefined;
    return { kind: 'response', message: message as unknown as JsonRpcResponse };
  }
  return undefined;
}

/** The progress token a caller put in `params._meta.progressToken`, if any. */
export function progressTokenOf(params: Record<string, unknown> | undefined): string | number | undefined {
  const meta = params?._meta;
  if (typeof meta !== 'object' || meta === null) return undefined;
  const token = (meta as Record<string, unknown>).progressToken;
  return typeof token === 'string' || typeof token === 'number' ? token : undefined;
}

/** The progress token a `notifications/progress` message refers to, if it is one. */
export function progressTokenOfNotification(message: JsonRpcMessage): string | number | undefined {
  if (!('method' in message) || message.method !== 'notifications/progress' || 'id' in message) {
    return undefined;
  }
  const token = message.params?.progressToken;
  return typeof token === 'string' || typeof token === 'number' ? token : undefined;
}

let startSequence = 0;

/**
 * One request in flight: it settles exactly once, by a response, a failure, its deadline or its
 * caller's signal. On the deadline or the signal it calls `onGiveUp`, where the transport tells
 * the upstream (notifications/cancelled) and drops the exchange.
 */
export class OpenRequest {
  readonly id: JsonRpcId;
  readonly method: string;
  readonly progressToken: string | number | undefined;
  /** Start order, so "the most recently started request" is well defined. */
  readonly sequence = ++startSequence;
  readonly promise: Promise<JsonRpcResponse>;
  readonly #appId: string;
  readonly #options: UpstreamRequestOptions;
  #resolve!: (response: JsonRpcResponse) => void;
  #reject!: (error: UpstreamError) => void;
  #timer: NodeJS.Timeout | undefined;
  /** The limit progress cannot extend (resetTimeoutOnProgress only). */
  #limit: NodeJS.Timeout | undefined;
  #settled = false;
  #onAbort: (() => void) | undefined;
  #onSettled: (() => void) | undefined;

  constructor(
    appId: string,
    id: JsonRpcId,
    method: string,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions,
    onGiveUp: (request: OpenRequest, failure: 'timeout' | 'cancelled') => void,
  ) {
    this.#appId = appId;
    this.id = id;
    this.method = method;
    this.progressToken = progressTokenOf(params);
    this.#options = options;
    this.promise = new Promise<JsonRpcResponse>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    this.#timer = setTimeout(() => {
      if (this.#settled) return;
      this.fail('timeout', `no response to ${method} within ${options.timeoutMs} ms`);
      onGiveUp(this, 'timeout');
    }, options.timeoutMs);
    if (options.resetTimeoutOnProgress) {
      // MCP: a maximum timeout applies whatever progress is reported, so that an upstream cannot
      // hold a call open for ever by reporting progress and never answering.
      const limitMs = options.maxTimeoutMs ?? DEFAULT_MAX_TIMEOUT_FACTOR * options.timeoutMs;
      this.#limit = setTimeout(() => {
        if (this.#settled) return;
        this.fail('timeout', `no response to ${method} within ${limitMs} ms, progress notwithstanding`);
        onGiveUp(this, 'timeout');
      }, limitMs);
    }
    const signal = options.signal;
    if (signal) {
      // Through a local: a function literal assigned straight to a property would be allocated in
      // V8's old generation and keep this request alive until a full GC (scripts/biome, grit rule).
      const onAbort = () => {
        if (this.#settled) return;
        this.fail('cancelled', `${method} was cancelled by the caller`);
        onGiveUp(this, 'cancelled');
      };
      this.#onAbort = onAbort;
      signal.addEventListener('abort', onAbort, { once: true });
    }
  }

  /** Called once when the request settles, whatever the way: the transport forgets it here. */
  whenSettled(callback: () => void): void {
    this.#onSettled = callback;
  }

  get settled(): boolean {
    return this.#settled;
  }

  get hasListener(): boolean {
    return this.#options.onMessage !== undefined;
  }

  /**
   * Hands a message that belongs to this request to its caller, restarting the deadline on this
   * request's progress when asked. Returns false when the caller takes no messages.
   */
  deliver(message: JsonRpcRequest | JsonRpcNotification): boolean {
    if (this.#settled) return false;
    if (
      this.#options.resetTimeoutOnProgress &&
      this.progressToken !== undefined &&
      progressTokenOfNotification(message) === this.progressToken
    ) {
      this.#timer?.refresh();
    }
    const onMessage = this.#options.onMessage;
    if (!onMessage) return false;
    onMessage(message);
    return true;
  }

  /** The gateway did not admit the call (UpstreamRequestOptions.gate rejected): it was never sent. */
  notAdmitted(): void {
    this.fail('cancelled', `${this.method} was not sent: the gateway did not admit it`);
  }

  /** Starts the deadline over (the request was held before it could be sent). */
  restartDeadline(): void {
    if (this.#settled) return;
    this.#timer?.refresh();
    this.#limit?.refresh();
  }

  resolve(response: JsonRpcResponse): void {
    if (this.#settle()) this.#resolve(response);
  }

  fail(failure: UpstreamFailure, message: string, cause?: unknown): void {
    if (this.#settle()) {
      this.#reject(
        new UpstreamError(this.#appId, failure, message, cause === undefined ? undefined : { cause }),
      );
    }
  }

  #settle(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#limit);
    if (this.#onAbort) this.#options.signal?.removeEventListener('abort', this.#onAbort);
    this.#onSettled?.();
    return true;
  }
}

/** Without `maxTimeoutMs`, a request that reports progress may stay open this many deadlines in all. */
const DEFAULT_MAX_TIMEOUT_FACTOR = 10;

/** The answer to a server-initiated request nobody can take, so the upstream need not wait for its own timeout. */
export function noTakerError(id: JsonRpcId, method: string): JsonRpcResponse {
  return {
    jsonrpc: '2.0',
    id,
    error: { code: -32601, message: `No client is attached to answer ${method}` },
  };
}
