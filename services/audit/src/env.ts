import { commonServiceEnv, env, loadEnv } from '@portcullis/config';
import { z } from 'zod';

// The only module of the audit service that reads process.env.
export const AuditEnv = z.object({
  ...commonServiceEnv,
  HTTP_PORT: env.port('HTTP port for health, readiness and metrics').default(8184),
});
export type AuditEnv = z.infer<typeof AuditEnv>;

export function readEnv(source: Record<string, string | undefined> = process.env): AuditEnv {
  return loadEnv('audit', AuditEnv, source);
}
