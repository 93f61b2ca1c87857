import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { generateAgentKey } from '@portcullis/contracts';
import { decodeProtectedHeader, exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import type { Agent } from '../directory.ts';
import {
  type AuthDirectory,
  type AuthOutcome,
  createAuthenticator,
  issuerMetadataUrls,
} from './authenticator.ts';
import { bearerChallenge } from './challenge.ts';
import { LocalIdp, type LocalIdpClient } from './testing/local-idp.ts';

// The authenticator against a real authorization server (oidc-provider on 127.0.0.1) issuing real
// RFC 9068 tokens; forged tokens are built with jose the way an attacker would build them.

const RESOURCE = 'http://127.0.0.1:18080/mcp';
const METADATA = 'http://127.0.0.1:18080/.well-known/oauth-protected-resource/mcp';

const triage: LocalIdpClient = { clientId: 'triage-bot-client', clientSecret: 'a'.repeat(48) };
const paused: LocalIdpClient = { clientId: 'paused-bot-client', clientSecret: 'b'.repeat(48) };
const stranger: LocalIdpClient = { clientId: 'unregistered-client', clientSecret: 'c'.repeat(48) };
const assistant: LocalIdpClient = { clientId: 'assistant-client', clientSecret: 'd'.repeat(48), ciba: true };

/** The directory as the broker's DirectoryFeed exposes it (the feed itself is tested end to end). */
class Directory implements AuthDirectory {
  readonly agents = new Map<string, Agent>();
  readonly clients = new Map<string, string>();
  readonly keys = new Map<string, { agentId: string; secretSha256: Buffer }>();
  add(agent: Agent, clientIds: string[]) {
    this.agents.set(agent.id, agent);
    for (const id of clientIds) this.clients.set(id, agent.id);
  }
  key(keyId: string) {
    return this.keys.get(keyId);
  }
  agent(agentId: string) {
    return this.agents.get(agentId);
  }
  agentByOAuthClient(clientId: string) {
    const id = this.clients.get(clientId);
    return id === undefined ? undefined : this.agents.get(id);
  }
}

let idp: LocalIdp;
const directory = new Directory();
const triageAgent: Agent = {
  id: 'agt_triage',
  name: 'triage-bot',
  owner: 'alice@example.com',
  state: 'active',
};
const pausedAgent: Agent = {
  id: 'agt_paused',
  name: 'paused-bot',
  owner: 'bob@example.com',
  state: 'suspended',
};
const assistantAgent: Agent = {
  id: 'agt_assist',
  name: 'assistant',
  owner: 'carol@example.com',
  state: 'active',
};
const issuedKey = generateAgentKey();

before(async () => {
  idp = await LocalIdp.start([triage, paused, stranger, assistant]);
  directory.add(triageAgent, [triage.clientId]);
  directory.add(pausedAgent, [paused.clientId]);
  directory.add(assistantAgent, [assistant.clientId]);
  directory.keys.set(issuedKey.keyId, {
    agentId: triageAgent.id,
    secretSha256: Buffer.from(issuedKey.secretSha256),
  });
});
after(() => idp?.stop());

const authenticator = () =>
  createAuthenticator({
    directory,
    oauth: { issuer: idp.issuer, audience: RESOURCE, jwksCooldownMs: 0, clockToleranceSeconds: 0 },
  });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

function refused(outcome: AuthOutcome, status: number, code: string): Extract<AuthOutcome, { ok: false }> {
  assert.equal(outcome.ok, false, `expected a refusal, got ${JSON.stringify(outcome)}`);
  if (outcome.ok) throw new Error('unreachable');
  assert.equal(outcome.status, status);
  assert.equal(outcome.code, code);
  return outcome;
}

describe('OAuth access tokens — accepted', () => {
  test('a client-credentials token for this gateway authenticates as the agent the client is registered on', async () => {
    const token = await idp.clientCredentialsToken(triage, RESOURCE);
    assert.equal(decodeProtectedHeader(token).typ, 'at+jwt');
    const outcome = await authenticator().authenticate(bearer(token));
    assert.equal(outcome.ok, true, JSON.stringify(outcome));
    assert.ok(outcome.ok);
    assert.deepEqual(outcome.agent, triageAgent);
    assert.equal(outcome.method, 'oauth');
    assert.equal(outcome.user, undefined, 'a client acting for itself has no delegating user');
    assert.equal(typeof outcome.tokenId, 'string');
  });

  test('a token a user obtained for the agent (CIBA) carries the user as the delegating user', async () => {
    const token = await idp.delegatedToken(assistant, 'dana@example.com', RESOURCE);
    const outcome = await authenticator().authenticate(bearer(token));
    assert.ok(outcome.ok, JSON.stringify(outcome));
    assert.equal(outcome.agent.id, assistantAgent.id);
    assert.deepEqual(outcome.user, { id: 'dana@example.com' });
  });

  test('after the IdP rotates its signing key, tokens with the new kid are accepted (JWKS refetched)', async () => {
    const auth = authenticator();
    const before = await idp.clientCredentialsToken(triage, RESOURCE);
    assert.equal((await auth.authenticate(bearer(before))).ok, true); // key set now cached
    const kid = await idp.rotateKey();
    const rotated = await idp.clientCredentialsToken(triage, RESOURCE);
    assert.equal(decodeProtectedHeader(rotated).kid, kid);
    assert.notEqual(decodeProtectedHeader(before).kid, kid);
    const outcome = await auth.authenticate(bearer(rotated));
    assert.equal(outcome.ok, true, JSON.stringify(outcome));
    // The old key is still published, so tokens it signed stay valid until they expire.
    assert.equal((await auth.authenticate(bearer(before))).ok, true);
  });

  test('the JWKS location comes from the issuer metadata, RFC 8414 first, then OpenID discovery', () => {
    assert.deepEqual(issuerMetadataUrls('https://idp.example.com/tenant/1'), [
      'https://idp.example.com/.well-known/oauth-authorization-server/tenant/1',
      'https://idp.example.com/.well-known/openid-configuration/tenant/1',
      'https://idp.example.com/tenant/1/.well-known/openid-configuration',
    ]);
    assert.deepEqual(issuerMetadataUrls('https://idp.example.com'), [
      'https://idp.example.com/.well-known/oauth-authorization-server',
      'https://idp.example.com/.well-known/openid-configuration',
    ]);
  });
});

describe('OAuth access tokens — refused', () => {
  test('a token issued for another resource is refused: wrong_audience', async () => {
    const token = await idp.clientCredentialsToken(triage, 'http://127.0.0.1:18081/mcp');
    const outcome = refused(await authenticator().authenticate(bearer(token)), 401, 'wrong_audience');
    assert.equal(
      outcome.wwwAuthenticate,
      `Bearer realm="portcullis", resource_metadata="${METADATA}", error="invalid_token", error_description="The access token was not issued for this gateway"`,
    );
  });

  test('a token from another issuer is refused, even when its keys are the same', async () => {
    const other = createAuthenticator({
      directory,
      oauth: {
        issuer: 'http://127.0.0.1:1/other-issuer',
        audience: RESOURCE,
        jwksUrl: `${idp.issuer}/jwks`,
      },
    });
    const token = await idp.clientCredentialsToken(triage, RESOURCE);
    const outcome = refused(await other.authenticate(bearer(token)), 401, 'invalid_token');
    assert.match(outcome.detail, /issuer/);
  });

  test('an expired token is refused: token_expired', async (t) => {
    idp.accessTokenTtlSeconds = 1;
    t.after(() => {
      idp.accessTokenTtlSeconds = 300;
    });
    const token = await idp.clientCredentialsToken(triage, RESOURCE);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    refused(await authenticator().authenticate(bearer(token)), 401, 'token_expired');
  });

  test('a token signed by another key under the IdP kid is refused: invalid_token', async () => {
    const genuine = await idp.clientCredentialsToken(triage, RESOURCE);
    const { kid } = decodeProtectedHeader(genuine);
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT(claims(genuine))
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', ...(kid ? { kid } : {}) })
      .sign(privateKey);
    refused(await authenticator().authenticate(bearer(forged)), 401, 'invalid_token');
    const unknownKid = await new SignJWT(claims(genuine))
      .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'not-a-published-key' })
      .sign(privateKey);
    refused(await authenticator().authenticate(bearer(unknownKid)), 401, 'invalid_token');
  });

  test('alg none and HS256 (signed with the public key as secret) are refused', async () => {
    const genuine = await idp.clientCredentialsToken(triage, RESOURCE);
    const none = new UnsecuredJWT(claims(genuine)).encode();
    refused(await authenticator().authenticate(bearer(none)), 401, 'invalid_token');
    // The classic key-confusion attack: HMAC keyed with the IdP's published RSA key.
    const jwks = (await (await fetch(`${idp.issuer}/jwks`)).json()) as { keys: Record<string, unknown>[] };
    const secret = new TextEncoder().encode(JSON.stringify(jwks.keys[0]));
    const hs = await new SignJWT(claims(genuine))
      .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: String(jwks.keys[0]!.kid) })
      .sign(secret);
    const outcome = refused(await authenticator().authenticate(bearer(hs)), 401, 'invalid_token');
    assert.match(outcome.detail, /algorithm/);
  });

  test('an ID-token-like JWT (typ JWT) is refused unless plain JWTs are allowed', async () => {
    const genuine = await idp.clientCredentialsToken(triage, RESOURCE);
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwks = { keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }] };
    const server = await serveJson(jwks);
    try {
      const plain = await new SignJWT(claims(genuine))
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: 'k1' })
        .sign(privateKey);
      const options = { issuer: idp.issuer, audience: RESOURCE, jwksUrl: server.url };
      refused(
        await createAuthenticator({ directory, oauth: options }).authenticate(bearer(plain)),
        401,
        'invalid_token',
      );
      const lenient = createAuthenticator({ directory, oauth: { ...options, acceptPlainJwt: true } });
      assert.equal((await lenient.authenticate(bearer(plain))).ok, true);
    } finally {
      await server.close();
    }
  });

  test('a valid token of a client registered on no agent is refused: unknown_client', async () => {
    const token = await idp.clientCredentialsToken(stranger, RESOURCE);
    refused(await authenticator().authenticate(bearer(token)), 401, 'unknown_client');
  });

  test('a valid token of a suspended agent is refused with 403 agent_suspended, on every request', async () => {
    const token = await idp.clientCredentialsToken(paused, RESOURCE);
    const outcome = refused(await authenticator().authenticate(bearer(token)), 403, 'agent_suspended');
    assert.equal(outcome.wwwAuthenticate, undefined);
    // Mid-session suspension: the same authenticator and token, suspended between two requests.
    const auth = authenticator();
    const live = await idp.clientCredentialsToken(triage, RESOURCE);
    assert.equal((await auth.authenticate(bearer(live))).ok, true);
    directory.agents.set(triageAgent.id, { ...triageAgent, state: 'suspended' });
    try {
      refused(await auth.authenticate(bearer(live)), 403, 'agent_suspended');
      refused(await auth.authenticate(bearer(issuedKey.key)), 403, 'agent_suspended');
    } finally {
      directory.agents.set(triageAgent.id, triageAgent);
    }
  });

  test('required scopes: a token without them gets 403 insufficient_scope and a scope challenge', async () => {
    const auth = createAuthenticator({
      directory,
      oauth: { issuer: idp.issuer, audience: RESOURCE, requiredScopes: ['mcp:admin'] },
    });
    const token = await idp.clientCredentialsToken(triage, RESOURCE);
    const outcome = refused(await auth.authenticate(bearer(token)), 403, 'insufficient_scope');
    assert.equal(
      outcome.wwwAuthenticate,
      `Bearer realm="portcullis", resource_metadata="${METADATA}", error="insufficient_scope", error_description="The token lacks scope mcp:admin", scope="mcp:admin"`,
    );
    const satisfied = createAuthenticator({
      directory,
      oauth: { issuer: idp.issuer, audience: RESOURCE, requiredScopes: ['mcp:tools'] },
    });
    assert.equal((await satisfied.authenticate(bearer(token))).ok, true);
  });

  test('an unreachable IdP is a retryable 503, not a pass and not a blame on the agent', async () => {
    const down = createAuthenticator({
      directory,
      oauth: { issuer: 'http://127.0.0.1:9/', audience: RESOURCE, fetchTimeoutMs: 500 },
    });
    const token = await idp.clientCredentialsToken(triage, RESOURCE);
    refused(await down.authenticate(bearer(token)), 503, 'auth_unavailable');
  });

  test("metadata with an unparsable jwks_uri is the IdP's fault: 503, not invalid_token", async () => {
    const metadata: Record<string, string> = {};
    const server = await serveJson(metadata);
    try {
      metadata.issuer = new URL(server.url).origin;
      metadata.jwks_uri = 'http://[not a url';
      const broken = createAuthenticator({
        directory,
        oauth: { issuer: metadata.issuer, audience: RESOURCE, fetchTimeoutMs: 500 },
      });
      const token = await idp.clientCredentialsToken(triage, RESOURCE);
      refused(await broken.authenticate(bearer(token)), 503, 'auth_unavailable');
    } finally {
      await server.close();
    }
  });
});

