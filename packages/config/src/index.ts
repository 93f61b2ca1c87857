import { z } from 'zod';

/** Raised when the environment does not satisfy a service's schema; lists every problem at once. */
export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(service: string, problems: readonly string[]) {
    super(`${service}: invalid configuration\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Parses `source` (normally process.env) with a zod object schema. Each problem names the variable
 * and repeats its `.describe()` text, so an operator can fix the deployment without reading code.
 */
export function loadEnv<S extends z.ZodObject>(
  service: string,
  schema: S,
  source: Record<string, string | undefined>,
): z.infer<S> {
  const result = schema.safeParse(source);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join('.') || '(environment)';
    const field = issue.path.length === 1 ? schema.shape[String(issue.path[0])] : undefined;
    const description = field instanceof z.ZodType ? field.description : undefined;
    return `${name}: ${issue.message}${description ? ` (${description})` : ''}`;
  });
  throw new ConfigError(service, problems);
}

/** Building blocks shared by the services' env schemas. */
export const env = {
  port: (description: string) => z.coerce.number().int().min(0).max(65535).describe(description),
  positiveInt: (description: string) => z.coerce.number().int().positive().describe(description),
  url: (description: string, protocols: readonly string[]) =>
    z
      .url({ protocol: new RegExp(`^(${protocols.join('|')})$`) })
      .describe(`${description} (${protocols.join(' or ')} URL)`),
  /** A list given as comma-separated values, e.g. Kafka brokers. */
  csv: (description: string) =>
    z
      .string()
      .transform((value) =>
        value
          .split(',')
          .map((part) => part.trim())
          .filter(Boolean),
      )
      .pipe(z.array(z.string()).min(1))
      .describe(`${description} (comma-separated)`),
  /** A yes/no switch: `true` or `false` (also 1/0, yes/no, on/off), anything else refused. */
  bool: (description: string) => z.stringbool().describe(description),
  logLevel: () =>
    z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info')
      .describe('pino log level'),
  /** A name prefix for isolating stacks and tests that share one Kafka or Redis. */
  prefix: (description: string) =>
    z
      .string()
      .regex(/^[a-zA-Z0-9._-]*$/, 'letters, digits, dot, dash and underscore only')
      .default('')
      .describe(description),
};

/** The variables every service reads: where it listens, where its infrastructure is, how it stops. */
export const commonServiceEnv = {
  LOG_LEVEL: env.logLevel(),
  HTTP_HOST: z.string().default('127.0.0.1').describe('address the HTTP server binds to'),
  DATABASE_URL: env.url('Postgres connection string; the service owns one schema in it', [
    'postgres',
    'postgresql',
  ]),
  KAFKA_BROKERS: env.csv('Kafka bootstrap brokers, host:port'),
  KAFKA_TOPIC_PREFIX: env.prefix('prefix for every topic name and consumer group'),
  SHUTDOWN_DRAIN_MS: z.coerce
    .number()
    .int()
    .min(0)
    .default(5000)
    .describe(
      'after SIGTERM, how long readiness reports 503 before intake stops, so load balancers move away',
    ),
  SHUTDOWN_TIMEOUT_MS: z.coerce
    .number()
    .int()
    .positive()
    .default(30000)
    .describe('the longest a graceful shutdown may take before the process exits anyway'),
  INSTANCE_ID: z
    .string()
    .min(1)
    .default(`${process.pid}`)
    .describe('identifies this replica in logs and audit events (defaults to the pid)'),
};
