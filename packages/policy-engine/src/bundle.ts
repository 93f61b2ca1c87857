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

function untar(tarGz: Uint8Array): Promise<Map<string, Uint8Array>> {
  return new Promise((resolve, reject) => {
    const files = new Map<string, Uint8Array>();
    const parser = new Parser({
      strict: true,
      onReadEntry: (entry: ReadEntry) => {
        const chunks: Buffer[] = [];
        let size = 0;
        entry.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ENTRY_BYTES) parser.abort(new BundleError(`${entry.path} is larger than 64 MiB`));
          else chunks.push(chunk);
        });
        entry.on('end', () => files.set(normalize(entry.path), Buffer.concat(chunks)));
      },
    });
    const fail = (error: Error) =>
      reject(
        error instanceof BundleError
          ? error
          : new BundleError(`bundle is not a valid tar.gz: ${error.message}`),
      );
    parser.on('error', fail);
    parser.on('abort', fail);
    parser.on('end', () => resolve(files));
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
