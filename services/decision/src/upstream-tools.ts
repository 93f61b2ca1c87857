import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, type StdioServerParameters } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CreateMessageRequestSchema,
  ElicitRequestSchema,
  ErrorCode,
  ListRootsRequestSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import {
  type AppTransport,
  type ListedToolDefinition,
  type ToolDefinition,
  ToolName,
  toolDefinitionOf,
  toolFingerprint,
} from '@portcullis/contracts';
import { z } from 'zod';

/**
 * Lists an app's tools through the official SDK client, off the gateway's hot path: registration
 * and re-approval are rare admin actions, where the SDK is the protocol reference we want.
 */

/** A tool as pinned: its fingerprint and the definition that produced it. */
export interface PinnedTool {
  fingerprint: string;
  definition: ToolDefinition;
}

export interface ListedTools {
  tools: Map<string, PinnedTool>;
  /** Tools the upstream listed that cannot be pinned (bad name, not JSON); they stay blocked. */
  rejected: { name: string; reason: string }[];
}

/** The upstream could not be reached or did not answer as an MCP server. */
export class UpstreamToolsError extends Error {
  readonly code: 'upstream_unreachable' | 'upstream_invalid';

  constructor(
    code: 'upstream_unreachable' | 'upstream_invalid',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UpstreamToolsError';
    this.code = code;
  }
}

// Pagination guards: a server that keeps returning cursors must not keep us here forever.
const MAX_PAGES = 100;
const MAX_TOOLS = 10_000;

/**
 * Every capability the gateway relays from agents. Servers may list some tools only to clients
 * with a capability (server-everything registers its sampling/elicitation/roots tools this way),
 * so the pin covers the widest set an agent can be shown.
 */
const RELAYED_CAPABILITIES = {
  roots: { listChanged: true },
  sampling: {},
  elicitation: { form: {}, url: {} },
};

// The variables the SDK's stdio transport adds to every child's environment. Set to undefined
// they are dropped by child_process.spawn, so the child gets exactly the app's configured env.
const SDK_DEFAULT_ENV = ['HOME', 'LOGNAME', 'PATH', 'SHELL', 'TERM', 'USER', 'APPDATA', 'USERPROFILE'];

/**
 * The SDK's stdio parameters for a transport: the child gets exactly the configured env (the SDK
 * would otherwise add HOME, PATH, USER… of this process) and its stderr is discarded.
 */
export function stdioParameters(transport: Extract<AppTransport, { type: 'stdio' }>): StdioServerParameters {
  const env: Record<string, string | undefined> = Object.fromEntries(
    SDK_DEFAULT_ENV.map((name) => [name, undefined]),
  );
  Object.assign(env, transport.env);
  return {
    command: transport.command,
    args: transport.args,
    env: env as Record<string, string>,
    ...(transport.cwd ? { cwd: transport.cwd } : {}),
    // The child's stderr may hold anything; it is neither logged nor returned.
    stderr: 'ignore',
  };
}

function transportFor(transport: AppTransport): Transport {
  if (transport.type === 'http') return new StreamableHTTPClientTransport(new URL(transport.url));
  return new StdioClientTransport(stdioParameters(transport));
}

/**
 * Connects to the upstream, lists all its tools (following pagination) and fingerprints each one.
 * Rejects with UpstreamToolsError; never leaves a child process or session behind.
 */
export async function listUpstreamTools(
  transport: AppTransport,
  options: { timeoutMs: number },
): Promise<ListedTools> {
  const client = new Client(
    { name: 'portcullis-decision', version: '1.0.0' },
    { capabilities: RELAYED_CAPABILITIES },
  );
  // Server-initiated requests during the listing are answered without involving anyone.
  client.setRequestHandler(ListRootsRequestSchema, () => ({ roots: [] }));
  client.setRequestHandler(CreateMessageRequestSchema, () => {
    throw new McpError(ErrorCode.InvalidRequest, 'sampling is not available while pinning tools');
  });
  client.setRequestHandler(ElicitRequestSchema, () => ({ action: 'decline' as const }));

  const deadline = AbortSignal.timeout(options.timeoutMs);
  const requestOptions = { signal: deadline, timeout: options.timeoutMs };
  let connected = false;
  try {
    try {
      await client.connect(transportFor(transport), requestOptions);
      connected = true;
    } catch (error) {
      throw new UpstreamToolsError(
        'upstream_unreachable',
        `could not connect to the upstream: ${describe(error, deadline)}`,
        { cause: error },
      );
    }
    const tools = new Map<string, PinnedTool>();
    const rejected: { name: string; reason: string }[] = [];
    // A server without the tools capability serves no tools: nothing to pin, which is not an error.
    if (!client.getServerCapabilities()?.tools) return { tools, rejected };
    let cursor: string | undefined;
    for (let page = 0; ; page++) {
      if (page === MAX_PAGES)
        throw new UpstreamToolsError('upstream_invalid', `tools/list did not end after ${MAX_PAGES} pages`);
      let result: z.infer<typeof RawToolsPage>;
      try {
        // The raw page, not listTools(): the SDK's schema drops members it does not know (inside
        // annotations, say), while the broker fingerprints the listing as the upstream sent it —
        // a pin made from the SDK's copy would not match, and the tool would be blocked at once.
        result = await client.request(
          { method: 'tools/list', params: cursor === undefined ? {} : { cursor } },
          RawToolsPage,
          requestOptions,
        );
      } catch (error) {
        // An MCP error answer means the server is there but will not list its tools.
        const answered =
          error instanceof McpError &&
          error.code !== ErrorCode.ConnectionClosed &&
          error.code !== ErrorCode.RequestTimeout &&
          !deadline.aborted;
        const code = answered ? 'upstream_invalid' : 'upstream_unreachable';
        throw new UpstreamToolsError(code, `tools/list failed: ${describe(error, deadline)}`, {
          cause: error,
        });
      }
      for (const tool of result.tools) {
        if (tools.has(tool.name))
          throw new UpstreamToolsError('upstream_invalid', `the upstream lists the tool ${tool.name} twice`);
        if (!ToolName.safeParse(tool.name).success) {
          rejected.push({ name: tool.name.slice(0, 200), reason: 'not a valid MCP tool name' });
          continue;
        }
        try {
          const definition = toolDefinitionOf(tool as ListedToolDefinition);
          tools.set(tool.name, { definition, fingerprint: toolFingerprint(definition) });
        } catch (error) {
          rejected.push({ name: tool.name, reason: (error as Error).message.slice(0, 500) });
        }
        if (tools.size + rejected.length > MAX_TOOLS)
          throw new UpstreamToolsError('upstream_invalid', `the upstream lists more than ${MAX_TOOLS} tools`);
      }
      cursor = result.nextCursor;
      if (cursor === undefined) return { tools, rejected };
    }
  } finally {
    // Ends the HTTP session (DELETE) or the child process; a failure here changes nothing.
    if (connected) await client.close().catch(() => {});
  }
}

function describe(error: unknown, deadline: AbortSignal): string {
  if (deadline.aborted) return 'no answer before the deadline';
  const message = error instanceof Error ? error.message : String(error);
  const cause = error instanceof Error && error.cause instanceof Error ? ` (${error.cause.message})` : '';
  return `${message}${cause}`.slice(0, 500);
}

/** One page of tools/list as the upstream sent it: each tool's members kept, whatever they are. */
const RawToolsPage = z.looseObject({
  tools: z.array(z.looseObject({ name: z.string() })),
  nextCursor: z.string().optional(),
});
