import type { KeyObject } from 'node:crypto';
import { chainDay, genesisHash, type HashedRow, rowHash } from './chain.ts';
import { type Checkpoint, checkpointDigest, keyIdOf, verifySignature } from './checkpoints.ts';

/**
 * Offline verification of the ledger: every chain recomputed from its rows, every checkpoint's
 * signature checked with a public key the auditor holds, and every signed head matched against
 * the recomputed chain. The input can come from the database or from an export; the verifier
 * trusts neither the stored hashes nor the writer's chain_heads table.
 */

/** Where the ledger's content comes from (a database or an export). */
export interface LedgerSource {
  /** Every chain id that has rows. */
  chainIds(): Promise<string[]>;
  /** The rows of one chain, ordered by chain_seq then event_id. */
  rows(chainId: string): AsyncIterable<HashedRow>;
  checkpoints(): Promise<Checkpoint[]>;
  /** Days whose partition the maintenance job detached (retention), per the partition log. */
  detachedDays(): Promise<Set<string>>;
}

export interface Problem {
  kind:
    | 'row_changed'
    | 'link_broken'
    | 'row_missing'
    | 'row_inserted'
    | 'chain_truncated'
    | 'chain_missing'
    | 'row_misplaced'
    | 'bad_signature'
    | 'checkpoint_missing'
    | 'unknown_key';
  chainId?: string;
  seq?: number;
  eventId?: string;
  checkpointId?: number;
  detail: string;
}

export interface VerifyOptions {
  /**
   * The ledger's retention as the auditor knows it (the audit service's RETENTION_DAYS): only days
   * older than that, by the newest signed checkpoint, may have been detached. Default 400.
   */
  retentionDays?: number;
}

/** The audit service's default RETENTION_DAYS (env.ts), and what `verify` assumes unless told. */
export const DEFAULT_RETENTION_DAYS = 400;
/** A maintenance run may come this long after the newest checkpoint (checkpoints are frequent). */
const RETENTION_SLACK_DAYS = 2;

/** The logged detached days that retention can explain, by the newest trusted checkpoint's time. */
function retiredDays(
  logged: Set<string>,
  trusted: readonly Checkpoint[],
  retentionDays: number,
): Set<string> {
  // A loop, not Math.max(...): a year of checkpoints is more arguments than a call takes.
  let newestMs = Number.NEGATIVE_INFINITY;
  for (const checkpoint of trusted) newestMs = Math.max(newestMs, Date.parse(checkpoint.body.createdAt));
  if (!Number.isFinite(newestMs)) return new Set();
  const cutoff = new Date(newestMs + (RETENTION_SLACK_DAYS - retentionDays) * 86_400_000)
    .toISOString()
    .slice(0, 10);
  return new Set([...logged].filter((day) => day < cutoff));
}

export interface VerifyReport {
  ok: boolean;
  chains: number;
  rows: number;
  checkpoints: number;
  /** Rows after the newest checkpoint: intact as a chain, but not yet covered by a signature. */
  unsignedRows: number;
  /** Chains skipped because retention detached their day. */
  retiredChains: number;
  problems: Problem[];
  /** The first broken link, in chain id then sequence order: where an investigation starts. */
  firstProblem: Problem | null;
}

interface ChainResult {
  length: number;
  /** Recomputed hash at each sequence number a checkpoint mentions. */
  attested: Map<number, string>;
  problem: Problem | null;
}

/**
 * Verifies everything and reports each chain's first broken link. `publicKeys` are the keys the
 * auditor trusts (several across a key rotation); checkpoints signed by any other key attest nothing.
 */
export async function verifyLedger(
  source: LedgerSource,
  publicKeys: KeyObject | readonly KeyObject[],
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const checkpoints = await source.checkpoints();
  const logged = await source.detachedDays();
  const keys = new Map(
    (Array.isArray(publicKeys) ? publicKeys : [publicKeys as KeyObject]).map((k) => [keyIdOf(k), k]),
  );
  const problems: Problem[] = verifyCheckpointSignatures(checkpoints, keys);
  // Only a checkpoint whose signature holds attests anything about the chains.
  const trusted = checkpoints.filter(
    (c) => !problems.some((p) => p.checkpointId === c.checkpointId && p.kind !== 'checkpoint_missing'),
  );
  // The partition log is not signed: a day it calls detached counts as retired only if the
  // retention the auditor expects had passed for it by the newest signed checkpoint (plus slack for
  // a maintenance run after that checkpoint). A newer day without rows is a deletion.
  const detached = retiredDays(logged, trusted, options.retentionDays ?? DEFAULT_RETENTION_DAYS);
  const wanted = new Map<string, Set<number>>();
  for (const checkpoint of trusted) {
    for (const head of checkpoint.body.heads) {
      const seqs = wanted.get(head.chainId) ?? new Set<number>();
      seqs.add(head.seq);
      wanted.set(head.chainId, seqs);
    }
  }

  const chainIds = await source.chainIds();
  const results = new Map<string, ChainResult>();
  let rows = 0;
  for (const chainId of chainIds) {
    const result = await verifyChain(chainId, source.rows(chainId), wanted.get(chainId) ?? new Set());
    results.set(chainId, result);
    rows += result.length;
    if (result.problem) problems.push(result.problem);
  }

  let retiredChains = 0;
  for (const chainId of wanted.keys()) {
    if (!results.has(chainId) && detached.has(chainDay(chainId))) retiredChains++;
  }
  for (const checkpoint of trusted) {
    for (const head of checkpoint.body.heads) {
      const result = results.get(head.chainId);
      if (!result) {
        if (!detached.has(chainDay(head.chainId))) {
          problems.push({
            kind: 'chain_missing',
            chainId: head.chainId,
            seq: head.seq,
            checkpointId: checkpoint.checkpointId,
            detail: `checkpoint ${checkpoint.checkpointId} attests ${head.seq} rows in chain ${head.chainId}, but the chain has no rows and retention cannot explain it (its day is not logged as detached, or is within the retention)`,
          });
        }
        continue;
      }
      if (result.length < head.seq) {
        problems.push({
          kind: 'chain_truncated',
          chainId: head.chainId,
          seq: result.length + 1,
          checkpointId: checkpoint.checkpointId,
          detail: `checkpoint ${checkpoint.checkpointId} attests seq ${head.seq}, but the chain ends at seq ${result.length}`,
        });
        continue;
      }
      const recomputed = result.attested.get(head.seq);
      // When the chain broke before this seq, the chain's own problem already locates it.
      if (recomputed !== undefined && recomputed !== head.hash) {
        problems.push({
          kind: 'row_changed',
          chainId: head.chainId,
          seq: head.seq,
          checkpointId: checkpoint.checkpointId,
          detail: `the chain recomputed up to seq ${head.seq} does not match the head signed in checkpoint ${checkpoint.checkpointId}: a row at or before it was altered and rehashed`,
        });
      }
    }
  }

  const newest = trusted.at(-1);
  let unsignedRows = 0;
  for (const [chainId, result] of results) {
    const signed = newest?.body.heads.find((h) => h.chainId === chainId)?.seq ?? 0;
    unsignedRows += Math.max(0, result.length - signed);
  }

  const unique = dedupe(problems);
  unique.sort(compareProblems);
  return {
    ok: unique.length === 0,
    chains: results.size,
    rows,
    checkpoints: checkpoints.length,
    unsignedRows,
    retiredChains,
    problems: unique,
    firstProblem: unique[0] ?? null,
  };
}