describe('claims as other IdPs write them', () => {
  // Tokens shaped like Okta's, Entra's and Keycloak's, signed by a key set served on 127.0.0.1.
  async function withIssuer(
    run: (
      sign: (claims: Record<string, unknown>) => Promise<string>,
      auth: ReturnType<typeof authenticator>,
    ) => Promise<void>,
  ) {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const server = await serveJson({
      keys: [{ ...(await exportJWK(publicKey)), kid: 'vendor', alg: 'RS256' }],
    });
    const issuer = 'https://vendor.example.com/tenant';
    const sign = (claims: Record<string, unknown>) =>
      new SignJWT({ iss: issuer, aud: RESOURCE, ...claims })
        .setProtectedHeader({ alg: 'RS256', typ: 'JWT', kid: 'vendor' })
        .setIssuedAt()
        .setExpirationTime('5m')
        .sign(privateKey);
    try {
      await run(
        sign,
        createAuthenticator({
          directory,
          oauth: { issuer, audience: RESOURCE, jwksUrl: server.url, acceptPlainJwt: true },
        }),
      );
    } finally {
      await server.close();
    }
  }

  test('the client is found in cid (Okta) and appid (Entra v1) when client_id and azp are absent', async () => {
    await withIssuer(async (sign, auth) => {
      for (const claim of ['cid', 'appid', 'azp', 'client_id']) {
        const outcome = await auth.authenticate(
          bearer(await sign({ [claim]: triage.clientId, sub: triage.clientId })),
        );
        assert.ok(outcome.ok, `${claim}: ${JSON.stringify(outcome)}`);
        assert.equal(outcome.agent.id, triageAgent.id);
        assert.equal(outcome.user, undefined);
      }
      const bySub = await auth.authenticate(bearer(await sign({ sub: triage.clientId })));
      assert.ok(bySub.ok && bySub.user === undefined);
    });
  });

  test('a service-account sub is no user when the token says idtyp app or the sub is registered on the agent', async () => {
    await withIssuer(async (sign, auth) => {
      const appOnly = await auth.authenticate(
        bearer(await sign({ appid: triage.clientId, sub: 'sp-object-id', idtyp: 'app' })),
      );
      assert.ok(appOnly.ok && appOnly.user === undefined);
      directory.clients.set('service-account-uuid', triageAgent.id);
      try {
        const registered = await auth.authenticate(
          bearer(await sign({ azp: triage.clientId, sub: 'service-account-uuid' })),
        );
        assert.ok(registered.ok && registered.user === undefined);
      } finally {
        directory.clients.delete('service-account-uuid');
      }
      // Anything else in sub is a delegating user; the policy then needs that user's delegation.
      const delegated = await auth.authenticate(
        bearer(await sign({ azp: triage.clientId, sub: 'frank@example.com' })),
      );
      assert.ok(delegated.ok);
      assert.deepEqual(delegated.user, { id: 'frank@example.com' });
    });
  });
});

