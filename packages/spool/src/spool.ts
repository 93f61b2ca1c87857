import { constants, write } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { takeOwnership } from './ownership.ts';

/**
 * A bounded, crash-safe, append-only spool of opaque records on local disk.
 *
 * Invariants (the audit path relies on them):
 * - `append` resolves only after the record is on disk (the segment is opened O_DSYNC: a write
 *   returns once its data is durable, like write + fdatasync in one call); concurrent appends are
 *   group-committed: one write for everything queued meanwhile.
 * - Records come back from `peek` in append order, each exactly once per process; `acknowledge`
 *   moves a durable replay position (written to a temp file, fsync'd, renamed), so a restart never
 *   hands out again what was acknowledged before it — unless `positionSyncDelayMs` is set: then a
 *   crash can hand out again what was acknowledged in that last interval (at-least-once).
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
  /**
   * Recently appended records are also kept in memory, up to this many bytes, so that `peek` —
   * which a spool used as the normal way in (the broker's local-first audit mode) calls many times
   * a second — reads them from there instead of the file. Default 8 MiB; 0 reads the file always.
   */
  memoryBytes?: number;
  /**
   * How long a drained spool waits before it reclaims its file (0, the default: at once). A spool
   * that drains many times a second would otherwise create a new segment file every time; with a
   * delay it reclaims once traffic pauses, or when the delivered prefix outgrows `maxBytes`.
   */
  drainedCompactionDelayMs?: number;
  /**
   * How long an acknowledged position may stay in memory only before it is written to disk (0, the
   * default: `acknowledge` resolves once it is durable). With a delay, acknowledging is cheap, and
   * a crash can hand out again records acknowledged in the last `positionSyncDelayMs`: for
   * consumers that are idempotent anyway (the audit ledger, by event id), at-least-once at a
   * fraction of the disk work.
   */
  positionSyncDelayMs?: number;
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

/** Appends refused because the segment may hold bytes the spool does not account for (see #flush). */
export class SpoolBrokenError extends Error {
  readonly code = 'spool_broken';
  constructor(cause: Error) {
    super(`spool refuses appends until it is reopened: ${cause.message}`, { cause });
    this.name = 'SpoolBrokenError';
  }
}

/**
 * Test seam: faults injected where the operating system rarely fails (a write, the cut-back after
 * it, the directory sync after the position file's rename). Never set outside tests.
 */
export const spoolFaults: {
  write?: () => Error | undefined;
  truncate?: () => Error | undefined;
  afterPositionRename?: () => Error | undefined;
} = {};

/** How an append may be written. */
export interface AppendOptions {
  /**
   * How long the record may wait to share a write with a later append (0, the default: written
   * at once, together with whatever else is queued). A deferred record is written with the next
   * append that is not deferred, or after this many milliseconds, whichever comes first; it
   * resolves once durable, like any other. For records nobody waits on (the audit path's outcome
   * events): one disk write fewer per call.
   */
  deferMs?: number;
}

/** Records read from the spool and the position to acknowledge once they are delivered. */
export interface SpoolBatch {
  records: Buffer[];
  /** Opaque: pass to `acknowledge`. */
  end: number;
}

const HEADER_BYTES = 8;
const DEFAULT_MEMORY_BYTES = 8 * 1024 * 1024;
const POSITION_FILE = 'position.json';
const segmentName = (segment: number) => `segment-${String(segment).padStart(12, '0')}.log`;

