import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import Provider, { type BackchannelRequest, errors } from 'oidc-provider';

// A real OAuth 2.1 / OpenID authorization server for tests: oidc-provider on 127.0.0.1, issuing
// RFC 9068 JWT access tokens for the resource a client names (RFC 8707 resource indicators).
// Agents get tokens with the client_credentials grant; a user's delegation goes through CIBA
// (the user approves on their own device, which here approves at once).

export interface LocalIdpClient {
  clientId: string;
  clientSecret: string;
  /** A CIBA client acts for a user (sub = the user) instead of for itself. */
  ciba?: boolean;
}

export const IDP_SCOPE = 'mcp:tools';

export class LocalIdp {
  readonly issuer: string;
  /** Lifetime of the access tokens issued from now on. */
  accessTokenTtlSeconds = 300;
  readonly #server: Server;
  readonly #clients: LocalIdpClient[];
  #keys: JWK[];
  #handler: (req: IncomingMessage, res: ServerResponse) => void;

  private constructor(server: Server, issuer: string, clients: LocalIdpClient[], keys: JWK[]) {
    this.#server = server;
    this.issuer = issuer;
    this.#clients = clients;
    this.#keys = keys;
    this.#handler = this.#provider().callback();
  }

  static async start(clients: LocalIdpClient[]): Promise<LocalIdp> {
    let idp: LocalIdp | undefined;
    const server = createServer((req, res) => {
      if (idp) idp.#handler(req, res);
      else res.writeHead(503).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    idp = new LocalIdp(server, `http://127.0.0.1:${port}`, clients, [await signingKey()]);
    return idp;
  }

  /** The kid tokens are signed with now. */
  get currentKid(): string {
    return this.#keys[0]!.kid!;
  }

  /**
   * Rotates the signing key the way an IdP does: a new key signs from now on, and the old one
   * stays published so tokens it signed remain verifiable.
   */
  async rotateKey(): Promise<string> {
    this.#keys = [await signingKey(), ...this.#keys];
    this.#handler = this.#provider().callback();
    return this.currentKid;
  }

  /** An access token from the client_credentials grant, for `resource`. */
  async clientCredentialsToken(client: LocalIdpClient, resource: string, scope = IDP_SCOPE): Promise<string> {
    const body = await this.#token(client, { grant_type: 'client_credentials', resource, scope });
    return body.access_token as string;
  }

  /** An access token for `user`, obtained by `client` through CIBA (poll mode). */
  async delegatedToken(client: LocalIdpClient, user: string, resource: string): Promise<string> {
    const started = await this.#post(client, '/backchannel', {
      scope: `openid ${IDP_SCOPE}`,
      login_hint: user,
      resource,
    });
    const authReqId = started.auth_req_id as string;
    for (let attempt = 0; attempt < 50; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const answer = await this.#post(
        client,
        '/token',
        { grant_type: 'urn:openid:params:grant-type:ciba', auth_req_id: authReqId },
        true,
      );
      if (typeof answer.access_token === 'string') return answer.access_token;
      if (answer.error !== 'authorization_pending' && answer.error !== 'slow_down')
        throw new Error(`CIBA token request failed: ${JSON.stringify(answer)}`);
    }
    throw new Error('CIBA request was never approved');
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #token(client: LocalIdpClient, params: Record<string, string>) {
    return this.#post(client, '/token', params);
  }

  async #post(
    client: LocalIdpClient,
    path: string,
    params: Record<string, string>,
    allowError = false,
  ): Promise<Record<string, unknown>> {
    const response = await fetch(`${this.issuer}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams(params),
    });
    const body = (await response.json()) as Record<string, unknown>;
    if (!response.ok && !allowError)
      throw new Error(`${path} answered ${response.status}: ${JSON.stringify(body)}`);
    return body;
  }

  #provider(): Provider {
    const provider: Provider = new Provider(this.issuer, {
      clients: this.#clients.map((client) =>
        client.ciba
          ? {
              client_id: client.clientId,
              client_secret: client.clientSecret,
              grant_types: ['urn:openid:params:grant-type:ciba'],
              backchannel_token_delivery_mode: 'poll',
              redirect_uris: [],
              response_types: [],
            }
          : {
              client_id: client.clientId,
              client_secret: client.clientSecret,
              grant_types: ['client_credentials'],
              redirect_uris: [],
              response_types: [],
            },
      ),
      jwks: { keys: this.#keys },
      scopes: ['openid', IDP_SCOPE],
      // Explicit lifetimes, so oidc-provider does not warn about its defaults.
      ttl: {
        ClientCredentials: () => this.accessTokenTtlSeconds,
        AccessToken: () => this.accessTokenTtlSeconds,
        BackchannelAuthenticationRequest: 60,
        Grant: 600,
        IdToken: 600,
      },
      findAccount: (_ctx: unknown, id: string) => ({ accountId: id, claims: () => ({ sub: id }) }),
      features: {
        devInteractions: { enabled: false },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          useGrantedResource: () => true,
          getResourceServerInfo: (_ctx: unknown, resource: string) => {
            if (!/^https?:\/\//.test(resource)) throw new errors.InvalidTarget();
            return {
              scope: IDP_SCOPE,
              audience: resource,
              accessTokenTTL: this.accessTokenTtlSeconds,
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'RS256' } },
            };
          },
        },
        ciba: {
          enabled: true,
          deliveryModes: ['poll'],
          processLoginHint: (_ctx: unknown, loginHint: string) => loginHint,
          validateRequestContext: async () => {},
          validateBindingMessage: async () => {},
          verifyUserCode: async () => {},
          // The user approves on their device: a grant of openid and the requested resource.
          triggerAuthenticationDevice: async (_ctx: unknown, request: BackchannelRequest) => {
            setTimeout(() => {
              const grant = new provider.Grant({ accountId: request.accountId, clientId: request.clientId });
              grant.addOIDCScope('openid');
              if (request.resource) grant.addResourceScope(request.resource, IDP_SCOPE);
              grant
                .save()
                .then(() => provider.backchannelResult(request.jti, grant))
                .catch((error: Error) => console.error('local IdP: CIBA approval failed', error));
            }, 20);
          },
        },
      },
    });
    return provider;
  }
}

async function signingKey(): Promise<JWK> {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  return { ...(await exportJWK(privateKey)), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}
