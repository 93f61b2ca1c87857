import { commonServiceEnv, env, loadEnv } from '@portcullis/config';
import { z } from 'zod';
import { DEFAULT_RETENTION_DAYS } from './verify.ts';

// The only module of the audit service that reads process.env.
export const AuditEnv = z
  .object({
    ...commonServiceEnv,
    HTTP_PORT: env.port('HTTP port for health, readiness, metrics and the query API').default(8184),
    AUDIT_SIGNING_KEY: z
      .string()
      .min(40)
      .optional()
      .describe(
        'Ed25519 private key (PKCS#8 PEM, or base64 of its DER) that signs ledger checkpoints; no default on purpose. ' +
          'Without it no checkpoints are written and the service logs a warning. Create one with `portcullis ledger keygen`.',
      ),
    CHECKPOINT_INTERVAL_MS: env
      .positiveInt('how often a signed checkpoint of every chain head is written')
      .default(60000),
    RETENTION_DAYS: env
      .positiveInt('days of ledger kept attached; older day partitions are detached (not dropped)')
      .min(7, 'at least 7: the ledger refuses to detach the last week')
      .default(DEFAULT_RETENTION_DAYS),
    PARTITIONS_AHEAD_DAYS: env.positiveInt('day partitions created ahead of need').max(31).default(3),
    MAINTENANCE_INTERVAL_MS: env
      .positiveInt('how often partitions are created ahead and retention applied')
      .default(3600000),
    PARTITIONS_CONSUMED_CONCURRENTLY: env
      .positiveInt('Kafka partitions whose batches are written at the same time (each chain stays in order)')
      .default(3),
    QUERY_API_TOKEN_SHA256: z
      .string()
      .regex(/^[0-9a-f]{64}$/, 'a lowercase hex SHA-256 digest')
      .optional()
      .describe(
        'SHA-256 (hex) of the bearer token auditors present to the query API; the token itself is never configured. ' +
          'Without it the query API answers 503.',
      ),
    SIEM_HEC_URL: env
      .url('Splunk HTTP Event Collector base URL; OCSF events are sent there with indexer acknowledgement', [
        'http',
        'https',
      ])
      .optional(),
    SIEM_HEC_TOKEN: z.string().min(1).optional().describe('HEC token (secret; required with SIEM_HEC_URL)'),
    SIEM_HEC_ALLOW_HTTP: env
      .bool('allow an http:// SIEM_HEC_URL: the token and every event then cross the network in clear text')
      .default(false),
    SIEM_HEC_INDEX: z
      .string()
      .min(1)
      .optional()
      .describe("Splunk index for the events (default: the token's)"),
    SIEM_SYSLOG_URL: z
      .url({ protocol: /^(tcp|tls)$/ })
      .optional()
      .describe('syslog receiver for RFC 5424 OCSF messages: tcp://host:port, or tls://host:port (RFC 5425)'),
    SIEM_SYSLOG_CA_FILE: z
      .string()
      .min(1)
      .optional()
      .describe(
        "PEM file of the CA that issued the syslog receiver's certificate (tls:// only; default: system CAs)",
      ),
    SIEM_EXPORT_INTERVAL_MS: env
      .positiveInt('how often the SIEM exporters look for new ledger rows')
      .default(1000),
  })
  .superRefine((value, context) => {
    if (value.SIEM_HEC_URL?.startsWith('http:') && !value.SIEM_HEC_ALLOW_HTTP) {
      context.addIssue({
        code: 'custom',
        path: ['SIEM_HEC_URL'],
        message:
          'http:// sends the HEC token and the events in clear text: use https:// (NODE_EXTRA_CA_CERTS for a private CA), or set SIEM_HEC_ALLOW_HTTP=true',
      });
    }
    if (value.SIEM_HEC_URL && !value.SIEM_HEC_TOKEN) {
      context.addIssue({
        code: 'custom',
        path: ['SIEM_HEC_TOKEN'],
        message: 'required when SIEM_HEC_URL is set',
      });
    }
  });
export type AuditEnv = z.infer<typeof AuditEnv>;

export function readEnv(source: Record<string, string | undefined> = process.env): AuditEnv {
  return loadEnv('audit', AuditEnv, source);
}

/** What `portcullis ledger` reads: a database for most commands, the signing key for a few. */
export const LedgerCliEnv = z.object({
  DATABASE_URL: env
    .url('Postgres connection string of the ledger (an auditor role is enough for verify and export)', [
      'postgres',
      'postgresql',
    ])
    .optional(),
  AUDIT_SIGNING_KEY: AuditEnv.shape.AUDIT_SIGNING_KEY,
});
export type LedgerCliEnv = z.infer<typeof LedgerCliEnv>;

export function readCliEnv(source: Record<string, string | undefined> = process.env): LedgerCliEnv {
  return loadEnv('portcullis ledger', LedgerCliEnv, source);
}
