import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { z } from 'zod';

/**
 * How the gateway reaches an app (an upstream MCP server), and how it authenticates there. The
 * decision service validates and stores it, pins the app's tools through it, and publishes it to
 * brokers in the `app_connection` directory record; the broker turns it into an UpstreamTarget.
 *
 * Secrets never belong here: the connection travels on Kafka. Upstream credentials come from the
 * credential service through the auth scheme (the credential issue adds schemes that name a vault
 * entry, never a secret value).
 */

/** Environment variable names a stdio app may be given (POSIX portable names, upper case). */
export const EnvName = z
  .string()
  .regex(/^[A-Z_][A-Z0-9_]*$/, 'an environment variable name: A-Z, 0-9 and _, not starting with a digit');

/**
 * A name that says it holds a secret. Such values would travel on Kafka in clear, so they are
 * refused: the credential service is where upstream secrets live.
 */
const SECRET_LOOKING_NAME = /(SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|API_?KEY|PRIVATE_?KEY|CREDENTIAL)/;

/** A command is either absolute or a bare program name resolved on the child's PATH; nothing relative. */
const Command = z
  .string()
  .min(1)
  .max(4096)
  .refine((command) => !command.includes('\0'), 'no NUL characters')
  .refine(
    (command) => command.startsWith('/') || /^[A-Za-z0-9._+-]+$/.test(command),
    'an absolute path (/usr/bin/node) or a bare program name (node), not a relative path',
  );

const NoNul = z
  .string()
  .max(32768)
  .refine((value) => !value.includes('\0'), 'no NUL characters');

export const HttpTransport = z.object({
  type: z.literal('http'),
  url: z
    .string()
    .max(2048)
    .superRefine((text, ctx) => {
      const url = URL.parse(text);
      if (!url) ctx.addIssue({ code: 'custom', message: 'a URL' });
      else if (url.protocol !== 'http:' && url.protocol !== 'https:')
        ctx.addIssue({ code: 'custom', message: 'an http: or https: URL' });
      else if (url.username !== '' || url.password !== '')
        ctx.addIssue({
          code: 'custom',
          message: 'no user or password in the URL: upstream secrets belong in the credential service',
        });
    }),
});

export const StdioTransport = z.object({
  type: z.literal('stdio'),
  command: Command,
  args: z.array(NoNul).max(256).default([]),
  /** The child's whole environment: nothing of the parent's is inherited. Not for secrets. */
  env: z
    .record(EnvName, NoNul)
    .default({})
    .refine((env) => Object.keys(env).length <= 256, 'at most 256 variables')
    .superRefine((env, ctx) => {
      for (const name of Object.keys(env))
        if (SECRET_LOOKING_NAME.test(name))
          ctx.addIssue({
            code: 'custom',
            path: [name],
            message: `${name} looks like a secret; upstream secrets belong in the credential service, not in the app's connection`,
          });
    }),
  cwd: z
    .string()
    .max(4096)
    .refine((cwd) => cwd.startsWith('/') && !cwd.includes('\0'), 'an absolute directory')
    .optional(),
});

/** How the gateway reaches an app; mirrors the broker's UpstreamTransport. */
export const AppTransport = z.discriminatedUnion('type', [HttpTransport, StdioTransport]);
export type AppTransport = z.infer<typeof AppTransport>;

/**
 * How the gateway authenticates to the app. A discriminated union on `scheme` with one member
 * today; the credential issue adds its schemes as further members (each naming a vault entry),
 * and every consumer that switches on `scheme` fails closed on one it does not know.
 */
export const AppAuth = z.discriminatedUnion('scheme', [
  z.object({ scheme: z.literal('none') }).describe('no upstream authentication'),
]);
export type AppAuth = z.infer<typeof AppAuth>;

/** An app's connection as the API takes it and the directory record carries it. */
export const AppConnection = z.object({
  transport: AppTransport,
  auth: AppAuth.default({ scheme: 'none' }),
});
export type AppConnection = z.infer<typeof AppConnection>;

const Sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'a lowercase hex SHA-256 digest');

/** A tool fingerprint: toolFingerprint() of its definition. */
export const ToolFingerprint = Sha256Hex;

/** MCP tool names: 1-128 of A-Z a-z 0-9 _ - . (the spec's guidance), nothing a path could use. */
export const ToolName = z.string().regex(/^[A-Za-z0-9_.-]{1,128}$/, 'an MCP tool name');