describe('headers and agent keys', () => {
  test('no Authorization header: 401 missing_credentials with a bare challenge naming the metadata', async () => {
    const outcome = refused(await authenticator().authenticate({}), 401, 'missing_credentials');
    assert.equal(outcome.wwwAuthenticate, `Bearer realm="portcullis", resource_metadata="${METADATA}"`);
  });

  test('malformed Authorization headers: 401 invalid_credentials (invalid_request)', async () => {
    for (const header of ['Basic dXNlcjpwYXNz', 'Bearer', 'Bearer a b', 'Bearer ä', 'bearer "quoted"']) {
      const outcome = refused(
        await authenticator().authenticate({ authorization: header }),
        401,
        'invalid_credentials',
      );
      assert.match(outcome.wwwAuthenticate ?? '', /error="invalid_request"/);
    }
  });

  test('agent keys still authenticate; wrong and unknown keys get one answer', async () => {
    const outcome = await authenticator().authenticate(bearer(issuedKey.key));
    assert.ok(outcome.ok);
    assert.equal(outcome.agent.id, triageAgent.id);
    assert.equal(outcome.method, 'agent_key');
    const wrongSecret = `${issuedKey.key.slice(0, -4)}AAAA`;
    const unknown = generateAgentKey().key;
    const a = refused(await authenticator().authenticate(bearer(wrongSecret)), 401, 'invalid_credentials');
    const b = refused(await authenticator().authenticate(bearer(unknown)), 401, 'invalid_credentials');
    assert.deepEqual(a, b);
  });

  test('without OAuth configured only agent keys work, and the challenge names no metadata', async () => {
    const keysOnly = createAuthenticator({ directory });
    assert.equal((await keysOnly.authenticate(bearer(issuedKey.key))).ok, true);
    const token = await idp.clientCredentialsToken(triage, RESOURCE);
    const outcome = refused(await keysOnly.authenticate(bearer(token)), 401, 'invalid_credentials');
    assert.equal(
      outcome.wwwAuthenticate,
      'Bearer realm="portcullis", error="invalid_token", error_description="The agent key is not valid"',
    );
  });

  test('no outcome ever contains the presented credential', async () => {
    const token = await idp.clientCredentialsToken(stranger, RESOURCE);
    const outcomes = await Promise.all(
      [token, `${token}x`, issuedKey.key, `${issuedKey.key}x`].map((t) =>
        authenticator().authenticate(bearer(t)),
      ),
    );
    for (const outcome of outcomes) {
      const text = JSON.stringify(outcome);
      assert.equal(text.includes(token.split('.')[2]!), false);
      assert.equal(text.includes(issuedKey.key.slice(-20)), false);
    }
  });

  test('challenge values are quoted and cannot break out of their parameter', () => {
    assert.equal(
      bearerChallenge({ error: 'invalid_token', description: 'say "hi"\\\r\nX-Injected: 1' }),
      'Bearer realm="portcullis", error="invalid_token", error_description="say ?hi????X-Injected: 1"',
    );
  });
});

