import { createHash } from 'node:crypto';
import { Parser, type ReadEntry } from 'tar';

/** A compiled policy bundle as `opa build -t wasm` writes it. */
export interface PolicyBundle {
  wasm: Uint8Array;
  /** The bundle's own data.json (policy defaults); the directory is added beside it at load. */
  data: Record<string, unknown>;
  revision: string;
  /** SHA-256 of the bundle file, for the record. */
  digest: string;
}

export class BundleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BundleError';
  }
}

const MAX_ENTRY_BYTES = 64 * 1024 * 1024;
/** An upload is at most 16 MiB of gzip, which can expand a thousandfold: bounds on what it unpacks to. */
export const ARCHIVE_LIMITS = { maxBytes: 256 * 1024 * 1024, maxEntries: 10_000 } as const;
/** The files of a built bundle the engine reads; anything else in the archive is skipped unread. */
const BUNDLE_FILES = new Set(['/policy.wasm', '/data.json', '/.manifest']);

/** Reads a bundle.tar.gz into memory; throws BundleError naming what is wrong with it. */
export async function readBundle(tarGz: Uint8Array): Promise<PolicyBundle> {
  const files = await untar(tarGz);
  const wasm = files.get('/policy.wasm');
  if (!wasm) throw new BundleError('bundle has no /policy.wasm (build it with: opa build -t wasm)');
  if (!isWasm(wasm)) throw new BundleError('/policy.wasm is not a WebAssembly module');
  const data = parseJson(files.get('/data.json'), '/data.json') ?? {};
  const manifest = parseJson(files.get('/.manifest'), '/.manifest') ?? {};
  if (typeof data !== 'object' || Array.isArray(data))
    throw new BundleError('/data.json must hold a JSON object');
  const revision =
    typeof manifest.revision === 'string' && manifest.revision ? manifest.revision : 'unversioned';
  return {
    wasm,
    data: data as Record<string, unknown>,
    revision,
    digest: createHash('sha256').update(tarGz).digest('hex'),
  };
}

/**
 * Checks a tar.gz before anything is unpacked to disk: at most ARCHIVE_LIMITS' entries and bytes
 * (as the headers declare them; the parse stops at the first excess, so a decompression bomb costs
 * no more than the bound), and only regular files and directories — no links, which could point
 * out of the directory it is unpacked into. Throws BundleError naming the problem.
 */
export function checkArchive(
  tarGz: Uint8Array,
  limits: { maxBytes: number; maxEntries: number } = ARCHIVE_LIMITS,
): Promise<void> {
  const refusal = archiveGuard(limits);
  return parse(tarGz, (entry, abort) => {
    const problem = refusal(entry);
    if (problem) abort(problem);
    entry.resume();
  });
}

/** Counts an archive's entries as they come: the BundleError of the first one past the limits. */
function archiveGuard(limits: { maxBytes: number; maxEntries: number }) {
  let entries = 0;
  let bytes = 0;
  return (entry: ReadEntry): BundleError | undefined => {
    entries++;
    bytes += entry.size ?? 0;
    if (entries > limits.maxEntries)
      return new BundleError(`the archive holds more than ${limits.maxEntries} entries`);
    if (bytes > limits.maxBytes)
      return new BundleError(`the archive unpacks to more than ${limits.maxBytes / 1024 / 1024} MiB`);
    if (entry.type !== 'File' && entry.type !== 'Directory')
      return new BundleError(`${entry.path} is a ${entry.type}: only files and directories are accepted`);
    return undefined;
  };
}

/** The bundle files (BUNDLE_FILES) of a built bundle, within ARCHIVE_LIMITS, in one pass. */
async function untar(tarGz: Uint8Array): Promise<Map<string, Uint8Array>> {
  const refusal = archiveGuard(ARCHIVE_LIMITS);
  const files = new Map<string, Uint8Array>();
  await parse(tarGz, (entry, abort) => {
    const problem = refusal(entry);
    if (problem) {
      abort(problem);
      return;
    }
    const path = normalize(entry.path);
    if (!BUNDLE_FILES.has(path)) {
      entry.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    entry.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_ENTRY_BYTES) abort(new BundleError(`${entry.path} is larger than 64 MiB`));
      else chunks.push(chunk);
    });
    entry.on('end', () => files.set(path, Buffer.concat(chunks)));
  });
  return files;
}

/** Parses a tar.gz, handing each entry to `onEntry`; rejects with a BundleError. */
function parse(
  tarGz: Uint8Array,
  onEntry: (entry: ReadEntry, abort: (error: BundleError) => void) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => onEntry(entry, (error) => parser.abort(error)),
    });
    const fail = (error: Error) =>
      reject(
        error instanceof BundleError
          ? error
          : new BundleError(`bundle is not a valid tar.gz: ${error.message}`),
      );
    parser.on('error', fail);
    parser.on('abort', fail);
    parser.on('end', () => resolve());
    try {
      // A truncated gzip stream throws from end() rather than emitting 'error'.
      parser.end(Buffer.from(tarGz));
    } catch (error) {
      fail(error as Error);
    }
  });
}

function normalize(path: string): string {
  return `/${path.replace(/^\.?\/+/, '')}`;
}

function isWasm(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 8 && bytes[0] === 0x00 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d
  );
}

function parseJson(bytes: Uint8Array | undefined, name: string): Record<string, unknown> | undefined {
  if (!bytes) return undefined;
  try {
    return JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw new BundleError(`${name} is not valid JSON`);
  }
}
