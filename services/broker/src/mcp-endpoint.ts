import { randomUUID } from 'node:crypto';
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ErrorCode, isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import express, { type ErrorRequestHandler, type Request, type Response, Router } from 'express';
import type { SessionRegistry } from './sessions.ts';

export interface McpEndpointOptions {
  sessions: SessionRegistry;
  /** Creates the MCP server for a new session. */
  createServer: () => Server;
  maxRequestBytes: number;
}

interface LocalSession {
  transport: StreamableHTTPServerTransport;
  agentId: string;
}

/** JSON-RPC's "server error" range; the SDK uses -32001 for an unknown session as well. */
const SESSION_NOT_FOUND = -32001;

/**
 * The agent-facing MCP endpoint (Streamable HTTP). Requests are authenticated before they reach
 * it. A session belongs to the agent that initialized it: any other agent presenting its id is
 * told the session does not exist.
 */
export function createMcpEndpoint(options: McpEndpointOptions): {
  router: Router;
  closeAll: () => Promise<void>;
} {
  const { sessions, createServer, maxRequestBytes } = options;
  const local = new Map<string, LocalSession>();
  const router = Router();

  const handle = async (req: Request, res: Response) => {
    const agentId = req.auth!.clientId;
    const sessionId = req.get('mcp-session-id');
    if (sessionId) {
      const session = local.get(sessionId);
      const owner = session ? await sessions.ownerOf(sessionId) : undefined;
      if (!session || owner !== agentId || session.agentId !== agentId) {
        return jsonRpcError(res, 404, SESSION_NOT_FOUND, 'Session not found; initialize a new session');
      }
      return session.transport.handleRequest(req, res, req.body);
    }
    if (req.method !== 'POST' || !isInitializeRequest(req.body)) {
      return jsonRpcError(res, 400, ErrorCode.InvalidRequest, 'No session: send an initialize request first');
    }
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      // Plain JSON responses: every request gets its answer in its own HTTP response.
      enableJsonResponse: true,
      onsessioninitialized: async (id) => {
        local.set(id, { transport, agentId });
        await sessions.bind(id, agentId);
      },
      onsessionclosed: async (id) => {
        local.delete(id);
        await sessions.drop(id);
      },
    });
    transport.onclose = () => {
      if (transport.sessionId) local.delete(transport.sessionId);
    };
    await createServer().connect(transport);
    await transport.handleRequest(req, res, req.body);
  };

  const wrap = (req: Request, res: Response, next: (error?: unknown) => void) => {
    handle(req, res).catch(next);
  };
  router.post('/', express.json({ limit: maxRequestBytes, type: () => true }), wrap);
  // No server-initiated messages yet (sampling, elicitation and notifications come with the gateway
  // issue), so there is no standalone SSE stream to offer; the spec allows 405 here. It also means
  // no open-ended stream can hold a draining replica open.
  router.get('/', (_req, res) => {
    res.status(405).set('Allow', 'POST, DELETE');
    jsonRpcError(
      res,
      405,
      ErrorCode.ConnectionClosed,
      'Method not allowed: this gateway does not open SSE streams yet',
    );
  });
  router.delete('/', wrap);
  router.use(jsonRpcErrorHandler());

  const closeAll = async () => {
    await Promise.allSettled([...local.values()].map((session) => session.transport.close()));
    local.clear();
  };
  return { router, closeAll };
}

/** Body-parser and handler failures on /mcp become JSON-RPC errors, as MCP clients expect. */
function jsonRpcErrorHandler(): ErrorRequestHandler {
  return (error, req, res, _next) => {
    const failure = error as { type?: string; status?: number };
    if (res.headersSent) return void res.end();
    if (failure.type === 'entity.too.large') {
      return jsonRpcError(res, 413, ErrorCode.InvalidRequest, 'Request body too large');
    }
    if (
      failure.type === 'entity.parse.failed' ||
      failure.type === 'encoding.unsupported' ||
      failure.status === 400
    ) {
      return jsonRpcError(res, 400, ErrorCode.ParseError, 'Parse error: the body is not valid JSON');
    }
    req.log.error({ err: error }, 'mcp request failed');
    return jsonRpcError(res, 500, ErrorCode.InternalError, 'Internal error');
  };
}

function jsonRpcError(res: Response, status: number, code: number, message: string): void {
  res.status(status).json({ jsonrpc: '2.0', error: { code, message }, id: null });
}
