import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';

/** A small in-memory record store: the demo app's data. */
export class RecordStore {
  readonly #records = new Map<string, string>([
    ['r-1', 'The first record'],
    ['r-2', 'The second record'],
  ]);

  list(): { id: string; text: string }[] {
    return [...this.#records].map(([id, text]) => ({ id, text }));
  }
  get(id: string): string | undefined {
    return this.#records.get(id);
  }
  put(id: string, text: string): void {
    this.#records.set(id, text);
  }
  delete(id: string): boolean {
    return this.#records.delete(id);
  }
}

const text = (value: string) => ({ content: [{ type: 'text' as const, text: value }] });

/**
 * The demo upstream's MCP server: read, write and delete tools over a record store, annotated the
 * way real servers annotate them, so the gateway classifies them read, write and delete.
 */
export function createRecordsServer(store: RecordStore): McpServer {
  const server = new McpServer({ name: 'portcullis-demo-records', version: '0.1.0' });

  server.registerTool(
    'list_records',
    { description: 'List every record.', annotations: { readOnlyHint: true } },
    async () => text(JSON.stringify(store.list())),
  );
  server.registerTool(
    'read_record',
    {
      description: 'Read one record by id.',
      inputSchema: { id: z.string().min(1) },
      annotations: { readOnlyHint: true },
    },
    async ({ id }) => {
      const value = store.get(id);
      return value === undefined ? { ...text(`no record ${id}`), isError: true } : text(value);
    },
  );
  server.registerTool(
    'slow_read',
    {
      description: 'Read every record after waiting `ms` milliseconds (for drain and timeout tests).',
      inputSchema: { ms: z.number().int().min(0).max(60000) },
      annotations: { readOnlyHint: true },
    },
    async ({ ms }) => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      return text(JSON.stringify(store.list()));
    },
  );
  server.registerTool(
    'update_record',
    {
      description: 'Create or replace a record.',
      inputSchema: { id: z.string().min(1), text: z.string() },
      annotations: { readOnlyHint: false, destructiveHint: false },
    },
    async ({ id, text: value }) => {
      store.put(id, value);
      return text(`stored ${id}`);
    },
  );
  server.registerTool(
    'delete_record',
    {
      description: 'Delete a record for good.',
      inputSchema: { id: z.string().min(1) },
      annotations: { readOnlyHint: false, destructiveHint: true },
    },
    async ({ id }) => text(store.delete(id) ? `deleted ${id}` : `no record ${id}`),
  );
  server.registerTool(
    'read_deploy_config',
    {
      description:
        'Read the deployment configuration. It carries a (fake) cloud credential, so the DLP tests can show the gateway redacting it.',
      annotations: { readOnlyHint: true },
    },
    async () => {
      // AWS's documented example key pair, assembled here so no scanner mistakes the file for a leak.
      const accessKeyId = ['AKIA', 'IOSFODNN7EXAMPLE'].join('');
      const secretAccessKey = ['wJalrXUtnFEMI/K7MDENG/', 'bPxRfiCYEXAMPLEKEY'].join('');
      const config = { region: 'eu-west-1', bucket: 'demo-artifacts', accessKeyId, secretAccessKey };
      return {
        content: [
          {
            type: 'text' as const,
            text: `aws_access_key_id=${accessKeyId}\naws_secret_access_key=${secretAccessKey}`,
          },
        ],
        structuredContent: config,
      };
    },
  );
  return server;
}
