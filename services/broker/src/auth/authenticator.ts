import type { IncomingHttpHeaders } from 'node:http';
import { parseAgentKey, secretHashesEqual } from '@portcullis/contracts';
import { errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify } from 'jose';
import type { Agent } from '../directory.ts';
import { bearerChallenge } from './challenge.ts';
import { IdpUnavailable, IssuerKeys } from './issuer-keys.ts';
import { resourceMetadataUrl } from './protected-resource.ts';

// Invariants (security-critical; see docs/adr/0040-agent-authentication-oauth.md):
// - The presented credential (agent key or access token) is never logged, stored, put in an
//   outcome, an error detail or an audit event, and never forwarded upstream. Only what it proved
//   leaves this module: the agent, the delegating user's id, the token's jti.
// - Authentication runs on every request, so a suspension, a revoked key or a removed OAuth
//   client takes effect on the next request of an established session.
// - Access tokens are accepted only from the one configured issuer, only for this gateway's
//   audience, only with an asymmetric algorithm from ALGORITHMS, only within exp/nbf, and only
//   for an OAuth client registered on an agent in the directory. Anything else is refused.
// - Every failure is an answer (401/403/503), never an exception, and never a partial success.

/** What the authenticator needs from the directory (DirectoryFeed satisfies it). */
export interface AuthDirectory {
  key(keyId: string): { agentId: string; secretSha256: Buffer } | undefined;
  agent(agentId: string): Agent | undefined;
  agentByOAuthClient(clientId: string): Agent | undefined;
}

export interface OAuthOptions {
  /** The authorization server's issuer identifier; `iss` must equal it exactly. */
  issuer: string;
  /** This gateway's resource URL; `aud` must contain it exactly (RFC 8707 audience binding). */
  audience: string;
  /** The JWKS URL; without it, jwks_uri is read from the issuer's metadata. */
  jwksUrl?: string | undefined;
  /** Scopes every token must carry; empty = no scope check. */
  requiredScopes?: readonly string[] | undefined;
  /** Accept `typ: JWT` or no typ besides RFC 9068's `at+jwt`. */
  acceptPlainJwt?: boolean | undefined;
  clockToleranceSeconds?: number | undefined;
  resourceName?: string | undefined;
  /** After a key-set fetch, how long an unknown kid waits before the next fetch (jose's cooldown). */
  jwksCooldownMs?: number | undefined;
  /** Longest wait for the issuer's metadata or key set. */
  fetchTimeoutMs?: number | undefined;
}

export interface AuthenticatorOptions {
  directory: AuthDirectory;
  /** Undefined: agent keys only. */
  oauth?: OAuthOptions | undefined;
}

export type AuthMethod = 'agent_key' | 'oauth';

/**
 * What proved the caller, without the secret: enough to ask later whether it would still be
 * accepted (a stream opened with it outlives the request that authenticated it).
 */
export type Credential =
  | { method: 'agent_key'; agentId: string; keyId: string }
  /** `expiresAtMs`: when the gateway starts refusing the token (`exp` plus the clock tolerance). */
  | { method: 'oauth'; agentId: string; clientId: string; expiresAtMs: number };

export type AuthOutcome =
  | {
      ok: true;
      agent: Agent;
      user?: { id: string };
      method: AuthMethod;
      tokenId?: string;
      credential: Credential;
    }
  | {
      ok: false;
      /** 503 only when the identity provider's keys cannot be fetched: retryable, not the agent's fault. */
      status: 401 | 403 | 503;
      code: AuthErrorCode;
      detail: string;
      wwwAuthenticate?: string;
    };

export type AuthErrorCode =
  | 'missing_credentials'
  | 'invalid_credentials'
  | 'invalid_token'
  | 'token_expired'
  | 'wrong_audience'
  | 'insufficient_scope'
  | 'unknown_client'
  | 'agent_suspended'
  | 'credentials_no_longer_valid'
  | 'auth_unavailable';

export interface Authenticator {
  authenticate(headers: IncomingHttpHeaders): Promise<AuthOutcome>;
  /**
   * Whether a credential accepted earlier would still be: its key not revoked (or its OAuth client
   * still on the same agent, and the token not expired), and the agent active.
   */
  stillValid(credential: Credential, nowMs?: number): boolean;
  /**
   * The refusal for a request whose credential stopped being valid after it was authenticated
   * (revoked or suspended while its body arrived): a 401 with the challenge, so the client
   * authenticates again as it would after any other 401.
   */
  noLongerValid(): Extract<AuthOutcome, { ok: false }>;
}