interface Queued {
  frame: Buffer;
  /** How long it may wait for a write to share (0: write now), from `queuedAt` (performance.now()). */
  deferMs: number;
  queuedAt: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** A durable record also held in memory: where it starts in the segment, and its frame. */
interface Cached {
  offset: number;
  frame: Buffer;
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
  #acknowledgedRecords = 0;
  /** Queued records that are not deferred: while there are none, queued records may wait. */
  #urgentQueued = 0;
  /** Set while deferred records wait for a write to share (see AppendOptions.deferMs). */
  #deferTimer: NodeJS.Timeout | undefined;
  /** When the armed #deferTimer fires (performance.now() time). */
  #deferDeadline = 0;
  /** Serializes every file operation that moves the segment or the position. */
  #lock: Promise<void> = Promise.resolve();
  /** Operations started through #exclusive and not yet finished (running or waiting their turn). */
  #exclusiveOps = 0;
  #closed = false;
  /** Gives the directory back (ownership.ts): on close. */
  readonly #release: () => Promise<void>;
  /** Set when the segment may hold bytes past #size: appends are refused until a reopen repairs it. */
  #broken: SpoolBrokenError | undefined;
  /**
   * The newest durable records, oldest first, contiguous up to `#size`; every entry is pending
   * (acknowledging drops entries from the front, the memory bound drops the oldest).
   */
  #cache: Cached[] = [];
  #cacheBytes = 0;
  #compactionTimer: NodeJS.Timeout | undefined;
  /** Set while an acknowledged position waits to be written (positionSyncDelayMs). */
  #positionTimer: NodeJS.Timeout | undefined;
  /** The acknowledged position is newer than the one on disk (cleared only by a successful write). */
  #positionDirty = false;

  private constructor(
    options: SpoolOptions,
    segment: number,
    handle: FileHandle,
    position: number,
    size: number,
    pendingRecords: number,
    release: () => Promise<void>,
  ) {
    this.#release = release;
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
    const release = await takeOwnership(options.dir);
    try {
      return await Spool.#openOwned(options, release);
    } catch (error) {
      await release();
      throw error;
    }
  }

  static async #openOwned(
    options: SpoolOptions,
    release: () => Promise<void>,
  ): Promise<{ spool: Spool; recovery: SpoolRecovery }> {
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
    const handle = await openSegment(join(options.dir, segmentName(segment)), false);
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
    const spool = new Spool(options, segment, handle, position, scan.validEnd, scan.records, release);
    return { spool, recovery: { pendingRecords: scan.records, truncatedBytes } };
  }

  /** Why appends are refused until the spool is reopened (a restart repairs it), if they are. */
  get broken(): SpoolBrokenError | undefined {
    return this.#broken;
  }

  /** Records appended and not yet acknowledged. */
  get pendingRecords(): number {
    return this.#pendingRecords;
  }

  /** Bytes of pending records, headers included. */
  get pendingBytes(): number {
    return this.#size - this.#position;
  }

  /**
   * Records acknowledged since the spool was opened, counted as soon as they leave the pending
   * ones — also when the position write or compaction that follows fails (acknowledge throws).
   */
  get acknowledgedRecords(): number {
    return this.#acknowledgedRecords;
  }

