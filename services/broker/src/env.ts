import { commonServiceEnv, env, loadEnv } from '@portcullis/config';
import { z } from 'zod';
import { checkOAuthEnv, oauthEnv } from './auth/oauth-env.ts';
import { DEFAULT_MAX_STALENESS_MS } from './directory.ts';
import { LOOPBACK_HOSTS, LOOPBACK_ORIGINS } from './host-origin.ts';
import { DEFAULT_RATE_CLASSES, RateClasses } from './rate-limit.ts';
import { DEFAULT_MAX_STDIO_SESSIONS, DEFAULT_MAX_STDIO_SESSIONS_PER_AGENT } from './upstream/connector.ts';

// The only module of the broker that reads process.env.
export const BrokerEnv = z
  .object({
    ...commonServiceEnv,
    ...oauthEnv,
    HTTP_PORT: env.port('port of the MCP endpoint (/mcp) and of health, readiness and metrics').default(8080),
    REDIS_URL: env.url('Redis for shared runtime state (MCP session bindings)', ['redis', 'rediss']),
    REDIS_KEY_PREFIX: z
      .string()
      .regex(/^[\w.:-]*$/, 'letters, digits, dot, colon, dash and underscore only')
      .default('')
      .describe('prefix for every Redis key this broker writes'),
    REDIS_COMMAND_TIMEOUT_MS: env
      .positiveInt(
        'longest wait for one Redis command; past it the request that needed it is refused as retryable',
      )
      .default(1000),
    POLICY_BUNDLE_PATH: z
      .preprocess((value) => (value === '' ? undefined : value), z.string().min(1).optional())
      .describe('a local bundle.tar.gz (rego/build.sh) used until an activation arrives on the policy topic'),
    UPSTREAM_URL: z
      .preprocess((value) => (value === '' ? undefined : value), z.url({ protocol: /^https?$/ }).optional())
      .describe(
        'Streamable HTTP URL of a static app for development (no registration, no tool pinning); apps registered through the decision service need no variable',
      ),
    UPSTREAM_APP_ID: z
      .preprocess(
        (value) => (value === '' ? undefined : value),
        z
          .string()
          .regex(/^[a-z][a-z0-9-]{0,62}$/, 'an app id from the directory')
          .optional(),
      )
      .describe('directory id of the static app UPSTREAM_URL serves'),
    UPSTREAM_TIMEOUT_MS: env
      .positiveInt('longest wait for one upstream answer (restarted by progress notifications)')
      .default(30000),
    UPSTREAM_MAX_CALL_MS: env
      .positiveInt('longest a call may run however much progress its upstream reports')
      .default(600_000),
    CLIENT_RESPONSE_TIMEOUT_MS: env
      .positiveInt('longest an upstream waits for the agent to answer sampling, elicitation or roots')
      .default(300000),
    MAX_JSON_DEPTH: env.positiveInt('deepest JSON nesting accepted in an MCP request').default(64),
    SSE_KEEPALIVE_MS: env.positiveInt('interval of keep-alive comments on idle MCP streams').default(15000),
    MAX_REQUEST_BYTES: env.positiveInt('largest accepted MCP request body').default(1024 * 1024),
    AUDIT_SPOOL_DIR: z
      .string()
      .min(1)
      .describe(
        "directory of this replica's audit spool (audit events written while Kafka is away); must persist across restarts and belong to one replica",
      ),
    AUDIT_SPOOL_MAX_BYTES: env
      .positiveInt('largest size of the audit spool; beyond it calls fail closed')
      .default(64 * 1024 * 1024),
    AUDIT_SPOOL_MAX_EVENTS: env
      .positiveInt('most audit events the spool holds; beyond it calls fail closed')
      .default(100000),
    AUDIT_SPOOL_AGENT_SHARE: z.coerce
      .number()
      .gt(0)
      .lte(1)
      .default(0.5)
      .describe(
        "largest part of the audit spool (its bytes and its events) one agent's calls may hold while they wait for Kafka; beyond it that agent's calls fail closed, and other agents' go on",
      ),
    AUDIT_ACCEPTANCE: z
      .enum(['kafka', 'local-first'])
      .default('kafka')
      .describe(
        "when a call's audit event counts as accepted: kafka = acknowledged by Kafka (the spool only while Kafka is away); local-first = fsync'd to this replica's spool and shipped to Kafka in the background (lower latency; events live on this replica's disk until shipped)",
      ),
    AUDIT_SEND_TIMEOUT_MS: env
      .positiveInt('longest a call waits for Kafka to acknowledge its audit event before it is spooled')
      .default(1000),
    AUDIT_REPLAY_INTERVAL_MS: env
      .positiveInt('pause between attempts to replay the spool to Kafka')
      .default(1000),
    MCP_ALLOWED_HOSTS: env
      .csv('Host header values /mcp answers to (DNS-rebinding protection): host, host:port or host:*')
      .default(LOOPBACK_HOSTS),
    MCP_ALLOWED_ORIGINS: env
      .csv('browser origins allowed on /mcp: scheme://host, scheme://host:port or scheme://host:*')
      .default(LOOPBACK_ORIGINS),
    RATE_LIMIT_CLASSES: z
      .string()
      .default(JSON.stringify(DEFAULT_RATE_CLASSES))
      .transform((text, ctx) => {
        try {
          return JSON.parse(text) as unknown;
        } catch {
          ctx.addIssue({ code: 'custom', message: 'not JSON' });
          return z.NEVER;
        }
      })
      .pipe(RateClasses)
      .describe(
        'rate-limit classes as JSON: {"<class>": {"perAgent": {"limit", "periodMs", "burst"}, "perTool": {…}}}; "standard" is required',
      ),
    SESSION_TTL_SECONDS: env.positiveInt('how long an idle MCP session binding is kept').default(24 * 3600),
    MAX_SESSIONS_PER_AGENT: env
      .positiveInt(
        "most MCP sessions one agent holds; a new one beyond it ends the agent's least recently used",
      )
      .default(100),
    DIRECTORY_MAX_STALENESS_MS: env
      .positiveInt(
        'how long a replica serves without hearing from Kafka (directory and policy topics) before it turns unready',
      )
      .default(DEFAULT_MAX_STALENESS_MS),
    MAX_STDIO_SESSIONS: env
      .positiveInt('most stdio upstream children this replica runs at once (one per session and stdio app)')
      .default(DEFAULT_MAX_STDIO_SESSIONS),
    MAX_STDIO_SESSIONS_PER_AGENT: env
      .positiveInt('most of those children one agent holds, so that one agent cannot take them all')
      .default(DEFAULT_MAX_STDIO_SESSIONS_PER_AGENT),
  })
  .refine((value) => (value.UPSTREAM_URL === undefined) === (value.UPSTREAM_APP_ID === undefined), {
    message: 'UPSTREAM_URL and UPSTREAM_APP_ID go together',
    path: ['UPSTREAM_APP_ID'],
  })
  .superRefine(checkOAuthEnv);
export type BrokerEnv = z.infer<typeof BrokerEnv>;

export function readEnv(source: Record<string, string | undefined> = process.env): BrokerEnv {
  return loadEnv('broker', BrokerEnv, source);
}