function verifyCheckpointSignatures(checkpoints: Checkpoint[], keys: Map<string, KeyObject>): Problem[] {
  const problems: Problem[] = [];
  let previous: Checkpoint | undefined;
  for (const checkpoint of checkpoints) {
    const publicKey = keys.get(checkpoint.body.keyId);
    if (!publicKey) {
      problems.push({
        kind: 'unknown_key',
        checkpointId: checkpoint.checkpointId,
        detail: `checkpoint ${checkpoint.checkpointId} names key ${checkpoint.body.keyId}, which is not among the given public keys (${[...keys.keys()].join(', ')})`,
      });
    } else if (!verifySignature(checkpoint, publicKey)) {
      problems.push({
        kind: 'bad_signature',
        checkpointId: checkpoint.checkpointId,
        detail: `checkpoint ${checkpoint.checkpointId} has an invalid signature: its body was altered or forged`,
      });
    }
    const expected = previous ? checkpointDigest(previous) : null;
    if (checkpoint.body.previous !== expected) {
      problems.push({
        kind: 'checkpoint_missing',
        checkpointId: checkpoint.checkpointId,
        detail: `checkpoint ${checkpoint.checkpointId} does not follow the checkpoint before it: one was removed or reordered`,
      });
    }
    previous = checkpoint;
  }
  return problems;
}

async function verifyChain(
  chainId: string,
  rows: AsyncIterable<HashedRow>,
  wanted: Set<number>,
): Promise<ChainResult> {
  let expectedSeq = 1;
  let expectedPrev = genesisHash(chainId);
  const attested = new Map<number, string>();
  let length = 0;
  let problem: Problem | null = null;
  for await (const row of rows) {
    length = Math.max(length, row.chainSeq);
    if (problem) continue;
    const at = { chainId, seq: row.chainSeq, eventId: row.eventId };
    if (row.chainId !== chainId) {
      problem = { kind: 'row_misplaced', ...at, detail: `row ${row.eventId} claims chain ${row.chainId}` };
    } else if (row.chainSeq < expectedSeq) {
      problem = {
        kind: 'row_inserted',
        ...at,
        detail: `seq ${row.chainSeq} appears twice (event ${row.eventId}): a row was inserted`,
      };
    } else if (row.chainSeq > expectedSeq) {
      problem = {
        kind: 'row_missing',
        ...at,
        seq: expectedSeq,
        detail: `seq ${expectedSeq}${row.chainSeq - 1 > expectedSeq ? `..${row.chainSeq - 1}` : ''} is missing before event ${row.eventId} (seq ${row.chainSeq}): rows were deleted`,
      };
    } else if (row.prevHash !== expectedPrev) {
      problem = {
        kind: 'link_broken',
        ...at,
        detail: `prev_hash of seq ${row.chainSeq} does not match the hash of seq ${row.chainSeq - 1}: a row was inserted, removed or rehashed here`,
      };
    } else {
      const recomputed = rowHash(row);
      if (recomputed !== row.rowHash) {
        problem = {
          kind: 'row_changed',
          ...at,
          detail: `the content of seq ${row.chainSeq} (event ${row.eventId}) does not match its hash: the row was changed`,
        };
      }
      if (wanted.has(row.chainSeq)) attested.set(row.chainSeq, recomputed);
      expectedPrev = recomputed;
      expectedSeq++;
    }
  }
  return { length, attested, problem };
}

function dedupe(problems: Problem[]): Problem[] {
  const seen = new Set<string>();
  return problems.filter((p) => {
    const key = `${p.kind}|${p.chainId}|${p.seq}|${p.checkpointId}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

function compareProblems(a: Problem, b: Problem): number {
  const chain = (a.chainId ?? '').localeCompare(b.chainId ?? '');
  if (chain !== 0) return chain;
  return (a.seq ?? 0) - (b.seq ?? 0) || (a.checkpointId ?? 0) - (b.checkpointId ?? 0);
}