  /** The bounds the spool was opened with. */
  get limits(): { maxBytes: number; maxRecords: number } {
    return { maxBytes: this.#options.maxBytes, maxRecords: this.#options.maxRecords };
  }

  /** Whether appending `records` records of `bytes` payload bytes in all would be refused now. */
  wouldRefuse(bytes: number, records = 1): boolean {
    return (
      this.#reservedRecords + records > this.#options.maxRecords ||
      this.#reservedBytes + records * HEADER_BYTES + bytes > this.#options.maxBytes
    );
  }

  /** Appends one record; resolves once it is durable. Throws SpoolFullError when full. */
  append(payload: Buffer, options: AppendOptions = {}): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('spool is closed'));
    if (this.#broken) return Promise.reject(this.#broken);
    if (this.wouldRefuse(payload.length)) {
      return Promise.reject(new SpoolFullError(this.#reservedRecords, this.#reservedBytes));
    }
    // Not from Node's shared 8 KiB pool: a frame kept in memory for peek would pin its whole slab.
    const frame = Buffer.allocUnsafeSlow(HEADER_BYTES + payload.length);
    frame.writeUInt32BE(payload.length, 0);
    frame.writeUInt32BE(crc32(payload), 4);
    payload.copy(frame, HEADER_BYTES);
    this.#reservedRecords += 1;
    this.#reservedBytes += frame.length;
    return new Promise<void>((resolve, reject) => {
      const deferMs = options.deferMs ?? 0;
      this.#queue.push({ frame, deferMs, queuedAt: deferMs > 0 ? performance.now() : 0, resolve, reject });
      if (deferMs > 0) {
        // A write in progress looks at the queue again when it ends.
        if (!this.#flushing) this.#deferFlush();
      } else {
        this.#urgentQueued++;
        this.#startFlush(false);
      }
    });
  }

  /**
   * Starts writing the queue unless a write is in progress (it takes the queue along when it
   * ends). `force`: write deferred records too, even with nothing urgent queued.
   */
  #startFlush(force: boolean): void {
    clearTimeout(this.#deferTimer);
    this.#deferTimer = undefined;
    if (this.#flushing || this.#queue.length === 0) return;
    this.#flushing = true;
    void this.#exclusive(() => this.#flush(force));
  }

  /**
   * Makes sure deferred records are written by the earliest of their deadlines if nothing urgent
   * comes first: a record with a shorter delay than those already waiting brings the write forward.
   */
  #deferFlush(): void {
    let deadline = Number.POSITIVE_INFINITY;
    const now = performance.now();
    for (const queued of this.#queue)
      if (queued.deferMs > 0) deadline = Math.min(deadline, queued.queuedAt + queued.deferMs);
    if (this.#deferTimer && this.#deferDeadline <= deadline) return;
    clearTimeout(this.#deferTimer);
    this.#deferDeadline = deadline;
    this.#deferTimer = setTimeout(
      () => {
        this.#deferTimer = undefined;
        this.#startFlush(true);
      },
      Math.max(0, deadline - now),
    );
  }

  /** Up to `maxRecords` pending records, oldest first, without removing them. Do not modify them. */
  async peek(maxRecords: number): Promise<SpoolBatch> {
    return this.#exclusive(async () => {
      const records: Buffer[] = [];
      let offset = this.#position;
      const cacheStart = this.#cache[0]?.offset ?? this.#size;
      // Records older than the memory holds (from a previous run, or evicted) come from the file.
      const header = Buffer.alloc(HEADER_BYTES);
      while (records.length < maxRecords && offset < cacheStart) {
        await readExactly(this.#handle, header, offset);
        const length = header.readUInt32BE(0);
        const payload = Buffer.alloc(length);
        await readExactly(this.#handle, payload, offset + HEADER_BYTES);
        records.push(payload);
        offset += HEADER_BYTES + length;
      }
      for (let i = 0; records.length < maxRecords && i < this.#cache.length; i++) {
        const { frame } = this.#cache[i] as Cached;
        records.push(frame.subarray(HEADER_BYTES));
        offset += frame.length;
      }
      return { records, end: offset };
    });
  }

  /**
   * Marks everything before `end` (from a `peek`) as delivered, durably. Reclaims disk space by
   * compacting once nothing is pending or the delivered prefix has grown past the byte bound.
   */
  async acknowledge(batch: SpoolBatch): Promise<void> {
    if (this.#closed) throw new Error('spool is closed');
    await this.#exclusive(async () => {
      if (batch.end <= this.#position) return;
      if (batch.end > this.#size) throw new RangeError('acknowledged beyond the end of the spool');
      this.#pendingRecords -= batch.records.length;
      this.#acknowledgedRecords += batch.records.length;
      this.#reservedRecords -= batch.records.length;
      this.#reservedBytes -= batch.end - this.#position;
      this.#position = batch.end;
      this.#forget((cached) => cached.offset < this.#position);
      const drained = this.#position === this.#size;
      if (this.#position >= this.#options.maxBytes || (drained && !this.#options.drainedCompactionDelayMs)) {
        await this.#compact();
        return;
      }
      if (this.#options.positionSyncDelayMs) this.#schedulePositionWrite();
      else await writePosition(this.#options.dir, this.#segment, this.#position);
      if (drained) this.#scheduleDrainedCompaction();
    });
  }

  /** Writes the acknowledged position within positionSyncDelayMs, once for all acknowledged meanwhile. */
  #schedulePositionWrite(): void {
    this.#positionDirty = true;
    if (this.#positionTimer) return;
    this.#positionTimer = setTimeout(() => {
      this.#positionTimer = undefined;
      void this.#exclusive(() => this.#writePendingPosition()).catch(() => {
        // The position on disk stays behind (those records would be handed out again after a
        // crash: at-least-once); it stays dirty, so try again after the same delay.
        if (!this.#closed) this.#schedulePositionWrite();
      });
    }, this.#options.positionSyncDelayMs);
    this.#positionTimer.unref();
  }

  /** Writes the position if an acknowledgement is waiting for it (runs under #exclusive). */
  async #writePendingPosition(): Promise<void> {
    if (!this.#positionDirty) return;
    clearTimeout(this.#positionTimer);
    this.#positionTimer = undefined;
    await writePosition(this.#options.dir, this.#segment, this.#position);
    this.#positionDirty = false;
  }

  /** Reclaims the file once the spool has stayed drained for the configured delay. */
  #scheduleDrainedCompaction(): void {
    clearTimeout(this.#compactionTimer);
    this.#compactionTimer = setTimeout(() => {
      void this.#exclusive(async () => {
        if (this.#closed || this.#position !== this.#size || this.#position === 0) return;
        await this.#compact();
      }).catch(() => {
        // A failed reclaim leaves the spool consistent (see #compact); the next one tries again.
      });
    }, this.#options.drainedCompactionDelayMs);
    this.#compactionTimer.unref();
  }

  /** Waits for queued appends, then closes the file. Pending records stay for the next open. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#compactionTimer);
    this.#startFlush(true); // deferred records do not wait for their timer
    await this.#exclusive(async () => {
      await this.#writePendingPosition();
      await this.#handle.close();
    });
    await this.#release();
  }

  async #flush(force: boolean): Promise<void> {
    // Everything queued by now goes out in one write and one fsync (group commit).
    while (this.#queue.length > 0) {
      if (!force && !this.#closed && this.#urgentQueued === 0) {
        this.#deferFlush(); // only deferred records are left: they wait for company
        break;
      }
      force = false;
      const batch = this.#queue;
      this.#queue = [];
      this.#urgentQueued = 0;
      const data = batch.length === 1 ? batch[0]!.frame : Buffer.concat(batch.map((q) => q.frame));
      try {
        if (this.#broken) throw this.#broken;
        await writeAll(this.#handle, data, this.#size);
      } catch (error) {
        // Cut off whatever part of the batch reached the file, so no half-written record stays.
        // If that fails, the torn bytes stay: with O_APPEND every later write would land after
        // them, where a reopen's scan stops and cuts — accepted records lost. Refuse appends.
        if (!this.#broken) await this.#cutBack(error as Error);
        this.#reservedRecords -= batch.length;
        this.#reservedBytes -= data.length;
        for (const q of batch) q.reject(error as Error);
        continue;
      }
      this.#remember(batch, this.#size);
      this.#size += data.length;
      this.#pendingRecords += batch.length;
      for (const q of batch) q.resolve();
    }
    this.#flushing = false;
  }

  /** After a failed write: truncates the segment back to #size, or marks the spool broken. */
  async #cutBack(failure: Error): Promise<void> {
    try {
      const injected = spoolFaults.truncate?.();
      if (injected) throw injected;
      await this.#handle.truncate(this.#size);
    } catch (error) {
      this.#broken = new SpoolBrokenError(
        new Error(`a failed write (${failure.message}) could not be cut back: ${(error as Error).message}`),
      );
    }
  }

  /** Keeps a durable batch in memory for `peek`, dropping the oldest beyond the memory bound. */
  #remember(batch: Queued[], offset: number): void {
    const limit = this.#options.memoryBytes ?? DEFAULT_MEMORY_BYTES;
    let at = offset;
    for (const { frame } of batch) {
      this.#cache.push({ offset: at, frame });
      this.#cacheBytes += frame.length;
      at += frame.length;
    }
    let excess = this.#cacheBytes - limit;
    this.#forget((cached) => {
      if (excess <= 0) return false;
      excess -= cached.frame.length;
      return true;
    });
  }

  /** Drops records from the front of the memory while `drop` says so (they stay on disk). */
  #forget(drop: (cached: Cached) => boolean): void {
    let count = 0;
    for (const cached of this.#cache) {
      if (!drop(cached)) break;
      this.#cacheBytes -= cached.frame.length;
      count++;
    }
    if (count > 0) this.#cache.splice(0, count);
  }

