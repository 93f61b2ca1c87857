import { hash } from 'node:crypto';
import canonicalize from 'canonicalize';
import { canonicalJson } from './canonical-json.ts';

/**
 * The hash-chain rules of the ledger (docs/adr/0010-ledger-hash-chains.md). Both the writer and
 * the verifier use these functions, so they cannot drift apart.
 *
 * Invariant: a row's hash covers every stored column except the hash itself, in RFC 8785
 * canonical form, including the previous row's hash. Changing, removing or inserting a row
 * therefore changes a hash that a later row or a signed checkpoint has committed to.
 */

/** Version tag hashed into every row, so a future rule change cannot be confused with this one. */
export const CHAIN_FORMAT = 'portcullis.ledger.v1';

/** A ledger row as it is stored and hashed. Timestamps are ISO 8601 UTC with milliseconds. */
export interface LedgerRow {
  eventId: string;
  callId: string | null;
  eventType: string;
  eventVersion: number;
  occurredAt: string;
  recordedAt: string;
  payload: unknown;
  sourceTopic: string;
  sourcePartition: number;
  /** A Kafka offset, kept as a decimal string because it is a 64-bit integer. */
  sourceOffset: string;
  chainId: string;
  chainSeq: number;
  prevHash: string;
}

export interface HashedRow extends LedgerRow {
  rowHash: string;
}

/** Chains are per UTC day of occurred_at and per Kafka topic partition. */
export function chainIdFor(occurredAt: Date, topic: string, partition: number): string {
  return `${occurredAt.toISOString().slice(0, 10)}/${topic}/${partition}`;
}

/** The day a chain covers, taken from its id. */
export function chainDay(chainId: string): string {
  return chainId.slice(0, 10);
}

/** The prev_hash of a chain's first row: derived from the chain id, so a chain cannot be spliced. */
export function genesisHash(chainId: string): string {
  return sha256Hex(canonicalize({ format: CHAIN_FORMAT, genesis: chainId }) ?? '');
}

/**
 * The RFC 8785 text of what a row's hash covers: every column but rowHash, plus the format tag.
 * It is itself the JSON of those columns, so the writer also sends it to Postgres as the row.
 */
export function canonicalRowContent(row: LedgerRow): string {
  return canonicalJson({
    format: CHAIN_FORMAT,
    eventId: row.eventId,
    callId: row.callId,
    eventType: row.eventType,
    eventVersion: row.eventVersion,
    occurredAt: row.occurredAt,
    recordedAt: row.recordedAt,
    payload: row.payload,
    sourceTopic: row.sourceTopic,
    sourcePartition: row.sourcePartition,
    sourceOffset: row.sourceOffset,
    chainId: row.chainId,
    chainSeq: row.chainSeq,
    prevHash: row.prevHash,
  });
}

/** SHA-256 over the canonical row content (every column but the hash, prevHash included). */
export function rowHash(row: LedgerRow): string {
  return sha256Hex(canonicalRowContent(row));
}

export function sha256Hex(text: string): string {
  // One-shot hashing: no Hash object per row.
  return hash('sha256', text, 'hex');
}
