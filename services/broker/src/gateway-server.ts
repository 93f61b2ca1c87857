import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import type { Agent } from './directory.ts';
import type { ToolCallHandler } from './tool-call.ts';
import type { UpstreamApp } from './upstream.ts';

export const GATEWAY_INFO = { name: 'portcullis-gateway', version: '0.1.0' };

/**
 * The MCP server one agent session talks to. It serves the upstream's tools; every tools/call
 * goes through the enforcement pipeline. The agent comes from this request's authentication,
 * not from the session, so a suspension applies to calls already in a session.
 */
export function createGatewayServer(upstream: UpstreamApp, toolCalls: ToolCallHandler): Server {
  const server = new Server(GATEWAY_INFO, {
    capabilities: { tools: {} },
    instructions:
      'Tools are served through the Portcullis gateway; calls are authorized by policy and audited.',
  });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await upstream.refreshTools() }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const agent = (extra.authInfo?.extra as { agent?: Agent } | undefined)?.agent;
    if (!agent) throw new McpError(ErrorCode.InternalError, 'request reached the gateway unauthenticated');
    return toolCalls.handle(agent, request.params.name, request.params.arguments ?? {}, extra.signal);
  });
  return server;
}
