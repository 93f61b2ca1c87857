import { env } from '@portcullis/config';
import { z } from 'zod';
import type { OAuthOptions } from './authenticator.ts';

// The OAuth settings of the broker, as a fragment for BrokerEnv (src/env.ts): spread `oauthEnv`
// into the schema and add `.superRefine(checkOAuthEnv)`. OAuth is optional: without OAUTH_ISSUER
// only agent keys authenticate.

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** https, or http on a loopback host (local IdPs in development and tests). */
const secureUrl = (description: string) =>
  z
    .preprocess(
      (value) => (value === '' ? undefined : value),
      env
        .url(description, ['http', 'https'])
        .refine((value) => {
          const url = new URL(value);
          return url.protocol === 'https:' || LOOPBACK.has(url.hostname);
        }, 'must be https (http only on a loopback host)')
        .optional(),
    )
    .describe(description);

export const oauthEnv = {
  OAUTH_ISSUER: secureUrl(
    'issuer URL of the OAuth authorization server whose access tokens agents may present; unset = agent keys only',
  ),
  OAUTH_AUDIENCE: secureUrl(
    "this gateway's resource URL as agents reach it (e.g. https://gw.example.com/mcp): tokens must carry it in aud, and the protected-resource metadata names it",
  ),
  OAUTH_JWKS_URL: secureUrl(
    "the issuer's JWKS URL; unset = jwks_uri from the issuer's metadata (/.well-known/oauth-authorization-server or openid-configuration)",
  ),
  OAUTH_REQUIRED_SCOPES: z
    .preprocess(
      (value) => (value === '' ? undefined : value),
      env.csv('scopes every access token must carry; they are also advertised to clients').optional(),
    )
    .describe('scopes every access token must carry; they are also advertised to clients (comma-separated)'),
  OAUTH_ACCEPT_PLAIN_JWT: z
    .enum(['true', 'false'])
    .default('false')
    .transform((value) => value === 'true')
    .describe(
      'also accept tokens typed JWT or untyped, for IdPs that do not type access tokens at+jwt (RFC 9068)',
    ),
  OAUTH_CLOCK_TOLERANCE_SECONDS: z.coerce
    .number()
    .int()
    .min(0)
    .max(300)
    .default(30)
    .describe('clock skew allowed when checking exp and nbf'),
  OAUTH_RESOURCE_NAME: z
    .string()
    .min(1)
    .max(200)
    .default('Portcullis MCP gateway')
    .describe('resource_name in the protected-resource metadata'),
};

const OAuthEnvSchema = z.object(oauthEnv);
type OAuthEnvValues = z.infer<typeof OAuthEnvSchema>;

/** Cross-field rule: an issuer needs the audience its tokens are bound to. */
export function checkOAuthEnv(value: OAuthEnvValues, ctx: z.RefinementCtx): void {
  if (value.OAUTH_ISSUER && !value.OAUTH_AUDIENCE)
    ctx.addIssue({
      code: 'custom',
      path: ['OAUTH_AUDIENCE'],
      message: 'required when OAUTH_ISSUER is set (the resource URL tokens must be issued for)',
    });
  if (!value.OAUTH_ISSUER && (value.OAUTH_JWKS_URL || value.OAUTH_REQUIRED_SCOPES))
    ctx.addIssue({
      code: 'custom',
      path: ['OAUTH_ISSUER'],
      message: 'required when OAUTH_JWKS_URL or OAUTH_REQUIRED_SCOPES is set',
    });
}

/** The authenticator's OAuth options from the parsed environment; undefined when OAuth is off. */
export function oauthOptionsFromEnv(value: OAuthEnvValues): OAuthOptions | undefined {
  if (!value.OAUTH_ISSUER || !value.OAUTH_AUDIENCE) return undefined;
  return {
    issuer: value.OAUTH_ISSUER,
    audience: value.OAUTH_AUDIENCE,
    ...(value.OAUTH_JWKS_URL ? { jwksUrl: value.OAUTH_JWKS_URL } : {}),
    requiredScopes: value.OAUTH_REQUIRED_SCOPES ?? [],
    acceptPlainJwt: value.OAUTH_ACCEPT_PLAIN_JWT,
    clockToleranceSeconds: value.OAUTH_CLOCK_TOLERANCE_SECONDS,
    resourceName: value.OAUTH_RESOURCE_NAME,
  };
}