  async #compact(): Promise<void> {
    const dir = this.#options.dir;
    const next = this.#segment + 1;
    const nextHandle = await openSegment(join(dir, segmentName(next)), true);
    const tail = this.#size - this.#position;
    let renamed = false;
    try {
      if (tail > 0) {
        const buffer = Buffer.alloc(tail);
        await readExactly(this.#handle, buffer, this.#position);
        await writeAll(nextHandle, buffer, 0);
      }
      await nextHandle.datasync();
      await syncDirectory(dir);
      // The switch: before this rename the old segment and position rule, after it the new ones.
      await writePosition(dir, next, 0, () => {
        renamed = true;
      });
    } catch (error) {
      await nextHandle.close().catch(() => {});
      // Failed after the rename (the directory sync): on disk the new segment may rule while this
      // spool goes on appending to the old one, which a reopen would then delete. Point the
      // position back at the old segment, which still holds every pending record; if even that
      // fails, refuse appends, so that nothing accepted depends on which file wins.
      if (renamed)
        await writePosition(dir, this.#segment, this.#position).catch((rewind: Error) => {
          this.#broken ??= new SpoolBrokenError(
            new Error(`a segment switch failed after its rename and could not be undone: ${rewind.message}`),
          );
        });
      // The old segment rules again; the unfinished copy is truncated by the next attempt.
      throw error;
    }
    clearTimeout(this.#positionTimer);
    this.#positionTimer = undefined;
    this.#positionDirty = false;
    const previous = this.#segment;
    await this.#handle.close();
    this.#handle = nextHandle;
    this.#segment = next;
    // The pending tail moved to the start of the new segment; so do the records held in memory.
    for (const cached of this.#cache) cached.offset -= this.#position;
    this.#position = 0;
    this.#size = tail;
    await rm(join(dir, segmentName(previous)), { force: true });
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const idle = this.#exclusiveOps++ === 0;
    // The lock is taken before `fn` starts, so that an exclusive call made from inside it waits.
    const previous = this.#lock;
    let release!: () => void;
    this.#lock = new Promise<void>((resolve) => {
      release = resolve;
    });
    // With nothing running or waiting, the operation starts now rather than a turn of the
    // microtask queue later: an append's disk write is then under way before its caller goes on.
    const run = idle ? startNow(fn) : previous.then(fn);
    const done = () => {
      this.#exclusiveOps--;
      release();
    };
    run.then(done, done);
    return run;
  }
}

