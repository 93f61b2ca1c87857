import { commonServiceEnv, env, loadEnv } from '@portcullis/config';
import { z } from 'zod';
import { ApiToken } from './api.ts';

// The only module of the decision service that reads process.env.
export const DecisionEnv = z.object({
  ...commonServiceEnv,
  HTTP_PORT: env.port('HTTP port of the API, the Data API, health, readiness and metrics').default(8181),
  API_TOKENS: z
    .string()
    .min(2)
    .transform((text, ctx) => {
      try {
        return z.array(ApiToken).min(1).parse(JSON.parse(text));
      } catch (error) {
        ctx.addIssue({
          code: 'custom',
          message: `not a JSON list of {name, role, sha256}: ${(error as Error).message}`,
        });
        return z.NEVER;
      }
    })
    .describe(
      'API callers as JSON [{"name","role":"viewer|policy-author|admin","sha256":"<hex of the token>"}]; hashes only',
    ),
  OPA_BIN: z.string().min(1).default('opa').describe('the opa binary that validates uploaded policy sources'),
  LEDGER_DATABASE_URL: env
    .url('read-only connection to the ledger (audit.tool_calls) for simulation; defaults to DATABASE_URL', [
      'postgres',
      'postgresql',
    ])
    .optional(),
  POLICY_PUBLISH_RETRY_MS: env
    .positiveInt('how often an activation not yet acknowledged by Kafka is published again')
    .default(5000),
  DIRECTORY_PUBLISH_INTERVAL_MS: env
    .positiveInt('how often the directory revision is checked for changes to publish')
    .default(200),
  UPSTREAM_LIST_TIMEOUT_MS: env
    .positiveInt("deadline for connecting to an app's upstream and listing its tools at registration")
    .default(15000),
});
export type DecisionEnv = z.infer<typeof DecisionEnv>;

export function readEnv(source: Record<string, string | undefined> = process.env): DecisionEnv {
  return loadEnv('decision', DecisionEnv, source);
}

/** The directory CLI needs only the database. */
export const DirectoryCliEnv = z.object({
  DATABASE_URL: DecisionEnv.shape.DATABASE_URL,
  UPSTREAM_LIST_TIMEOUT_MS: DecisionEnv.shape.UPSTREAM_LIST_TIMEOUT_MS,
});

export function readCliEnv(
  source: Record<string, string | undefined> = process.env,
): z.infer<typeof DirectoryCliEnv> {
  return loadEnv('portcullis directory', DirectoryCliEnv, source);
}