/** Asymmetric only: a symmetric (HS*) key would have to be shared with every resource server. */
export const ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const;
const AT_JWT_TYPES = new Set(['at+jwt', 'application/at+jwt']);
const PLAIN_JWT_TYPES = new Set(['jwt', 'application/jwt']);
const AGENT_KEY_PREFIX = 'pcak_';
/** token68 (RFC 7235 §2.1); JWTs and agent keys both fit it. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;
const DISCOVERY_RETRY_MS = 5000;
/** Clock skew allowed on exp and nbf when the configuration names none. */
const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;

/** Builds the authenticator the gateway runs on every MCP request. */
export function createAuthenticator(options: AuthenticatorOptions): Authenticator {
  const { directory, oauth } = options;
  const metadataUrl = oauth ? resourceMetadataUrl(oauth.audience) : undefined;
  const scope = oauth?.requiredScopes?.length ? oauth.requiredScopes.join(' ') : undefined;
  const keys = oauth ? createKeySource(oauth) : undefined;

  const refuse = (
    status: 401 | 403 | 503,
    code: AuthErrorCode,
    detail: string,
    error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope',
  ): Extract<AuthOutcome, { ok: false }> => ({
    ok: false,
    status,
    code,
    detail,
    ...(status === 401 || error === 'insufficient_scope'
      ? {
          wwwAuthenticate: bearerChallenge({
            resourceMetadataUrl: metadataUrl,
            error,
            description: error ? detail : undefined,
            scope,
          }),
        }
      : {}),
  });

  const suspended = (agent: Agent) =>
    refuse(403, 'agent_suspended', `Agent ${agent.name} is suspended; ask its owner (${agent.owner}).`);

  function agentKey(token: string): AuthOutcome {
    const parsed = parseAgentKey(token);
    const stored = parsed ? directory.key(parsed.keyId) : undefined;
    // Wrong, unknown and revoked keys get one answer, so the answer reveals nothing about key ids.
    if (!parsed || !stored || !secretHashesEqual(parsed.secretSha256, stored.secretSha256))
      return refuse(401, 'invalid_credentials', 'The agent key is not valid', 'invalid_token');
    const agent = directory.agent(stored.agentId);
    if (!agent) return refuse(401, 'invalid_credentials', 'The agent key is not valid', 'invalid_token');
    if (agent.state !== 'active') return suspended(agent);
    return {
      ok: true,
      agent,
      method: 'agent_key',
      credential: { method: 'agent_key', agentId: agent.id, keyId: parsed.keyId },
    };
  }

  async function accessToken(token: string, settings: OAuthOptions, jwks: KeySource): Promise<AuthOutcome> {
    let payload: JWTPayload;
    let typ: string | undefined;
    try {
      const keySet = await jwks.get();
      const verified = await jwtVerify(token, keySet, {
        issuer: settings.issuer,
        audience: settings.audience,
        algorithms: [...ALGORITHMS],
        clockTolerance: settings.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp', 'iss', 'aud', 'sub'],
      });
      payload = verified.payload;
      typ = verified.protectedHeader.typ?.toLowerCase();
    } catch (error) {
      return tokenFailure(error);
    }
    const typeAccepted =
      (typ !== undefined && AT_JWT_TYPES.has(typ)) ||
      (settings.acceptPlainJwt === true && (typ === undefined || PLAIN_JWT_TYPES.has(typ)));
    // RFC 9068 §4: without the type check an ID token of the same issuer could be replayed here.
    if (!typeAccepted)
      return refuse(401, 'invalid_token', 'The token is not an access token (typ at+jwt)', 'invalid_token');
    // jose requires `sub` to be present, not to be a string; it becomes a client or user id below.
    if (typeof payload.sub !== 'string')
      return refuse(401, 'invalid_token', "The access token's sub claim is not valid", 'invalid_token');

    // RFC 9068's client_id first; then what IdPs that predate it write: azp (OpenID, Keycloak),
    // cid (Okta), appid (Entra v1); and sub, which is the client in a client-credentials token.
    const clientId =
      stringClaim(payload, 'client_id') ??
      stringClaim(payload, 'azp') ??
      stringClaim(payload, 'cid') ??
      stringClaim(payload, 'appid') ??
      payload.sub;
    if (!clientId) return refuse(401, 'invalid_token', 'The token names no client', 'invalid_token');
    const agent = directory.agentByOAuthClient(clientId);
    if (!agent)
      return refuse(
        401,
        'unknown_client',
        'The token was issued to an OAuth client that is not registered on any agent',
        'invalid_token',
      );
    if (agent.state !== 'active') return suspended(agent);

    const required = settings.requiredScopes ?? [];
    if (required.length > 0) {
      const granted = scopesOf(payload);
      const missing = required.filter((name) => !granted.has(name));
      if (missing.length > 0)
        return refuse(
          403,
          'insufficient_scope',
          `The token lacks scope ${missing.join(' ')}`,
          'insufficient_scope',
        );
    }

    const user = delegatingUser(payload, clientId, agent, directory);
    return {
      ok: true,
      agent,
      ...(user ? { user: { id: user } } : {}),
      method: 'oauth',
      ...(typeof payload.jti === 'string' ? { tokenId: payload.jti } : {}),
      credential: {
        method: 'oauth',
        agentId: agent.id,
        clientId,
        expiresAtMs: refusedFromMs(payload, settings),
      },
    };
  }

  function tokenFailure(error: unknown): AuthOutcome {
    if (error instanceof errors.JWTExpired)
      return refuse(401, 'token_expired', 'The access token has expired', 'invalid_token');
    if (error instanceof errors.JWTClaimValidationFailed) {
      if (error.claim === 'aud')
        return refuse(
          401,
          'wrong_audience',
          'The access token was not issued for this gateway',
          'invalid_token',
        );
      if (error.claim === 'iss')
        return refuse(
          401,
          'invalid_token',
          'The access token comes from an issuer this gateway does not trust',
          'invalid_token',
        );
      if (error.claim === 'nbf')
        return refuse(401, 'invalid_token', 'The access token is not valid yet', 'invalid_token');
      return refuse(
        401,
        'invalid_token',
        `The access token's ${error.claim} claim is not valid`,
        'invalid_token',
      );
    }
    if (error instanceof IdpUnavailable)
      return refuse(503, 'auth_unavailable', 'The identity provider cannot be reached; retry shortly');
    if (error instanceof errors.JOSEAlgNotAllowed)
      return refuse(
        401,
        'invalid_token',
        'The token is signed with an algorithm this gateway refuses',
        'invalid_token',
      );
    // Bad signature, no matching key, malformed JWS or claims: one answer, no detail to probe with.
    return refuse(401, 'invalid_token', 'The access token is not valid', 'invalid_token');
  }

  return {
    noLongerValid() {
      return refuse(
        401,
        'credentials_no_longer_valid',
        'The credential of this request is no longer accepted; authenticate again.',
        'invalid_token',
      );
    },
    stillValid(credential, nowMs = Date.now()) {
      const agent = directory.agent(credential.agentId);
      if (agent?.state !== 'active') return false;
      if (credential.method === 'agent_key') return directory.key(credential.keyId)?.agentId === agent.id;
      return (
        nowMs < credential.expiresAtMs && directory.agentByOAuthClient(credential.clientId)?.id === agent.id
      );
    },
    async authenticate(headers) {
      const header = headers.authorization;
      if (header === undefined || header === '')
        return refuse(
          401,
          'missing_credentials',
          oauth
            ? 'An agent key or an OAuth access token is required: Authorization: Bearer <credential>'
            : 'An agent key is required: Authorization: Bearer <key>',
        );
      const match = BEARER.exec(header);
      if (!match)
        return refuse(
          401,
          'invalid_credentials',
          'The Authorization header must be: Bearer <credential>',
          'invalid_request',
        );
      const token = match[1]!;
      if (token.startsWith(AGENT_KEY_PREFIX)) return agentKey(token);
      if (!oauth || !keys)
        return refuse(401, 'invalid_credentials', 'The agent key is not valid', 'invalid_token');
      return accessToken(token, oauth, keys);
    },
  };
}

