import { createHash } from 'node:crypto';
import { generateAgentKey } from '@portcullis/contracts';
import { closedLoop } from '@portcullis/testing';
import { createLocalJWKSet, type JSONWebKeySet, jwtVerify } from 'jose';
import type { Agent } from '../directory.ts';
import { type AuthDirectory, createAuthenticator } from './authenticator.ts';
import { LocalIdp, type LocalIdpClient } from './testing/local-idp.ts';

// Authentication benchmark: what the gateway spends per request to authenticate, beside its
// anchors in the same run. OAuth: authenticate() on a real oidc-provider RS256 access token (JWKS
// cached after the first request) against a bare jose jwtVerify of the same token with the same
// key set held locally, the floor of verifying it. Agent key: authenticate() against one SHA-256
// of the key's secret. Authentication is CPU-bound, so one worker. Run: pnpm bench:auth

const print = (...cells: string[]) => process.stdout.write(`${cells.join(' ')}\n`);
const DURATION_MS = 2000;
const RESOURCE = 'http://127.0.0.1:18099/mcp';
const client: LocalIdpClient = { clientId: 'bench-client', clientSecret: 'z'.repeat(48) };
const agent: Agent = { id: 'agt_bench', name: 'bench-bot', owner: 'ops@example.com', state: 'active' };
const issued = generateAgentKey();
const directory: AuthDirectory = {
  key: (keyId) =>
    keyId === issued.keyId
      ? { agentId: agent.id, secretSha256: Buffer.from(issued.secretSha256) }
      : undefined,
  agent: (id) => (id === agent.id ? agent : undefined),
  agentByOAuthClient: (id) => (id === client.clientId ? agent : undefined),
};

const idp = await LocalIdp.start([client]);
try {
  const token = await idp.clientCredentialsToken(client, RESOURCE);
  const auth = createAuthenticator({ directory, oauth: { issuer: idp.issuer, audience: RESOURCE } });
  const headers = { authorization: `Bearer ${token}` };
  const keyHeaders = { authorization: `Bearer ${issued.key}` };
  const first = await auth.authenticate(headers);
  if (!first.ok || !(await auth.authenticate(keyHeaders)).ok)
    throw new Error('benchmark setup: not authenticated');
  const localKeys = createLocalJWKSet((await (await fetch(`${idp.issuer}/jwks`)).json()) as JSONWebKeySet);
  const secret = issued.key.split('_')[2]!;

  const rows: [string, () => Promise<unknown>, string, () => Promise<unknown>][] = [
    [
      'OAuth RS256 token',
      () => auth.authenticate(headers),
      'bare jwtVerify',
      () => jwtVerify(token, localKeys, { issuer: idp.issuer, audience: RESOURCE }),
    ],
    [
      'agent key',
      () => auth.authenticate(keyHeaders),
      'one SHA-256',
      async () => createHash('sha256').update(secret).digest(),
    ],
  ];
  print(
    'credential'.padEnd(18),
    'auth/s'.padStart(9),
    'p50 µs'.padStart(8),
    'p99 µs'.padStart(8),
    '|',
    'anchor'.padEnd(15),
    'ops/s'.padStart(9),
    'p50 µs'.padStart(8),
    'p99 µs'.padStart(8),
    'p50 ratio'.padStart(10),
  );
  for (const [name, op, anchorName, anchor] of rows) {
    await closedLoop(1, 300, op); // warm-up
    await closedLoop(1, 300, anchor);
    const measured = await closedLoop(1, DURATION_MS, op);
    const floor = await closedLoop(1, DURATION_MS, anchor);
    print(
      name.padEnd(18),
      measured.perSecond.toFixed(0).padStart(9),
      (measured.p50 * 1000).toFixed(1).padStart(8),
      (measured.p99 * 1000).toFixed(1).padStart(8),
      '|',
      anchorName.padEnd(15),
      floor.perSecond.toFixed(0).padStart(9),
      (floor.p50 * 1000).toFixed(1).padStart(8),
      (floor.p99 * 1000).toFixed(1).padStart(8),
      `${(measured.p50 / floor.p50).toFixed(2)}x`.padStart(10),
    );
  }
} finally {
  await idp.stop();
}
