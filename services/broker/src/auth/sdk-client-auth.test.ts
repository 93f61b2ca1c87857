import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { Agent } from '../directory.ts';
import { type AuthDirectory, type Authenticator, createAuthenticator } from './authenticator.ts';
import { createProtectedResourceHandler } from './protected-resource.ts';
import { writeAuthRefusal } from './respond.ts';
import { LocalIdp, type LocalIdpClient } from './testing/local-idp.ts';

// An unmodified MCP client (the SDK's Client with its ClientCredentialsProvider) meets a raw
// node:http server that uses only this module: it gets a 401 with the challenge, follows
// resource_metadata to the IdP, fetches a token for the advertised resource, and calls a tool.

const agent: Agent = { id: 'agt_sdk', name: 'sdk-bot', owner: 'erin@example.com', state: 'active' };
const registered: LocalIdpClient = { clientId: 'sdk-bot-client', clientSecret: 'e'.repeat(48) };
const unregistered: LocalIdpClient = { clientId: 'sdk-stranger', clientSecret: 'f'.repeat(48) };

const directory: AuthDirectory = {
  key: () => undefined,
  agent: (id) => (id === agent.id ? agent : undefined),
  agentByOAuthClient: (clientId) => (clientId === registered.clientId ? agent : undefined),
};

let idp: LocalIdp;
let server: Server;
let resource: string;
const seenAuthorization: string[] = [];
/** One per server, as the gateway holds it: the IdP's key set is fetched once and cached. */
let authenticator: Authenticator | undefined;

before(async () => {
  idp = await LocalIdp.start([registered, unregistered]);
  server = createServer((req, res) => {
    handle(req, res).catch((error: Error) => {
      res.writeHead(500).end(error.message);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  resource = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
});
after(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await idp.stop();
});

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const metadata = createProtectedResourceHandler({
    resource,
    issuer: idp.issuer,
    resourceName: 'test gateway',
  });
  if (metadata(req, res)) return;
  if ((req.url ?? '').split('?')[0] !== '/mcp') return void res.writeHead(404).end();
  seenAuthorization.push(req.headers.authorization ?? '');
  authenticator ??= createAuthenticator({ directory, oauth: { issuer: idp.issuer, audience: resource } });
  const outcome = await authenticator.authenticate(req.headers);
  if (!outcome.ok) return writeAuthRefusal(res, outcome);
  if (req.method !== 'POST') return void res.writeHead(405, { allow: 'POST' }).end();
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const message = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { id?: number; method: string };
  if (message.id === undefined) return void res.writeHead(202).end();
  const result =
    message.method === 'initialize'
      ? {
          protocolVersion: '2025-06-18',
          capabilities: { tools: {} },
          serverInfo: { name: 'raw-auth-test', version: '1.0.0' },
        }
      : message.method === 'tools/list'
        ? { tools: [{ name: 'whoami', inputSchema: { type: 'object' } }] }
        : { content: [{ type: 'text', text: `${outcome.agent.name} via ${outcome.method}` }] };
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
}

test('the SDK client discovers the IdP from the metadata, gets a token for this resource and calls a tool', async () => {
  const client = new Client({ name: 'sdk-auth-test', version: '1.0.0' });
  const provider = new ClientCredentialsProvider({
    clientId: registered.clientId,
    clientSecret: registered.clientSecret,
    expectedIssuer: idp.issuer,
  });
  await client.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider }));
  try {
    const result = (await client.callTool({ name: 'whoami', arguments: {} })) as CallToolResult;
    assert.deepEqual(result.content, [{ type: 'text', text: 'sdk-bot via oauth' }]);
    // It first came without a token, was challenged, and came back with a bearer JWT.
    assert.equal(seenAuthorization[0], '');
    assert.match(seenAuthorization.at(-1) ?? '', /^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    const token = provider.tokens()?.access_token ?? '';
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8'));
    assert.equal(claims.aud, resource, 'the client asked for the resource the metadata names');
  } finally {
    await client.close();
  }
});

test('the SDK client of an OAuth client registered on no agent is refused', async () => {
  const before = seenAuthorization.length;
  const client = new Client({ name: 'sdk-auth-test', version: '1.0.0' });
  const provider = new ClientCredentialsProvider({
    clientId: unregistered.clientId,
    clientSecret: unregistered.clientSecret,
    expectedIssuer: idp.issuer,
  });
  await assert.rejects(
    client.connect(new StreamableHTTPClientTransport(new URL(resource), { authProvider: provider })),
    // The IdP issued a token; the gateway refused it (unknown_client), and the client stopped.
    /Server returned 401 after successful authentication/,
  );
  assert.match(seenAuthorization.at(-1) ?? '', /^Bearer /);
  assert.ok(seenAuthorization.length > before);
});

test('a request without credentials gets 401, the challenge and a problem+json body', async () => {
  const response = await fetch(resource, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  });
  assert.equal(response.status, 401);
  assert.equal(
    response.headers.get('www-authenticate'),
    `Bearer realm="portcullis", resource_metadata="${new URL(resource).origin}/.well-known/oauth-protected-resource/mcp"`,
  );
  assert.equal(response.headers.get('content-type'), 'application/problem+json');
  assert.equal(response.headers.get('cache-control'), 'no-store');
  assert.deepEqual(await response.json(), {
    type: 'https://portcullis.dev/errors/missing_credentials',
    title: 'Unauthorized',
    status: 401,
    code: 'missing_credentials',
    detail: 'An agent key or an OAuth access token is required: Authorization: Bearer <credential>',
  });
});
