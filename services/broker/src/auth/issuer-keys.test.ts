import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { IdpUnavailable, IssuerKeys } from './issuer-keys.ts';

// IssuerKeys against a real HTTP key-set endpoint, with jose signing and verifying; only the clock
// is the test's.

type Mode = 'ok' | 'fail';
let server: Server;
let url: string;
let mode: Mode = 'ok';
let fetches = 0;
let served: object[] = [];

before(async () => {
  server = createServer((_req, res) => {
    fetches++;
    if (mode === 'fail') {
      res.writeHead(500).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: served }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function signingKey(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('ES256');
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  const sign = () =>
    new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid }).setExpirationTime('5m').sign(privateKey);
  return { jwk, sign };
}

/** A token anyone can make: an allowed algorithm, a kid nobody issued, no valid signature. */
function forged(kid: string): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'ES256', kid })}.${part({ sub: 'x' })}.${'A'.repeat(86)}`;
}

function fixture() {
  let now = 1_000_000;
  const keys = new IssuerKeys(url, { timeoutMs: 2000, cooldownMs: 30_000, now: () => now });
  return {
    keys,
    advance: (ms: number) => (now += ms),
    verify: (token: string) => jwtVerify(token, keys.getKey),
  };
}

test('while the key-set endpoint fails, forged tokens cost one fetch per backoff, not one each', async () => {
  mode = 'fail';
  served = [];
  fetches = 0;
  const { advance, verify } = fixture();
  for (let i = 0; i < 50; i++) await assert.rejects(verify(forged(`x${i}`)), IdpUnavailable);
  assert.equal(fetches, 1);
  advance(5000); // the first backoff
  for (let i = 0; i < 50; i++) await assert.rejects(verify(forged(`y${i}`)), IdpUnavailable);
  assert.equal(fetches, 2);
  advance(5000); // the backoff doubled: not yet
  await assert.rejects(verify(forged('z')), IdpUnavailable);
  assert.equal(fetches, 2);
  // Concurrent requests share a fetch.
  advance(5000);
  await Promise.all(Array.from({ length: 50 }, (_, i) => assert.rejects(verify(forged(`c${i}`)))));
  assert.equal(fetches, 3);
});

test('an unknown kid refetches at most once per cooldown; a rotated key is picked up', async () => {
  mode = 'ok';
  const first = await signingKey('k1');
  served = [first.jwk];
  fetches = 0;
  const { advance, verify } = fixture();
  await verify(await first.sign());
  assert.equal(fetches, 1);
  for (let i = 0; i < 50; i++)
    await assert.rejects(verify(forged(`u${i}`)), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  assert.equal(fetches, 1, 'forged kids within the cooldown fetched the key set');

  const rotated = await signingKey('k2');
  served = [first.jwk, rotated.jwk];
  advance(31_000);
  await verify(await rotated.sign());
  assert.equal(fetches, 2);
  for (let i = 0; i < 50; i++)
    await assert.rejects(verify(forged(`v${i}`)), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
  assert.equal(fetches, 2);
});

test('with the provider down, the last good key set serves for a day, then 503', async () => {
  mode = 'ok';
  const key = await signingKey('k3');
  served = [key.jwk];
  fetches = 0;
  const { advance, verify } = fixture();
  await verify(await key.sign());
  mode = 'fail';
  advance(11 * 60_000); // past the ten minutes after which the set is refreshed before use
  await verify(await key.sign());
  assert.equal(fetches, 2, 'the refresh was tried');
  advance(23 * 3600_000);
  await verify(await key.sign());
  advance(2 * 3600_000); // more than a day since the last good fetch
  await assert.rejects(verify(await key.sign()), IdpUnavailable);
  mode = 'ok';
  advance(60_000); // past any backoff: the provider answers again
  await verify(await key.sign());
});
