import { type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths pino censors in every service. Secrets must never reach logs: agent keys arrive in the
 * Authorization header, and config objects carry connection strings with passwords. Services add
 * their own paths; the credential service tests its list.
 */
export const baseRedactPaths: readonly string[] = [
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'agentKey',
  '*.agentKey',
  'databaseUrl',
  '*.databaseUrl',
  'DATABASE_URL',
  '*.DATABASE_URL',
  'connectionString',
  '*.connectionString',
];

export interface LoggerOptions {
  service: string;
  level: string;
  instanceId?: string;
  /** Extra redaction paths (pino path syntax) on top of baseRedactPaths. */
  redact?: readonly string[];
  /** Where lines go; defaults to stdout. Tests pass a stream to inspect output. */
  destination?: NodeJS.WritableStream;
}

/** Creates the service's root logger: JSON lines, redacted, tagged with service and instance. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level,
      base: { service: options.service, instance: options.instanceId ?? String(process.pid) },
      redact: { paths: [...baseRedactPaths, ...(options.redact ?? [])], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    options.destination ?? pino.destination({ sync: false }),
  );
}
