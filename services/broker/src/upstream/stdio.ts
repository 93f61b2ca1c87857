import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '@portcullis/runtime';
import {
  type JsonRpcMessage,
  type JsonRpcNotification,
  type JsonRpcRequest,
  type JsonRpcResponse,
  type UpstreamCredentials,
  UpstreamError,
  type UpstreamFailure,
  type UpstreamRequestOptions,
  type UpstreamSession,
  type UpstreamSessionInit,
  type UpstreamTransport,
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
import { upstreamText } from './upstream-text.ts';

/**
 * An upstream MCP server run as a supervised child process (MCP stdio transport: one JSON-RPC
 * message per line on stdin/stdout, stderr free-form). One child per session, so the upstream sees
 * each agent session as its own client.
 *
 * Supervision: when the child exits or breaks the protocol, every request written to it fails at
 * once ('closed', or 'protocol' for a violation), onClosed fires, and the child is started again
 * with exponential backoff and re-initialized. A restart loses everything the upstream held for
 * the session: subscriptions, the log level, server-initiated requests in flight, and whatever the
 * server keeps in memory. onRestarted tells the owner, who may replay what matters.
 */

type StdioTransport = Extract<UpstreamTransport, { type: 'stdio' }>;
type ChildMessage = JsonRpcRequest | JsonRpcNotification;

/**
 * How much of an unfinished stderr line is kept beyond what is logged of it, so that a token DLP
 * would recognize whole (an API key, a JWT) is whole when the line is cut and logged.
 */
const STDERR_TOKEN_MARGIN = 1024;

export interface StdioUpstreamOptions {
  credentials: UpstreamCredentials;
  logger: Logger;
  /** Deadline of the initialize exchange with a fresh child. */
  initializeTimeoutMs?: number;
  /** The most bytes one stdout line (one message) may take. */
  maxMessageBytes?: number;
  supportedProtocolVersions?: readonly string[];
  /** Restart backoff: doubles from initialMs to maxMs; a child that ran stableMs resets it. */
  restart?: { initialMs: number; maxMs: number; stableMs: number };
  /** close(): after stdin ends, how long to wait before SIGTERM, and again before SIGKILL. */
  stopGraceMs?: number;
  /** stderr lines go to the log, each cut to maxLineChars, at most linesPerWindow per windowMs. */
  stderr?: { maxLineChars: number; linesPerWindow: number; windowMs: number };
}

/** Notifications about the whole session, not about one request: the listener's, when attached. */
const SESSION_NOTIFICATIONS = new Set([
  'notifications/tools/list_changed',
  'notifications/resources/list_changed',
  'notifications/prompts/list_changed',
  'notifications/resources/updated',
]);

interface Child {
  process: ChildProcessWithoutNullStreams;
  generation: number;
  ready: boolean;
  readyAt: number;
  ended: boolean;
  /** Exited, being killed, or broke the protocol: new requests wait for the next child. */
  dying: boolean;
  /** Set when the child broke the protocol and is being killed for it. */
  violation: string | undefined;
  spawnError: Error | undefined;
  /** Ids of the requests this child sent us, so a late answer never reaches the next child. */
  serverRequests: Set<string | number>;
  stdout: { chunks: Buffer[]; size: number };
  /** Resolves when the child is gone (exit and stdio closed, or spawn failed). */
  gone: Promise<void>;
}

/** Starts the child and initializes it; rejects with 'unreachable' when it cannot start. */
export async function openStdioSession(
  appId: string,
  transport: StdioTransport,
  init: UpstreamSessionInit,
  options: StdioUpstreamOptions,
): Promise<StdioUpstreamSession> {
  const session = new StdioUpstreamSession(appId, transport, init, options);
  await session.start();
  return session;
}

export class StdioUpstreamSession implements UpstreamSession {
  readonly appId: string;
  readonly sessionId: string | undefined = undefined;
  initializeResult: Record<string, unknown> = {};
  onClosed?: (error: UpstreamError) => void;
  onRestarted?: (initializeResult: Record<string, unknown>) => void;
  onRestartFailed?: (error: UpstreamError) => void;

  readonly #transport: StdioTransport;
  readonly #init: UpstreamSessionInit;
  readonly #credentials: UpstreamCredentials;
  readonly #logger: Logger;
  readonly #initializeTimeoutMs: number;
  readonly #maxBytes: number;
  readonly #supported: readonly string[];
  readonly #restart: { initialMs: number; maxMs: number; stableMs: number };
  readonly #stopGraceMs: number;
  readonly #stderr: { maxLineChars: number; linesPerWindow: number; windowMs: number };
  #child: Child | undefined;
  #generation = 0;
  #nextId = 1;
  /** Requests written to the current child. */
  readonly #inflight = new Map<number, OpenRequest>();
  readonly #written = new WeakSet<OpenRequest>();
  /** Requests waiting for a (re)started child to be ready. */
  #queued: { open: OpenRequest; line: string }[] = [];
  /** Requests held until the gateway admits them (UpstreamRequestOptions.gate). */
  readonly #gated = new Set<OpenRequest>();
  #listener: ((message: ChildMessage) => void) | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  #restartDelay: number;
  #restartTimer: NodeJS.Timeout | undefined;
  #stderrWindow = { startedAt: 0, lines: 0, suppressed: 0 };
  /** Values of the credential env the child got: scrubbed from its stderr before it is logged. */
  #secrets: string[] = [];
  #longestSecret = 0;

  constructor(
    appId: string,
    transport: StdioTransport,
    init: UpstreamSessionInit,
    options: StdioUpstreamOptions,
  ) {
    this.appId = appId;
    this.#transport = transport;
    this.#init = init;
    this.#credentials = options.credentials;
    this.#logger = options.logger;
    this.#initializeTimeoutMs = options.initializeTimeoutMs ?? 10_000;
    this.#maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#supported = options.supportedProtocolVersions ?? SUPPORTED_PROTOCOL_VERSIONS;
    this.#restart = options.restart ?? { initialMs: 100, maxMs: 10_000, stableMs: 30_000 };
    this.#stopGraceMs = options.stopGraceMs ?? 2_000;
    this.#stderr = options.stderr ?? { maxLineChars: 1000, linesPerWindow: 20, windowMs: 10_000 };
    this.#restartDelay = this.#restart.initialMs;
  }

  /** The child's pid while one runs (for operators and tests). */
  get pid(): number | undefined {
    return this.#child && !this.#child.ended ? this.#child.process.pid : undefined;
  }

  /** First start: no supervision yet, so a child that cannot start fails the open at once. */
  async start(): Promise<void> {
    try {
      await this.#launch();
    } catch (error) {
      await this.close();
      throw error;
    }
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
    return this.#request(method, params, options, false);
  }

  #request(
    method: string,
    params: Record<string, unknown> | undefined,
    options: UpstreamRequestOptions,
    duringStart: boolean,
  ): Promise<JsonRpcResponse> {
    const id = this.#nextId++;
    const line = `${JSON.stringify(params === undefined ? { jsonrpc: '2.0', id, method } : { jsonrpc: '2.0', id, method, params })}\n`;
    const open = new OpenRequest(this.appId, id, method, params, options, (request, failure) =>
      this.#giveUp(request, failure),
    );
    const { gate } = options;
    if (gate === undefined) {
      this.#dispatch(open, line, duringStart);
      return open.promise;
    }
    // Held: in neither #inflight nor #queued until the gate opens, so close() finds it here.
    this.#gated.add(open);
    gate.then(
      () => {
        this.#gated.delete(open);
        if (open.settled) return;
        if (this.#closed) {
          open.fail('closed', 'upstream session closed');
          return;
        }
        open.restartDeadline();
        this.#dispatch(open, line, duringStart);
      },
      () => {
        this.#gated.delete(open);
        open.notAdmitted();
      },
    );
    return open.promise;
  }

  /** Writes a request to the child, or queues it while the child (re)starts. */
  #dispatch(open: OpenRequest, line: string, duringStart: boolean): void {
    const child = this.#child;
    if (child && (child.ready || duringStart) && !child.dying) {
      this.#writeRequest(child, open, line);
    } else {
      this.#queued.push({ open, line });
      open.whenSettled(() => {
        this.#queued = this.#queued.filter((entry) => entry.open !== open);
      });
    }
  }

  async send(message: JsonRpcNotification | JsonRpcResponse): Promise<void> {
    if (this.#closed) throw new UpstreamError(this.appId, 'closed', 'upstream session is closed');
    const child = this.#child;
    if (!child?.ready || child.dying) {
      throw new UpstreamError(this.appId, 'unreachable', 'upstream process is restarting');
    }
    if (!('method' in message) && message.id !== null && !child.serverRequests.delete(message.id)) {
      // An answer to a request this child never sent (a previous child's): it must not reach this one.
      this.#logger.debug({ appId: this.appId }, 'answer to an unknown upstream request dropped');
      return;
    }
    this.#write(child, `${JSON.stringify(message)}\n`);
  }

  listen(onMessage: (message: ChildMessage) => void): () => void {
    this.#listener = onMessage;
    return () => {
      if (this.#listener === onMessage) this.#listener = undefined;
    };
  }

  /** A child cannot move to another replica: letting go of it is ending it. */
  release(): Promise<void> {
    return this.close();
  }

  close(): Promise<void> {
    if (!this.#closing) this.#closing = this.#shutDown();
    return this.#closing;
  }

  async #shutDown(): Promise<void> {
    this.#closed = true;
    this.#listener = undefined;
    clearTimeout(this.#restartTimer);
    this.#failInflight('closed', 'upstream session closed');
    for (const { open } of [...this.#queued]) open.fail('closed', 'upstream session closed');
    this.#queued = [];
    for (const open of [...this.#gated]) open.fail('closed', 'upstream session closed');
    this.#gated.clear();
    const child = this.#child;
    if (!child || child.ended) return;
    // The stdio spec's order: close stdin, then SIGTERM, then SIGKILL, each after a grace period.
    child.process.stdin.end();
    if (await this.#exitsWithin(child, this.#stopGraceMs)) return;
    signalGroup(child, 'SIGTERM');
    if (await this.#exitsWithin(child, this.#stopGraceMs)) return;
    signalGroup(child, 'SIGKILL');
    await child.gone;
  }

  async #exitsWithin(child: Child, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), ms);
    });
    const result = await Promise.race([child.gone.then(() => true as const), expired]);
    clearTimeout(timer);
    return result;
  }

  /** Spawns a child and runs the handshake; the child is ready (and queued requests sent) on success. */
  async #launch(): Promise<void> {
    let env: Record<string, string> | undefined;
    try {
      env = (await this.#credentials.forRequest(this.appId)).env;
    } catch (error) {
      throw new UpstreamError(this.appId, 'unreachable', 'no upstream credential could be obtained', {
        cause: error,
      });
    }
    if (this.#closed) throw new UpstreamError(this.appId, 'closed', 'upstream session is closed');
    this.#secrets = Object.values(env ?? {}).filter((value) => value.length >= 6);
    this.#longestSecret = Math.max(0, ...this.#secrets.map((secret) => secret.length));
    let child: Child;
    try {
      child = this.#spawn(env);
    } catch (error) {
      // spawn throws synchronously on arguments it refuses (a NUL byte in the env, say).
      const code = (error as { code?: unknown }).code;
      throw new UpstreamError(
        this.appId,
        'unreachable',
        `cannot start ${this.#transport.command} (${String(code ?? 'invalid arguments')})`,
      );
    }
    this.#child = child;
    try {
      const response = await this.#request(
        'initialize',
        initializeParams(this.#init),
        { timeoutMs: this.#initializeTimeoutMs },
        true,
      );
      // A child that refuses to initialize cannot serve: for supervision it is unreachable.
      const result = negotiatedResult(this.appId, response, this.#supported, 'unreachable');
      if (child.dying)
        throw new UpstreamError(this.appId, 'unreachable', 'upstream process exited during initialize');
      this.#write(child, '{"jsonrpc":"2.0","method":"notifications/initialized"}\n');
      this.initializeResult = result;
      child.ready = true;
      child.readyAt = Date.now();
    } catch (error) {
      if (!child.ended) signalGroup(child, 'SIGKILL');
      const failure = error instanceof UpstreamError ? error : undefined;
      const detail = child.spawnError
        ? `cannot start ${this.#transport.command}: ${child.spawnError.message}`
        : undefined;
      throw new UpstreamError(
        this.appId,
        failure?.failure === 'protocol' ? 'protocol' : 'unreachable',
        detail ?? failure?.message ?? `upstream process failed to start: ${(error as Error).message}`,
        { cause: child.spawnError ?? error },
      );
    }
    for (const { open, line } of this.#queued.splice(0)) {
      if (!open.settled) this.#writeRequest(child, open, line);
    }
  }

  #spawn(credentialEnv: Record<string, string> | undefined): Child {
    const transport = this.#transport;
    // Only the configured environment reaches the child (plus PATH to find its interpreter):
    // never the broker's own, which holds database URLs and keys.
    const env: Record<string, string> = { PATH: process.env.PATH ?? '', ...transport.env, ...credentialEnv };
    const process_ = spawn(transport.command, transport.args, {
      env,
      cwd: transport.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
      // A process group of its own, so that stopping it reaches the server a launcher (npx, uvx,
      // sh -c, docker run) started, not only the launcher (see signalGroup).
      detached: true,
    });
    let markGone!: () => void;
    const child: Child = {
      process: process_,
      generation: ++this.#generation,
      ready: false,
      readyAt: 0,
      ended: false,
      dying: false,
      violation: undefined,
      spawnError: undefined,
      serverRequests: new Set(),
      stdout: { chunks: [], size: 0 },
      gone: new Promise<void>((resolve) => {
        markGone = resolve;
      }),
    };
    const ended = (code: number | null, signal: NodeJS.Signals | null) => {
      if (child.ended) return;
      child.ended = true;
      child.dying = true;
      markGone();
      this.#onChildEnded(child, code, signal);
    };
    let exitTimer: NodeJS.Timeout | undefined;
    process_.on('error', (error) => {
      child.spawnError ??= error;
      if (isUnreachableCode((error as { code?: unknown }).code) || process_.pid === undefined)
        ended(null, null);
    });
    // 'close' comes after stdout drained, so answers written just before a crash still count; a
    // grandchild holding stdout open must not delay the verdict for long, hence the fallback.
    process_.on('exit', (code, signal) => {
      child.dying = true;
      // Whatever the child left in its group (a server its launcher started) goes with it: now,
      // while the group's id cannot have been given to another process (it still has members, or
      // the pid was freed a moment ago), not when the exit is reported later.
      signalGroup(child, 'SIGKILL');
      exitTimer = setTimeout(() => ended(code, signal), 500);
    });
    process_.on('close', (code, signal) => {
      clearTimeout(exitTimer);
      ended(code, signal);
    });
    process_.stdin.on('error', () => undefined); // EPIPE after a crash: the exit handler reports it
    process_.stdout.on('data', (chunk: Buffer) => this.#onStdout(child, chunk));
    let stderrRest = '';
    // Dropping the rest of a line too long to log, up to its newline.
    let skipping = false;
    process_.stderr.setEncoding('utf8');
    process_.stderr.on('data', (text: string) => {
      let received = stderrRest + text;
      stderrRest = '';
      if (skipping) {
        const newline = received.indexOf('\n');
        if (newline === -1) return;
        received = received.slice(newline + 1);
        skipping = false;
      }
      const lines = received.split('\n');
      stderrRest = lines.pop() ?? '';
      for (const line of lines) this.#logStderr(line);
      // A line that does not end is logged (cut) once what was kept of it is long enough that no
      // lease, nor any token DLP knows, the next chunk might complete could reach into the part
      // logged (DLP does not recognize half a token); the rest is dropped.
      const enough = this.#stderr.maxLineChars + this.#longestSecret + STDERR_TOKEN_MARGIN;
      if (this.#redacted(stderrRest).length >= enough) {
        this.#logStderr(stderrRest);
        stderrRest = '';
        skipping = true;
      }
    });
    return child;
  }

  #onStdout(child: Child, chunk: Buffer): void {
    if (child !== this.#child || child.violation) return;
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(10, start);
      if (newline === -1) break;
      const piece = chunk.subarray(start, newline);
      const { chunks, size } = child.stdout;
      const line = chunks.length === 0 ? piece : Buffer.concat([...chunks, piece], size + piece.length);
      child.stdout = { chunks: [], size: 0 };
      start = newline + 1;
      if (line.length > this.#maxBytes) {
        this.#violation(child, `a message over ${this.#maxBytes} bytes`);
        return;
      }
      this.#onLine(child, line);
      if (child.violation || child !== this.#child) return;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      child.stdout.chunks.push(rest);
      child.stdout.size += rest.length;
      if (child.stdout.size > this.#maxBytes)
        this.#violation(child, `a message over ${this.#maxBytes} bytes`);
    }
  }

  #onLine(child: Child, line: Buffer): void {
    // Tolerate CRLF and blank lines; anything else must be one JSON-RPC message.
    let end = line.length;
    if (end > 0 && line[end - 1] === 13) end--;
    if (end === 0) return;
    let value: unknown;
    try {
      value = JSON.parse(line.toString('utf8', 0, end));
    } catch {
      this.#violation(child, 'a line on stdout that is not JSON');
      return;
    }
    const message = classify(value);
    if (!message) {
      this.#violation(child, 'a line on stdout that is not a JSON-RPC 2.0 message');
      return;
    }
    if (message.kind === 'response') {
      const id = message.message.id;
      const open = typeof id === 'number' ? this.#inflight.get(id) : undefined;
      if (open) open.resolve(message.message);
      else
        this.#logger.debug(
          { appId: this.appId },
          'upstream response for no open request (late or unknown) dropped',
        );
      return;
    }
    if (message.kind === 'request') child.serverRequests.add(message.message.id);
    this.#route(child, message.message);
  }

  /**
   * Stdio has no per-request streams, so a message is attributed: progress to the request with its
   * token; session-wide notifications to the listener; anything else (server-initiated requests,
   * log messages) to the most recently started request that takes messages, else to the listener.
   */
  #route(child: Child, message: ChildMessage): void {
    const token = progressTokenOfNotification(message);
    if (token !== undefined) {
      for (const open of this.#inflight.values()) {
        if (open.progressToken === token && open.deliver(message)) return;
      }
    } else if (!(this.#listener && SESSION_NOTIFICATIONS.has(message.method))) {
      let latest: OpenRequest | undefined;
      for (const open of this.#inflight.values()) {
        if (open.hasListener && (!latest || open.sequence > latest.sequence)) latest = open;
      }
      if (latest?.deliver(message)) return;
    }
    if (this.#listener) {
      this.#listener(message);
      return;
    }
    if ('id' in message) {
      child.serverRequests.delete(message.id);
      this.#write(child, `${JSON.stringify(noTakerError(message.id, message.method))}\n`);
    }
  }

  #writeRequest(child: Child, open: OpenRequest, line: string): void {
    const id = open.id as number;
    this.#inflight.set(id, open);
    this.#written.add(open);
    open.whenSettled(() => this.#inflight.delete(id));
    this.#write(child, line);
  }

  #write(child: Child, line: string): void {
    if (child.dying || !child.process.stdin.writable) return;
    // A child that stops reading its input while messages keep coming (its own requests answered,
    // the agent's calls) would have them pile up in the broker without bound: past one message's
    // bound of backlog it is treated as hung, and restarted.
    if (child.process.stdin.writableLength > this.#maxBytes) {
      this.#violation(child, `requests while not reading its input (over ${this.#maxBytes} bytes waiting)`);
      return;
    }
    child.process.stdin.write(line);
  }

  #giveUp(open: OpenRequest, failure: 'timeout' | 'cancelled'): void {
    const child = this.#child;
    if (open.method === 'initialize' || !child?.ready || child.dying) return;
    if (!this.#written.has(open)) return; // it waited for a child and never reached one
    const reason = failure === 'timeout' ? 'timeout' : 'cancelled by the client';
    const message: JsonRpcMessage = {
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: open.id, reason },
    };
    this.#write(child, `${JSON.stringify(message)}\n`);
  }

  #violation(child: Child, what: string): void {
    if (child.violation) return;
    child.violation = what;
    child.dying = true;
    this.#logger.warn(
      { appId: this.appId, pid: child.process.pid },
      `upstream process sent ${what}; restarting it`,
    );
    this.#failInflight('protocol', `upstream process broke the protocol: ${what}`);
    signalGroup(child, 'SIGKILL');
  }

  #failInflight(failure: UpstreamFailure, message: string): void {
    for (const open of [...this.#inflight.values()]) open.fail(failure, message);
    this.#inflight.clear();
  }

  #onChildEnded(child: Child, code: number | null, signal: NodeJS.Signals | null): void {
    if (child !== this.#child) return;
    const how = child.spawnError ? child.spawnError.message : signal ? `signal ${signal}` : `code ${code}`;
    const failure: UpstreamFailure = child.violation ? 'protocol' : 'closed';
    const message = child.violation
      ? `upstream process broke the protocol: ${child.violation}`
      : `upstream process exited (${how})`;
    this.#failInflight(failure, message);
    if (this.#closed || !child.ready) return; // close() in progress, or a failed start (its caller reports it)
    this.#logger.warn(
      { appId: this.appId, pid: child.process.pid, code, signal },
      'upstream process ended; restarting',
    );
    if (Date.now() - child.readyAt >= this.#restart.stableMs) this.#restartDelay = this.#restart.initialMs;
    this.onClosed?.(new UpstreamError(this.appId, failure, message));
    this.#scheduleRestart();
  }

  #scheduleRestart(): void {
    if (this.#closed) return;
    const delay = this.#restartDelay;
    this.#restartDelay = Math.min(this.#restart.maxMs, this.#restartDelay * 2);
    this.#restartTimer = setTimeout(() => {
      this.#launch().then(
        () => {
          this.#logger.info({ appId: this.appId, pid: this.pid }, 'upstream process restarted');
          this.onRestarted?.(this.initializeResult);
        },
        (error: UpstreamError) => {
          if (this.#closed) return;
          this.#logger.warn({ appId: this.appId, err: error.message }, 'upstream process failed to restart');
          this.onRestartFailed?.(error);
          // Requests that waited for this attempt learn now that it failed, rather than at their deadline.
          for (const { open } of this.#queued.splice(0)) open.fail('unreachable', error.message);
          this.#scheduleRestart();
        },
      );
    }, delay);
  }

  #redacted(text: string): string {
    let redacted = text;
    for (const secret of this.#secrets) redacted = redacted.split(secret).join('[redacted]');
    return redacted;
  }

  #logStderr(raw: string): void {
    if (raw.length === 0) return;
    const now = Date.now();
    const window = this.#stderrWindow;
    if (now - window.startedAt >= this.#stderr.windowMs) {
      if (window.suppressed > 0) {
        this.#logger.info(
          { appId: this.appId, suppressed: window.suppressed },
          'upstream stderr lines suppressed',
        );
      }
      this.#stderrWindow = { startedAt: now, lines: 0, suppressed: 0 };
    }
    if (this.#stderrWindow.lines >= this.#stderr.linesPerWindow) {
      this.#stderrWindow.suppressed++;
      return;
    }
    this.#stderrWindow.lines++;
    // Redacted whole, then cut: cut first, a lease across the cut would be logged but for its end.
    // The lease's own values first (they need not look like anything), then DLP's detectors.
    const redacted = upstreamText(this.#redacted(raw));
    const line =
      redacted.length > this.#stderr.maxLineChars
        ? `${redacted.slice(0, this.#stderr.maxLineChars)}…`
        : redacted;
    this.#logger.info({ appId: this.appId, stderr: line }, 'upstream stderr');
  }
}

/**
 * Signals the child's whole process group (it leads one: spawned detached), so that a server
 * started by a launcher is stopped with it; the child alone if the group is gone (ESRCH) or the
 * platform has none.
 */
function signalGroup(child: Child, signal: NodeJS.Signals): void {
  const pid = child.process.pid;
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      child.process.kill(signal);
    } catch {
      // Already gone.
    }
  }
}