/** When the gateway starts refusing a verified token: jwtVerify accepts `exp` (seconds) up to the tolerance. */
function refusedFromMs(payload: JWTPayload, settings: OAuthOptions): number {
  const tolerance = settings.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  return ((payload.exp as number) + tolerance) * 1000;
}

function stringClaim(payload: JWTPayload, name: string): string | undefined {
  const value = payload[name];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}

/** `scope` (RFC 9068, space-separated) or `scp` (an array, as Okta and Entra write it). */
function scopesOf(payload: JWTPayload): Set<string> {
  const scopes = new Set<string>();
  if (typeof payload.scope === 'string') for (const s of payload.scope.split(' ')) if (s) scopes.add(s);
  const scp = payload.scp;
  if (Array.isArray(scp)) {
    for (const s of scp) if (typeof s === 'string') scopes.add(s);
  } else if (typeof scp === 'string') {
    for (const s of scp.split(' ')) if (s) scopes.add(s);
  }
  return scopes;
}

/**
 * The human on whose behalf the agent acts: `sub`, when it is not the client itself. A
 * client-credentials token's `sub` names the client (RFC 9068 §2.2), or at some IdPs the client's
 * service account; an admin registers that subject as one of the agent's OAuth client ids, and
 * Entra marks app-only tokens with `idtyp: app`. Every other `sub` is a delegating user, and the
 * policy then grants at most what that user delegated to the agent.
 */