/**
 * The parts of an MCP tool definition that are fingerprinted: everything that tells a model (or
 * the gateway's action-class logic) what the tool does and takes. `_meta`, `icons` and `execution`
 * are left out: they are presentation or transport hints, not the tool's contract.
 */
export const ToolDefinition = z
  .object({
    name: ToolName,
    title: z.string().optional(),
    description: z.string().optional(),
    inputSchema: z.record(z.string(), z.unknown()),
    outputSchema: z.record(z.string(), z.unknown()).optional(),
    annotations: z.record(z.string(), z.unknown()).optional(),
  })
  .refine(storableJson, {
    message: 'holds a NUL character or an unpaired surrogate, which no database column can store',
  });
export type ToolDefinition = z.infer<typeof ToolDefinition>;

/**
 * Whether a JSON value can be stored in a Postgres jsonb column: no string (or key) holds U+0000
 * or an unpaired surrogate. Checked on the JSON text, where both can only appear escaped
 * (`\u0000`, `\ud83d`; well-formed JSON.stringify escapes a lone surrogate): no walk of a
 * nesting an upstream chose. A value too deep to serialise is not storable either.
 */
export function storableJson(value: unknown): boolean {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch {
    return false;
  }
  return text === undefined || !UNSTORABLE_ESCAPE.test(text);
}
// An escape that is not itself escaped (an even number of backslashes before it).
const UNSTORABLE_ESCAPE = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i;

/** A tool as an upstream lists it (tools/list): the members pinning looks at, and any others. */
export interface ListedToolDefinition {
  name: string;
  title?: string | undefined;
  description?: string | undefined;
  inputSchema?: unknown;
  outputSchema?: unknown;
  annotations?: unknown;
}

/**
 * The pinned members of a listed tool, absent ones left out (extra members dropped): what the
 * fingerprint covers, and all of a tool the gateway shows an agent — a member outside the pin
 * (`_meta`, `icons`, anything an upstream makes up) could change after approval unseen.
 */
export function pinnedMembers(tool: ListedToolDefinition): Record<string, unknown> {
  return {
    name: tool.name,
    ...(tool.title === undefined ? {} : { title: tool.title }),
    ...(tool.description === undefined ? {} : { description: tool.description }),
    // A tool without inputSchema is invalid MCP; pinning {} for it keeps the fingerprint total.
    inputSchema: tool.inputSchema ?? {},
    ...(tool.outputSchema === undefined ? {} : { outputSchema: tool.outputSchema }),
    ...(tool.annotations === undefined ? {} : { annotations: tool.annotations }),
  };
}

/**
 * The fingerprint of a tool's definition: the lowercase hex SHA-256 of the RFC 8785 canonical JSON
 * of {name, title, description, inputSchema, outputSchema, annotations} (absent members left out).
 * Key order does not matter; any change to one of these members changes it.
 */
export function toolFingerprint(tool: ListedToolDefinition): string {
  const canonical = canonicalize(pinnedMembers(tool));
  if (canonical === undefined) throw new Error('tool definition is not JSON');
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** The fingerprinted members of a tool as an upstream listed it, validated (extra members dropped). */
export function toolDefinitionOf(tool: ListedToolDefinition): ToolDefinition {
  return ToolDefinition.parse(pinnedMembers(tool));
}

/**
 * A broker saw an upstream tool whose definition does not match its pin (or that has no pin). The
 * broker blocks the tool; the decision service records the change for an admin to approve. On
 * `portcullis.tool-definitions.v1`, keyed `<appId>/<tool>`; published at most once per
 * (app, tool, observed fingerprint) per broker process.
 */
export const ToolDefinitionChangedV1 = z.object({
  type: z.literal('tool.definition_changed'),
  version: z.literal(1),
  eventId: z.uuid(),
  occurredAt: z.iso.datetime({ offset: true }),
  appId: z.string().min(1),
  tool: ToolName,
  /** The pinned fingerprint; null when the tool has no pin (it appeared after registration). */
  pinnedFingerprint: ToolFingerprint.nullable(),
  observedFingerprint: ToolFingerprint,
  /** The definition the broker saw; toolFingerprint(definition) === observedFingerprint. */
  definition: ToolDefinition,
  source: z.object({ service: z.string().min(1), instanceId: z.string().min(1) }),
});
export type ToolDefinitionChangedV1 = z.infer<typeof ToolDefinitionChangedV1>;
