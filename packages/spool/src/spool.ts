import { type FileHandle, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

/**
 * A bounded, crash-safe, append-only spool of opaque records on local disk.
 *
 * Invariants (the audit path relies on them):
 * - `append` resolves only after the record is on disk (written and fdatasync'd); concurrent
 *   appends are group-committed: one write and one fsync for everything queued meanwhile.
 * - Records come back from `peek` in append order, each exactly once per process; `acknowledge`
 *   moves a durable replay position (written to a temp file, fsync'd, renamed), so a restart never
 *   hands out again what was acknowledged before it.
 * - Each record is framed as [u32 length][u32 crc32][payload]. A torn or corrupt tail (a crash in
 *   the middle of a write) is cut off on open; records before it are intact.
 * - Bounds are on what is pending (appended, not yet acknowledged), by bytes and by records. A full
 *   spool refuses appends with SpoolFullError and never drops what it holds.
 *
 * Files: `segment-<n>.log` (the records) and `position.json` ({segment, offset}). Acknowledged
 * prefixes are reclaimed by copying the pending tail into segment n+1 and only then moving the
 * position there, so a crash at any step leaves one consistent (segment, offset) pair.
 */

export interface SpoolOptions {
  /** Directory the spool owns; created if missing. One process per directory. */
  dir: string;
  /** Largest total size of pending records, headers included. */
  maxBytes: number;
  /** Largest number of pending records. */
  maxRecords: number;
}

/** What `open` found and repaired on disk. */
export interface SpoolRecovery {
  /** Records found pending (appended before, never acknowledged). */
  pendingRecords: number;
  /** Bytes cut off the end of the segment because the last record was torn or corrupt. */
  truncatedBytes: number;
}

/** An append refused because the spool holds as much as it may. Retryable once it drains. */
export class SpoolFullError extends Error {
  readonly code = 'spool_full';
  constructor(pendingRecords: number, pendingBytes: number) {
    super(`spool full: ${pendingRecords} records, ${pendingBytes} bytes pending`);
    this.name = 'SpoolFullError';
  }
}

/** Records read from the spool and the position to acknowledge once they are delivered. */
export interface SpoolBatch {
  records: Buffer[];
  /** Opaque: pass to `acknowledge`. */
  end: number;
}

const HEADER_BYTES = 8;
const POSITION_FILE = 'position.json';
const segmentName = (segment: number) => `segment-${String(segment).padStart(12, '0')}.log`;

interface Queued {
  frame: Buffer;
  resolve: () => void;
  reject: (error: Error) => void;
}

export class Spool {
  readonly #options: SpoolOptions;
  #segment: number;
  #handle: FileHandle;
  /** File offset of the first pending record. */
  #position: number;
  /** File size: where the next record goes. */
  #size: number;
  #pendingRecords: number;
  /** Pending records plus records queued for the next group commit. */
  #reservedRecords: number;
  #reservedBytes: number;
  #queue: Queued[] = [];
  #flushing = false;
  /** Serializes every file operation that moves the segment or the position. */
  #lock: Promise<void> = Promise.resolve();
  #closed = false;

  private constructor(
    options: SpoolOptions,
    segment: number,
    handle: FileHandle,
    position: number,
    size: number,
    pendingRecords: number,
  ) {
    this.#options = options;
    this.#segment = segment;
    this.#handle = handle;
    this.#position = position;
    this.#size = size;
    this.#pendingRecords = pendingRecords;
    this.#reservedRecords = pendingRecords;
    this.#reservedBytes = size - position;
  }

  /** Opens (or creates) the spool in `options.dir`, repairing a torn tail. */
  static async open(options: SpoolOptions): Promise<{ spool: Spool; recovery: SpoolRecovery }> {
    if (!(options.maxBytes > HEADER_BYTES) || !(options.maxRecords > 0)) {
      throw new RangeError('spool bounds must allow at least one record');
    }
    await mkdir(options.dir, { recursive: true });
    const stored = await readPosition(options.dir);
    const segment = stored?.segment ?? 1;
    let position = stored?.offset ?? 0;
    // Any other segment is either fully acknowledged (older) or an unfinished compaction (newer).
    for (const name of await readdir(options.dir)) {
      if (/^segment-\d+\.log$/.test(name) && name !== segmentName(segment)) {
        await rm(join(options.dir, name), { force: true });
      }
      if (name.endsWith('.tmp')) await rm(join(options.dir, name), { force: true });
    }
    const handle = await open(join(options.dir, segmentName(segment)), 'a+');
    const size = (await handle.stat()).size;
    if (position > size) position = size;
    const scan = await scanRecords(handle, position, size);
    let truncatedBytes = 0;
    if (scan.validEnd < size) {
      truncatedBytes = size - scan.validEnd;
      await handle.truncate(scan.validEnd);
      await handle.datasync();
    }
    if (!stored) await writePosition(options.dir, segment, position);
    await syncDirectory(options.dir);
    const spool = new Spool(options, segment, handle, position, scan.validEnd, scan.records);
    return { spool, recovery: { pendingRecords: scan.records, truncatedBytes } };
  }

  /** Records appended and not yet acknowledged. */
  get pendingRecords(): number {
    return this.#pendingRecords;
  }

  /** Bytes of pending records, headers included. */
  get pendingBytes(): number {
    return this.#size - this.#position;
  }

  /** Whether appending `records` records of `bytes` payload bytes in all would be refused now. */
  wouldRefuse(bytes: number, records = 1): boolean {
    return (
      this.#reservedRecords + records > this.#options.maxRecords ||
      this.#reservedBytes + records * HEADER_BYTES + bytes > this.#options.maxBytes
    );
  }

  /** Appends one record; resolves once it is durable. Throws SpoolFullError when full. */
  append(payload: Buffer): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('spool is closed'));
    if (this.wouldRefuse(payload.length)) {
      return Promise.reject(new SpoolFullError(this.#reservedRecords, this.#reservedBytes));
    }
    const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
    frame.writeUInt32BE(payload.length, 0);
    frame.writeUInt32BE(crc32(payload), 4);
    payload.copy(frame, HEADER_BYTES);
    this.#reservedRecords += 1;
    this.#reservedBytes += frame.length;
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ frame, resolve, reject });
      if (!this.#flushing) {
        this.#flushing = true;
        void this.#exclusive(() => this.#flush());
      }
    });
  }

  /** Up to `maxRecords` pending records, oldest first, without removing them. */
  async peek(maxRecords: number): Promise<SpoolBatch> {
    return this.#exclusive(async () => {
      const records: Buffer[] = [];
      let offset = this.#position;
      const header = Buffer.alloc(HEADER_BYTES);
      while (records.length < maxRecords && offset < this.#size) {
        await readExactly(this.#handle, header, offset);
        const length = header.readUInt32BE(0);
        const payload = Buffer.alloc(length);
        await readExactly(this.#handle, payload, offset + HEADER_BYTES);
        records.push(payload);
        offset += HEADER_BYTES + length;
      }
      return { records, end: offset };
    });
  }

  /**
   * Marks everything before `end` (from a `peek`) as delivered, durably. Reclaims disk space by
   * compacting once nothing is pending or the delivered prefix has grown past the byte bound.
   */
  async acknowledge(batch: SpoolBatch): Promise<void> {
    await this.#exclusive(async () => {
      if (batch.end <= this.#position) return;
      if (batch.end > this.#size) throw new RangeError('acknowledged beyond the end of the spool');
      this.#pendingRecords -= batch.records.length;
      this.#reservedRecords -= batch.records.length;
      this.#reservedBytes -= batch.end - this.#position;
      this.#position = batch.end;
      if (this.#position === this.#size || this.#position >= this.#options.maxBytes) {
        await this.#compact();
      } else {
        await writePosition(this.#options.dir, this.#segment, this.#position);
      }
    });
  }

  /** Waits for queued appends, then closes the file. Pending records stay for the next open. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#exclusive(async () => {
      await this.#handle.close();
    });
  }

  async #flush(): Promise<void> {
    // Everything queued by now goes out in one write and one fsync (group commit).
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      const data = batch.length === 1 ? batch[0]!.frame : Buffer.concat(batch.map((q) => q.frame));
      try {
        await writeAll(this.#handle, data, this.#size);
        await this.#handle.datasync();
      } catch (error) {
        // Cut off whatever part of the batch reached the file, so no half-written record stays.
        await this.#handle.truncate(this.#size).catch(() => {});
        this.#reservedRecords -= batch.length;
        this.#reservedBytes -= data.length;
        for (const q of batch) q.reject(error as Error);
        continue;
      }
      this.#size += data.length;
      this.#pendingRecords += batch.length;
      for (const q of batch) q.resolve();
    }
    this.#flushing = false;
  }

  async #compact(): Promise<void> {
    const dir = this.#options.dir;
    const next = this.#segment + 1;
    const nextHandle = await open(join(dir, segmentName(next)), 'w+');
    const tail = this.#size - this.#position;
    if (tail > 0) {
      const buffer = Buffer.alloc(tail);
      await readExactly(this.#handle, buffer, this.#position);
      await writeAll(nextHandle, buffer, 0);
    }
    await nextHandle.datasync();
    await syncDirectory(dir);
    // The switch: before this rename the old segment and position rule, after it the new ones.
    await writePosition(dir, next, 0);
    const previous = this.#segment;
    await this.#handle.close();
    this.#handle = nextHandle;
    this.#segment = next;
    this.#position = 0;
    this.#size = tail;
    await rm(join(dir, segmentName(previous)), { force: true });
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#lock.then(fn);
    this.#lock = run.then(
      () => {},
      () => {},
    );
    return run;
  }
}

async function scanRecords(
  handle: FileHandle,
  from: number,
  size: number,
): Promise<{ records: number; validEnd: number }> {
  let offset = from;
  let records = 0;
  const header = Buffer.alloc(HEADER_BYTES);
  while (offset + HEADER_BYTES <= size) {
    await readExactly(handle, header, offset);
    const length = header.readUInt32BE(0);
    if (offset + HEADER_BYTES + length > size) break;
    const payload = Buffer.alloc(length);
    await readExactly(handle, payload, offset + HEADER_BYTES);
    if (crc32(payload) !== header.readUInt32BE(4)) break;
    offset += HEADER_BYTES + length;
    records += 1;
  }
  return { records, validEnd: offset };
}

async function readExactly(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await handle.read(buffer, done, buffer.length - done, position + done);
    if (bytesRead === 0) throw new Error('spool segment ended early');
    done += bytesRead;
  }
}

async function writeAll(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

async function readPosition(dir: string): Promise<{ segment: number; offset: number } | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, POSITION_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const parsed = JSON.parse(text) as { segment?: unknown; offset?: unknown };
  if (!Number.isSafeInteger(parsed.segment) || !Number.isSafeInteger(parsed.offset)) {
    throw new Error(`spool position file in ${dir} is malformed`);
  }
  return { segment: parsed.segment as number, offset: parsed.offset as number };
}

async function writePosition(dir: string, segment: number, offset: number): Promise<void> {
  const temp = join(dir, `${POSITION_FILE}.tmp`);
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(JSON.stringify({ segment, offset }));
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(temp, join(dir, POSITION_FILE));
  await syncDirectory(dir);
}

/** Makes creations and renames in `dir` durable (the entries live in the directory). */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