function delegatingUser(
  payload: JWTPayload,
  clientId: string,
  agent: Agent,
  directory: AuthDirectory,
): string | undefined {
  const sub = payload.sub;
  if (!sub || sub === clientId) return undefined;
  if (payload.idtyp === 'app') return undefined;
  if (directory.agentByOAuthClient(sub)?.id === agent.id) return undefined;
  return sub;
}

// --- the issuer's key set ------------------------------------------------------------------------

interface KeySource {
  get(): Promise<JWTVerifyGetKey>;
}

/**
 * The issuer's JWKS, its URL resolved once: from OAUTH_JWKS_URL, or from the issuer's metadata
 * (RFC 8414 first, then OpenID discovery). The keys are fetched, refreshed and throttled by
 * IssuerKeys. A failed discovery is retried on a later request, at most every DISCOVERY_RETRY_MS.
 */
function createKeySource(settings: OAuthOptions): KeySource {
  const timeoutMs = settings.fetchTimeoutMs ?? 5000;
  let resolved: Promise<JWTVerifyGetKey> | undefined;
  let failedAt = 0;
  const build = (url: string) =>
    new IssuerKeys(url, { timeoutMs, cooldownMs: settings.jwksCooldownMs ?? 30_000 }).getKey;
  return {
    get() {
      if (resolved) return resolved;
      if (Date.now() - failedAt < DISCOVERY_RETRY_MS)
        return Promise.reject(new IdpUnavailable('issuer metadata unavailable (retrying shortly)'));
      const attempt = settings.jwksUrl
        ? Promise.resolve(build(settings.jwksUrl))
        : discoverJwksUri(settings.issuer, timeoutMs).then(build);
      resolved = attempt;
      attempt.catch(() => {
        resolved = undefined;
        failedAt = Date.now();
      });
      return attempt;
    },
  };
}

/** The metadata URLs of an issuer, RFC 8414 §3.1 (path inserted) first, then OpenID Connect's. */
export function issuerMetadataUrls(issuer: string): string[] {
  const url = new URL(issuer);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return [
    `${url.origin}/.well-known/oauth-authorization-server${path}`,
    `${url.origin}/.well-known/openid-configuration${path}`,
    `${url.origin}${path}/.well-known/openid-configuration`,
  ].filter((value, index, all) => all.indexOf(value) === index);
}

async function discoverJwksUri(issuer: string, timeoutMs: number): Promise<string> {
  for (const url of issuerMetadataUrls(issuer)) {
    let metadata: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const response = await fetch(url, {
        signal: AbortSignal.timeout(timeoutMs),
        redirect: 'error',
        headers: { accept: 'application/json' },
      });
      if (!response.ok) continue;
      metadata = (await response.json()) as typeof metadata;
    } catch {
      continue;
    }
    // RFC 8414 §3.3: metadata naming another issuer is ignored (mix-up protection).
    if (metadata.issuer !== issuer || typeof metadata.jwks_uri !== 'string') continue;
    // An unparsable jwks_uri is the metadata's fault: try the next document (503 if none), never
    // blame the agent's token for it.
    if (!URL.canParse(metadata.jwks_uri)) continue;
    const jwksUri = new URL(metadata.jwks_uri);
    if (jwksUri.protocol !== 'https:' && !['127.0.0.1', 'localhost', '[::1]'].includes(jwksUri.hostname))
      continue;
    return jwksUri.href;
  }
  throw new IdpUnavailable(`no usable metadata for issuer ${issuer}`);
}
