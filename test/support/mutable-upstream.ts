import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { completable } from '@modelcontextprotocol/sdk/server/completable.js';
import { McpServer, type RegisteredTool, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/** One tool of the upstream: it answers `<name>: <text>` so a test can tell which tool ran. */
export interface UpstreamToolSpec {
  name: string;
  description: string;
  annotations?: ToolAnnotations;
  /** The tool's `_meta`: outside the fingerprint, so free to change after approval. */
  _meta?: Record<string, unknown>;
  /** A log message's data (notifications/message) the tool sends while it runs, before its result. */
  log?: unknown;
  /** How long the tool takes before it answers (it stops early when the call is cancelled). */
  delayMs?: number;
}

/** What the upstream saw of one HTTP request: enough to prove what the gateway forwards. */
export interface SeenRequest {
  method: string;
  sessionId: string | undefined;
  authorization: string | undefined;
  /** Every header name, lowercased, with its value (so a test can look for a token anywhere). */
  headers: Record<string, string>;
}

interface Session {
  server: McpServer;
  transport: StreamableHTTPServerTransport;
  tools: Map<string, RegisteredTool>;
}

/**
 * A small MCP server over Streamable HTTP on 127.0.0.1, built with the SDK's McpServer (off the
 * gateway's hot path, so the SDK's cost does not matter here). Its tools can be changed or added
 * while it runs: every open session hears `notifications/tools/list_changed`, as a real server
 * whose definitions change would send. It also serves one resource (`note://welcome`) and one
 * prompt (`summarize`, whose topic completes), and records the headers of every request it receives.
 */
export class MutableUpstream {
  readonly url: string;
  readonly seen: SeenRequest[] = [];
  /** Every tool call that ran here, as `<tool>: <text>`. */
  readonly calls: string[] = [];
  /** Names of the notes read through the `note://{name}` template, as the upstream received them. */
  readonly noteReads: string[] = [];
  /** Calls the client (the gateway) cancelled while they ran, as `<tool>: <text>`. */
  readonly cancelled: string[] = [];
  readonly #http: Server;
  readonly #specs = new Map<string, UpstreamToolSpec>();
  readonly #sessions = new Map<string, Session>();

  private constructor(http: Server, url: string, tools: UpstreamToolSpec[]) {
    this.#http = http;
    this.url = url;
    for (const tool of tools) this.#specs.set(tool.name, tool);
  }

  static async start(tools: UpstreamToolSpec[]): Promise<MutableUpstream> {
    let upstream: MutableUpstream | undefined;
    const http = createServer((req, res) => {
      upstream!.#handle(req, res).catch((error: Error) => {
        if (!res.headersSent) res.writeHead(500).end(error.message);
      });
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const { port } = http.address() as AddressInfo;
    upstream = new MutableUpstream(http, `http://127.0.0.1:${port}/mcp`, tools);
    return upstream;
  }

  /** Adds a tool or changes its definition, in every open session (each hears list_changed). */
  setTool(spec: UpstreamToolSpec): void {
    this.#specs.set(spec.name, spec);
    for (const session of this.#sessions.values()) {
      const registered = session.tools.get(spec.name);
      if (registered)
        registered.update({
          description: spec.description,
          ...(spec.annotations ? { annotations: spec.annotations } : {}),
          ...(spec._meta ? { _meta: spec._meta } : {}),
        });
      else session.tools.set(spec.name, this.#register(session.server, spec));
    }
  }

  async stop(): Promise<void> {
    await Promise.allSettled([...this.#sessions.values()].map((session) => session.server.close()));
    this.#http.closeAllConnections();
    await new Promise<void>((resolve) => this.#http.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const sessionId =
      typeof req.headers['mcp-session-id'] === 'string' ? req.headers['mcp-session-id'] : undefined;
    this.seen.push({
      method: req.method ?? '',
      sessionId,
      authorization: req.headers.authorization,
      headers: Object.fromEntries(
        Object.entries(req.headers).map(([name, value]) => [
          name,
          Array.isArray(value) ? value.join(', ') : String(value),
        ]),
      ),
    });
    if ((req.url ?? '').split('?')[0] !== '/mcp') return void res.writeHead(404).end();
    if (sessionId) {
      const session = this.#sessions.get(sessionId);
      if (!session) return void res.writeHead(404).end();
      return session.transport.handleRequest(req, res);
    }
    if (req.method !== 'POST') return void res.writeHead(400).end();
    // A request without a session must be an initialize; the transport refuses anything else.
    const server = new McpServer(
      { name: 'mutable-upstream', version: '1.0.0' },
      { capabilities: { logging: {} } },
    );
    const session: Session = {
      server,
      transport: new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => void this.#sessions.set(id, session),
      }),
      tools: new Map(),
    };
    session.transport.onclose = () => {
      if (session.transport.sessionId) this.#sessions.delete(session.transport.sessionId);
    };
    for (const spec of this.#specs.values()) session.tools.set(spec.name, this.#register(server, spec));
    server.registerResource(
      'welcome',
      'note://welcome',
      // An address in a listing: what DLP makes of listings shows in it.
      { mimeType: 'text/plain', description: 'A welcome note from olga@example.com' },
      async (uri) => ({ contents: [{ uri: uri.href, mimeType: 'text/plain', text: 'Welcome, reader.' }] }),
    );
    // Any other note by name: the names it was asked for are kept, to prove what reached it.
    server.registerResource(
      'note',
      new ResourceTemplate('note://{name}', { list: undefined }),
      { mimeType: 'text/plain', description: 'A note by name' },
      async (uri, { name }) => {
        this.noteReads.push(String(name));
        return {
          contents: [{ uri: uri.href, mimeType: 'text/plain', text: `A note called ${String(name)}.` }],
        };
      },
    );
    server.registerPrompt(
      'summarize',
      {
        description: 'Summarize a topic',
        // Completes a topic with what it was sent, reversed: a test can see what reached this
        // server without the gateway's DLP on the way back recognising it (a reversed address).
        argsSchema: { topic: completable(z.string(), (typed) => [[...typed].reverse().join('')]) },
      },
      ({ topic }) => ({
        messages: [{ role: 'user', content: { type: 'text', text: `Summarize ${topic}.` } }],
      }),
    );
    await server.connect(session.transport);
    await session.transport.handleRequest(req, res);
  }

  #register(server: McpServer, spec: UpstreamToolSpec): RegisteredTool {
    return server.registerTool(
      spec.name,
      {
        description: spec.description,
        inputSchema: { text: z.string() },
        ...(spec.annotations ? { annotations: spec.annotations } : {}),
        ...(spec._meta ? { _meta: spec._meta } : {}),
      },
      async ({ text }, extra) => {
        this.calls.push(`${spec.name}: ${text}`);
        if (spec.delayMs)
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(resolve, spec.delayMs);
            extra.signal.addEventListener('abort', () => {
              clearTimeout(timer);
              this.cancelled.push(`${spec.name}: ${text}`);
              reject(new Error('cancelled'));
            });
          });
        if (spec.log !== undefined)
          await extra.sendNotification({
            method: 'notifications/message',
            params: { level: 'info', data: spec.log },
          });
        return { content: [{ type: 'text', text: `${spec.name}: ${text}` }] };
      },
    );
  }
}
