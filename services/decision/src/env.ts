import { commonServiceEnv, env, loadEnv } from '@portcullis/config';
import { z } from 'zod';

// The only module of the decision service that reads process.env.
export const DecisionEnv = z.object({
  ...commonServiceEnv,
  HTTP_PORT: env.port('HTTP port for health, readiness and metrics').default(8181),
});
export type DecisionEnv = z.infer<typeof DecisionEnv>;

export function readEnv(source: Record<string, string | undefined> = process.env): DecisionEnv {
  return loadEnv('decision', DecisionEnv, source);
}

/** The directory CLI needs only the database. */
export const DirectoryCliEnv = z.object({ DATABASE_URL: DecisionEnv.shape.DATABASE_URL });

export function readCliEnv(
  source: Record<string, string | undefined> = process.env,
): z.infer<typeof DirectoryCliEnv> {
  return loadEnv('portcullis directory', DirectoryCliEnv, source);
}