/**
 * Opens a segment for reading and durable appending: O_DSYNC makes every write return only once
 * its data is on disk, one system call (and one trip to libuv's thread pool) instead of two.
 */
function openSegment(path: string, truncate: boolean): Promise<FileHandle> {
  const { O_RDWR, O_CREAT, O_APPEND, O_DSYNC, O_TRUNC } = constants;
  return open(path, O_RDWR | O_CREAT | O_APPEND | O_DSYNC | (truncate ? O_TRUNC : 0), 0o600);
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

/** Runs `fn` at once; a synchronous throw becomes a rejection, as inside `then`. */
function startNow<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return fn();
  } catch (error) {
    return Promise.reject(error);
  }
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
  const injected = spoolFaults.write?.();
  if (injected) {
    // As a disk that fails mid-write would: part of the data reaches the file first.
    await handle.write(data, 0, Math.min(data.length, 3), position);
    throw injected;
  }
  let done = 0;
  while (done < data.length) done += await writeAt(handle.fd, data, done, position + done);
}

/**
 * One positioned write through the callback API on the handle's descriptor: on every append's
 * path, and lighter on the event loop than FileHandle.write (no per-call promise machinery of the
 * handle's own; measured ≈ 10 µs of main-thread CPU per write here). The handle does not count a
 * write made on its descriptor, so its close() would not wait for one: what keeps them apart is
 * #exclusive, under which every flush, compaction (which replaces the handle) and close runs.
 */
function writeAt(fd: number, data: Buffer, offset: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    write(fd, data, offset, data.length - offset, position, (error, bytesWritten) => {
      if (error) reject(error);
      else resolve(bytesWritten);
    });
  });
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

/** Replaces the position file atomically; `onRenamed` runs once the new file has replaced it. */
async function writePosition(
  dir: string,
  segment: number,
  offset: number,
  onRenamed?: () => void,
): Promise<void> {
  const temp = join(dir, `${POSITION_FILE}.tmp`);
  const handle = await open(temp, 'w');
  try {
    await handle.writeFile(JSON.stringify({ segment, offset }));
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(temp, join(dir, POSITION_FILE));
  onRenamed?.();
  const injected = spoolFaults.afterPositionRename?.();
  if (injected) throw injected;
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
