import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '@portcullis/runtime';

export interface UpstreamOptions {
  appId: string;
  url: string;
  timeoutMs: number;
  logger: Logger;
}

/**
 * One upstream MCP server (an "app"), reached with the SDK's client over Streamable HTTP. The
 * broker never forwards the agent's own credentials here; the credential lease seam comes later.
 */
export class UpstreamApp {
  readonly appId: string;
  readonly #options: UpstreamOptions;
  #client: Client | undefined;
  #tools = new Map<string, Tool>();

  constructor(options: UpstreamOptions) {
    this.appId = options.appId;
    this.#options = options;
  }

  async connect(): Promise<void> {
    const client = new Client({ name: 'portcullis-broker', version: '0.1.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(this.#options.url)));
    this.#client = client;
    await this.refreshTools();
  }

  /** Re-reads the upstream's whole tool list, following pagination. */
  async refreshTools(): Promise<Tool[]> {
    const client = this.#requireClient();
    const tools: Tool[] = [];
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor ? { cursor } : {}, { timeout: this.#options.timeoutMs });
      tools.push(...page.tools);
      cursor = page.nextCursor;
    } while (cursor);
    this.#tools = new Map(tools.map((tool) => [tool.name, tool]));
    return tools;
  }

  /** A tool by name from the cached list, re-reading the list once when it is not there. */
  async findTool(name: string): Promise<Tool | undefined> {
    return this.#tools.get(name) ?? (await this.refreshTools()).find((tool) => tool.name === name);
  }

  async callTool(name: string, args: Record<string, unknown>, signal: AbortSignal): Promise<CallToolResult> {
    const result = await this.#requireClient().callTool({ name, arguments: args }, undefined, {
      signal,
      timeout: this.#options.timeoutMs,
    });
    return result as CallToolResult;
  }

  async ping(): Promise<void> {
    await this.#requireClient().ping({ timeout: 2000 });
  }

  async close(): Promise<void> {
    await this.#client?.close();
  }

  #requireClient(): Client {
    if (!this.#client) throw new Error(`upstream ${this.appId} is not connected`);
    return this.#client;
  }
}
