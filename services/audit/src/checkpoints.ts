import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { withTransaction } from '@portcullis/db';
import canonicalize from 'canonicalize';
import type pg from 'pg';

/**
 * Signed checkpoints: an Ed25519 signature over the RFC 8785 canonical form of every chain head.
 * A checkpoint commits the ledger to its content up to that point; rows removed or rewritten
 * before it can no longer match, even by someone who recomputes every hash afterwards.
 */

export interface ChainHead {
  chainId: string;
  seq: number;
  hash: string;
}

/** The signed document. `previous` links checkpoints so that one cannot be removed unnoticed. */
export interface CheckpointBody {
  format: 'portcullis.checkpoint.v1';
  createdAt: string;
  keyId: string;
  previous: string | null;
  heads: ChainHead[];
}

export interface Checkpoint {
  checkpointId: number;
  body: CheckpointBody;
  /** base64 Ed25519 signature over canonicalize(body). */
  signature: string;
}

/** Reads an Ed25519 private key given as PEM (PKCS#8) or as base64 of its DER; refuses other kinds. */
export function parseSigningKey(text: string): KeyObject {
  const trimmed = text.trim();
  const key = trimmed.startsWith('-----BEGIN')
    ? createPrivateKey(trimmed)
    : createPrivateKey({ key: Buffer.from(trimmed, 'base64'), format: 'der', type: 'pkcs8' });
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('the signing key must be an Ed25519 private key');
  return key;
}

/** Reads an Ed25519 public key from PEM (SPKI). */
export function parsePublicKey(text: string): KeyObject {
  const key = createPublicKey(text.trim());
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('the public key must be an Ed25519 key');
  return key;
}

/** The public half as PEM, for auditors to keep out of band. */
export function publicKeyPem(privateKey: KeyObject): string {
  return createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }).toString();
}

/** A short stable name for a public key: the first 16 hex digits of SHA-256 over its DER. */
export function keyIdOf(key: KeyObject): string {
  const publicKey = key.type === 'private' ? createPublicKey(key) : key;
  const der = publicKey.export({ format: 'der', type: 'spki' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

export function canonicalBody(body: CheckpointBody): string {
  const text = canonicalize(body);
  if (text === undefined) throw new Error('checkpoint body cannot be canonicalized');
  return text;
}

/** The digest a following checkpoint names as `previous`. */
export function checkpointDigest(checkpoint: Pick<Checkpoint, 'body' | 'signature'>): string {
  return createHash('sha256')
    .update(canonicalBody(checkpoint.body), 'utf8')
    .update('\n')
    .update(checkpoint.signature)
    .digest('hex');
}

export function signBody(body: CheckpointBody, privateKey: KeyObject): string {
  return sign(null, Buffer.from(canonicalBody(body), 'utf8'), privateKey).toString('base64');
}

export function verifySignature(
  checkpoint: Pick<Checkpoint, 'body' | 'signature'>,
  publicKey: KeyObject,
): boolean {
  return verify(
    null,
    Buffer.from(canonicalBody(checkpoint.body), 'utf8'),
    publicKey,
    Buffer.from(checkpoint.signature, 'base64'),
  );
}

/**
 * Writes a checkpoint of every chain head, unless nothing changed since the last one. Runs in one
 * transaction holding an advisory lock, so replicas never interleave their `previous` links.
 * Returns the new checkpoint, or null when there was nothing new to sign.
 */
export async function writeCheckpoint(
  pool: pg.Pool,
  privateKey: KeyObject,
  now = new Date(),
): Promise<Checkpoint | null> {
  return withTransaction(pool, async (client) => {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('portcullis.audit.checkpoint'))");
    const heads = await client.query<{ chain_id: string; seq: string; head_hash: string }>(
      'SELECT chain_id, seq, head_hash FROM audit.chain_heads WHERE seq > 0 ORDER BY chain_id',
    );
    const last = await client.query<{ body: CheckpointBody; signature: string }>(
      'SELECT body, signature FROM audit.checkpoints ORDER BY checkpoint_id DESC LIMIT 1',
    );
    const current: ChainHead[] = heads.rows.map((r) => ({
      chainId: r.chain_id,
      seq: Number(r.seq),
      hash: r.head_hash,
    }));
    const previous = last.rows[0];
    if (current.length === 0 || (previous && sameHeads(previous.body.heads, current))) return null;
    const body: CheckpointBody = {
      format: 'portcullis.checkpoint.v1',
      createdAt: now.toISOString(),
      keyId: keyIdOf(privateKey),
      previous: previous ? checkpointDigest(previous) : null,
      heads: current,
    };
    const signature = signBody(body, privateKey);
    const inserted = await client.query<{ checkpoint_id: string }>(
      `INSERT INTO audit.checkpoints (created_at, key_id, body, signature) VALUES ($1, $2, $3, $4)
       RETURNING checkpoint_id`,
      [body.createdAt, body.keyId, JSON.stringify(body), signature],
    );
    return { checkpointId: Number(inserted.rows[0]!.checkpoint_id), body, signature };
  });
}

function sameHeads(a: ChainHead[], b: ChainHead[]): boolean {
  return (
    a.length === b.length &&
    a.every((h, i) => h.chainId === b[i]!.chainId && h.seq === b[i]!.seq && h.hash === b[i]!.hash)
  );
}
