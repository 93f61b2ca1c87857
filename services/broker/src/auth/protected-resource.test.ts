import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { loadEnv } from '@portcullis/config';
import { z } from 'zod';
import { checkOAuthEnv, oauthEnv, oauthOptionsFromEnv } from './oauth-env.ts';
import { createProtectedResourceHandler, resourceMetadataUrl } from './protected-resource.ts';

let server: Server;
let origin: string;

before(async () => {
  server = createServer((req, res) => {
    const handled = createProtectedResourceHandler({
      resource: `${origin}/mcp`,
      issuer: 'https://idp.example.com/realms/agents',
      scopes: ['mcp:tools'],
      resourceName: 'Portcullis MCP gateway',
    })(req, res);
    if (!handled) res.writeHead(404).end('not mine');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

test('the RFC 9728 document is served at the root and at the path-suffixed well-known URL', async () => {
  for (const path of ['/.well-known/oauth-protected-resource', '/.well-known/oauth-protected-resource/mcp']) {
    const response = await fetch(`${origin}${path}`);
    assert.equal(response.status, 200, path);
    assert.equal(response.headers.get('content-type'), 'application/json');
    assert.equal(response.headers.get('access-control-allow-origin'), '*');
    assert.deepEqual(await response.json(), {
      resource: `${origin}/mcp`,
      authorization_servers: ['https://idp.example.com/realms/agents'],
      bearer_methods_supported: ['header'],
      scopes_supported: ['mcp:tools'],
      resource_name: 'Portcullis MCP gateway',
    });
  }
});

test('other paths are left to the caller; other methods get 405', async () => {
  assert.equal(
    await (await fetch(`${origin}/.well-known/oauth-protected-resource/other`)).text(),
    'not mine',
  );
  assert.equal(await (await fetch(`${origin}/mcp`)).text(), 'not mine');
  const post = await fetch(`${origin}/.well-known/oauth-protected-resource`, { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD, OPTIONS');
  const head = await fetch(`${origin}/.well-known/oauth-protected-resource/mcp`, { method: 'HEAD' });
  assert.equal(head.status, 200);
});

test('the metadata URL of a resource inserts the well-known prefix before its path', () => {
  assert.equal(
    resourceMetadataUrl('https://gw.example.com/mcp'),
    'https://gw.example.com/.well-known/oauth-protected-resource/mcp',
  );
  assert.equal(
    resourceMetadataUrl('https://gw.example.com/'),
    'https://gw.example.com/.well-known/oauth-protected-resource',
  );
  assert.equal(
    resourceMetadataUrl('https://gw.example.com:8443/a/mcp/'),
    'https://gw.example.com:8443/.well-known/oauth-protected-resource/a/mcp',
  );
});

// As BrokerEnv will hold it: spread among the other variables, with the cross-field rule.
const Env = z.object({ HTTP_PORT: z.coerce.number().default(8080), ...oauthEnv }).superRefine(checkOAuthEnv);

test('oauthEnv: OAuth is off without an issuer, and an issuer needs an audience', () => {
  const off = loadEnv('broker', Env, {});
  assert.equal(oauthOptionsFromEnv(off), undefined);
  assert.throws(
    () => loadEnv('broker', Env, { OAUTH_ISSUER: 'https://idp.example.com' }),
    /OAUTH_AUDIENCE: required when OAUTH_ISSUER is set/,
  );
  assert.throws(() => loadEnv('broker', Env, { OAUTH_REQUIRED_SCOPES: 'a' }), /OAUTH_ISSUER: required/);
  const on = loadEnv('broker', Env, {
    OAUTH_ISSUER: 'https://idp.example.com',
    OAUTH_AUDIENCE: 'https://gw.example.com/mcp',
    OAUTH_REQUIRED_SCOPES: 'mcp:tools, mcp:resources',
    OAUTH_JWKS_URL: '',
  });
  assert.deepEqual(oauthOptionsFromEnv(on), {
    issuer: 'https://idp.example.com',
    audience: 'https://gw.example.com/mcp',
    requiredScopes: ['mcp:tools', 'mcp:resources'],
    acceptPlainJwt: false,
    clockToleranceSeconds: 30,
    resourceName: 'Portcullis MCP gateway',
  });
});

test('oauthEnv: plain http is refused except on loopback hosts', () => {
  assert.throws(
    () =>
      loadEnv('broker', Env, {
        OAUTH_ISSUER: 'http://idp.example.com',
        OAUTH_AUDIENCE: 'https://gw.example.com/mcp',
      }),
    /OAUTH_ISSUER: must be https/,
  );
  const local = loadEnv('broker', Env, {
    OAUTH_ISSUER: 'http://127.0.0.1:9000',
    OAUTH_AUDIENCE: 'http://localhost:8080/mcp',
  });
  assert.equal(oauthOptionsFromEnv(local)?.issuer, 'http://127.0.0.1:9000');
});