describe('credentials re-checked after the request (streams outlive it)', () => {
  test('an agent key stays valid until it is revoked or its agent suspended', async () => {
    const auth = authenticator();
    const spare = generateAgentKey();
    directory.keys.set(spare.keyId, {
      agentId: triageAgent.id,
      secretSha256: Buffer.from(spare.secretSha256),
    });
    const outcome = await auth.authenticate(bearer(spare.key));
    assert.ok(outcome.ok);
    assert.deepEqual(outcome.credential, {
      method: 'agent_key',
      agentId: triageAgent.id,
      keyId: spare.keyId,
    });
    assert.equal(auth.stillValid(outcome.credential), true);
    directory.keys.delete(spare.keyId);
    assert.equal(auth.stillValid(outcome.credential), false, 'a revoked key');
    directory.keys.set(spare.keyId, {
      agentId: triageAgent.id,
      secretSha256: Buffer.from(spare.secretSha256),
    });
    directory.agents.set(triageAgent.id, { ...triageAgent, state: 'suspended' });
    try {
      assert.equal(auth.stillValid(outcome.credential), false, 'a suspended agent');
    } finally {
      directory.agents.set(triageAgent.id, triageAgent);
      directory.keys.delete(spare.keyId);
    }
  });

  test('an access token stays valid until it expires or its client leaves the agent', async () => {
    const auth = authenticator();
    const token = await idp.clientCredentialsToken(triage, RESOURCE);
    const outcome = await auth.authenticate(bearer(token));
    assert.ok(outcome.ok);
    assert.equal(outcome.credential.method, 'oauth');
    if (outcome.credential.method !== 'oauth') return;
    assert.equal(outcome.credential.expiresAtMs, (claims(token).exp as number) * 1000);
    assert.equal(auth.stillValid(outcome.credential), true);
    assert.equal(auth.stillValid(outcome.credential, outcome.credential.expiresAtMs), false, 'at expiry');
    directory.clients.delete(triage.clientId);
    try {
      assert.equal(auth.stillValid(outcome.credential), false, 'a client no longer on the agent');
    } finally {
      directory.clients.set(triage.clientId, triageAgent.id);
    }
  });
});

function claims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
}

async function serveJson(body: unknown): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/jwks`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
