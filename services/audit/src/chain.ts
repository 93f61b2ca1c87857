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

/**
 * Chains are per UTC day of occurred_at and per Kafka topic partition. `occurredAt` is the
 * timestamp as stored: ISO 8601 UTC (Date.prototype.toISOString), so its first ten characters are
 * the UTC day.
 */
export function chainIdFor(occurredAt: string, topic: string, partition: number): string {
  return `${occurredAt.slice(0, 10)}/${topic}/${partition}`;
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
 * `canonicalPayload`, if given, must be canonicalJson(row.payload): the writer has it already.
 */
export function canonicalRowContent(row: LedgerRow, canonicalPayload?: string): string {
  return fixedColumnsText(row, canonicalPayload) ?? canonicalJson(rowObject(row));
}

function rowObject(row: LedgerRow): Record<string, unknown> {
  return {
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
  };
}

/**
 * The same text without sorting and copying the row's own columns for every row (the ingest's hot
 * path): their names are fixed, so they are written in RFC 8785 order (UTF-16 code units) here and
 * only the payload goes through canonicalJson. Undefined (the general path decides) when a column
 * is not the plain string or safe integer this relies on, or a string needs a \ud escape, which
 * JSON.stringify writes for a lone surrogate where RFC 8785 refuses it.
 */
function fixedColumnsText(row: LedgerRow, canonicalPayload: string | undefined): string | undefined {
  const { callId, eventVersion, sourcePartition, chainSeq } = row;
  if (callId !== null && typeof callId !== 'string') return undefined;
  if (!Number.isSafeInteger(eventVersion) || !Number.isSafeInteger(sourcePartition)) return undefined;
  if (!Number.isSafeInteger(chainSeq)) return undefined;
  // Checked one by one: no array or closure per row on the ingest's hot path.
  if (typeof row.chainId !== 'string' || typeof row.eventId !== 'string') return undefined;
  if (typeof row.eventType !== 'string' || typeof row.occurredAt !== 'string') return undefined;
  if (typeof row.prevHash !== 'string' || typeof row.recordedAt !== 'string') return undefined;
  if (typeof row.sourceOffset !== 'string' || typeof row.sourceTopic !== 'string') return undefined;
  const head =
    `{"callId":${callId === null ? 'null' : JSON.stringify(callId)},"chainId":${JSON.stringify(row.chainId)}` +
    `,"chainSeq":${chainSeq},"eventId":${JSON.stringify(row.eventId)},"eventType":${JSON.stringify(row.eventType)}` +
    `,"eventVersion":${eventVersion},"format":"${CHAIN_FORMAT}","occurredAt":${JSON.stringify(row.occurredAt)}` +
    ',"payload":';
  const tail =
    `,"prevHash":${JSON.stringify(row.prevHash)},"recordedAt":${JSON.stringify(row.recordedAt)}` +
    `,"sourceOffset":${JSON.stringify(row.sourceOffset)},"sourcePartition":${sourcePartition}` +
    `,"sourceTopic":${JSON.stringify(row.sourceTopic)}}`;
  if (head.includes('\\ud') || tail.includes('\\ud')) return undefined;
  return `${head}${canonicalPayload ?? canonicalJson(row.payload)}${tail}`;
}

/** SHA-256 over the canonical row content (every column but the hash, prevHash included). */
export function rowHash(row: LedgerRow): string {
  return sha256Hex(canonicalRowContent(row));
}

export function sha256Hex(text: string): string {
  // One-shot hashing: no Hash object per row.
  return hash('sha256', text, 'hex');
}
