import { hash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Agent keys: `pcak_<key id>_<secret>`. The key id (8 random bytes, hex) finds the key without a
 * scan; the secret (32 random bytes, base64url) is shown once at issue and stored only as its
 * SHA-256. A slow password hash is unnecessary for 256 random bits, and would cost every call
 * milliseconds (docs/adr/0003-agent-key-format.md).
 */
const AGENT_KEY_PATTERN = /^pcak_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

export interface IssuedAgentKey {
  keyId: string;
  /** The full key to hand to the agent's developer, once. Never store or log it. */
  key: string;
  secretSha256: Buffer;
}

/** Generates a new agent key and the hash to store. */
export function generateAgentKey(): IssuedAgentKey {
  const keyId = randomBytes(8).toString('hex');
  const secret = randomBytes(32).toString('base64url');
  return { keyId, key: `pcak_${keyId}_${secret}`, secretSha256: sha256(secret) };
}

/** Splits a presented key into id and secret hash; undefined when it is not an agent key at all. */
export function parseAgentKey(presented: string): { keyId: string; secretSha256: Buffer } | undefined {
  const match = AGENT_KEY_PATTERN.exec(presented);
  if (!match) return undefined;
  return { keyId: match[1]!, secretSha256: sha256(match[2]!) };
}

/** Constant-time comparison of two stored/presented secret hashes. */
export function secretHashesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function sha256(value: string): Buffer {
  // crypto.hash: one call, no Hash object to build (every agent-key request hashes its secret).
  return hash('sha256', value, 'buffer');
}
