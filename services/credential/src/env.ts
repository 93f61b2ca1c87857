import { commonServiceEnv, env, loadEnv } from '@portcullis/config';
import { z } from 'zod';

// The only module of the credential service that reads process.env.
export const CredentialEnv = z.object({
  ...commonServiceEnv,
  HTTP_PORT: env.port('HTTP port for health, readiness and metrics').default(8183),
});
export type CredentialEnv = z.infer<typeof CredentialEnv>;

export function readEnv(source: Record<string, string | undefined> = process.env): CredentialEnv {
  return loadEnv('credential', CredentialEnv, source);
}
