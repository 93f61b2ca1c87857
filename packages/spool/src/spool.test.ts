import assert from 'node:assert/strict';
import {
  appendFile,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rmdir,
  stat,
  writeFile,
} from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { LOCK_FILE, SpoolLockedError } from './ownership.ts';
import { Spool, SpoolBrokenError, SpoolFullError, spoolFaults } from './spool.ts';

const tempDir = () => mkdtemp(join(tmpdir(), 'spool-test-'));
const records = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => Buffer.from(`record-${from + i}`));
const texts = (buffers: Buffer[]) => buffers.map((b) => b.toString('utf8'));
const segmentOf = async (dir: string) => {
  const name = (await readdir(dir)).find((f) => f.startsWith('segment-'));
  assert.ok(name, 'a segment file exists');
  return join(dir, name);
};

test('records come back in append order, and concurrent appends are all durable', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000 });
  await Promise.all(records(200).map((r) => spool.append(r)));
  assert.equal(spool.pendingRecords, 200);
  const batch = await spool.peek(1000);
  assert.deepEqual(texts(batch.records), texts(records(200)));
  await spool.close();

  // A new process sees exactly the same records.
  const reopened = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000 });
  assert.equal(reopened.recovery.pendingRecords, 200);
  assert.deepEqual(texts((await reopened.spool.peek(1000)).records), texts(records(200)));
  await reopened.spool.close();
});

test('an acknowledged prefix is never handed out again, not even after a restart', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 1000 };
  const { spool } = await Spool.open(options);
  for (const r of records(10)) await spool.append(r);
  const first = await spool.peek(4);
  assert.deepEqual(texts(first.records), texts(records(4)));
  await spool.acknowledge(first);
  assert.equal(spool.pendingRecords, 6);
  // A restart without close (as after a crash): the durable position survives.
  const again = await Spool.open(options);
  assert.equal(again.recovery.pendingRecords, 6);
  const rest = await again.spool.peek(100);
  assert.deepEqual(texts(rest.records), texts(records(6, 4)));
  await again.spool.acknowledge(rest);
  assert.equal(again.spool.pendingRecords, 0);
  await again.spool.close();
  await spool.close();

  const third = await Spool.open(options);
  assert.equal(third.recovery.pendingRecords, 0);
  assert.deepEqual((await third.spool.peek(100)).records, []);
  // Fully drained: the space was reclaimed.
  assert.equal((await stat(await segmentOf(dir))).size, 0);
  await third.spool.close();
});

test('a torn last record is cut off on open; the records before it survive', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 1000 };
  const { spool } = await Spool.open(options);
  for (const r of records(3)) await spool.append(r);
  await spool.close();
  const segment = await segmentOf(dir);
  const intact = (await stat(segment)).size;

  // A crash in the middle of writing a fourth record: a header promising more than was written.
  const header = Buffer.alloc(8);
  header.writeUInt32BE(100, 0);
  header.writeUInt32BE(12345, 4);
  await appendFile(segment, Buffer.concat([header, Buffer.from('only part of it')]));
  const torn = await Spool.open(options);
  assert.equal(torn.recovery.pendingRecords, 3);
  assert.equal(torn.recovery.truncatedBytes, 8 + 15);
  assert.equal((await stat(segment)).size, intact);
  // Appends after the repair land right after the last good record.
  await torn.spool.append(Buffer.from('after-repair'));
  assert.deepEqual(texts((await torn.spool.peek(10)).records), [...texts(records(3)), 'after-repair']);
  await torn.spool.close();
});

test('a complete last record with a bad checksum is cut off too', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 1000 };
  const { spool } = await Spool.open(options);
  for (const r of records(2)) await spool.append(r);
  await spool.close();
  const segment = await segmentOf(dir);
  const bytes = await readFile(segment);
  bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1); // corrupt the last payload byte
  await writeFile(segment, bytes);
  const reopened = await Spool.open(options);
  assert.equal(reopened.recovery.pendingRecords, 1);
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), ['record-0']);
  await reopened.spool.close();
});

test('a header cut short is cut off', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 1000 };
  const { spool } = await Spool.open(options);
  await spool.append(Buffer.from('whole'));
  await spool.close();
  const segment = await segmentOf(dir);
  await appendFile(segment, Buffer.from([0, 0, 0]));
  const reopened = await Spool.open(options);
  assert.equal(reopened.recovery.truncatedBytes, 3);
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), ['whole']);
  await reopened.spool.close();
});

test('bounded by records: a full spool refuses appends, keeps what it has, and accepts again once drained', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 3 });
  for (const r of records(3)) await spool.append(r);
  await assert.rejects(spool.append(Buffer.from('one too many')), SpoolFullError);
  assert.equal(spool.pendingRecords, 3);
  const batch = await spool.peek(1);
  await spool.acknowledge(batch);
  await spool.append(Buffer.from('fits again'));
  assert.deepEqual(texts((await spool.peek(10)).records), ['record-1', 'record-2', 'fits again']);
  await spool.close();
});

test('bounded by bytes, counting headers, including appends still queued', async () => {
  const dir = await tempDir();
  // Room for exactly two 10-byte records (8-byte header each).
  const { spool } = await Spool.open({ dir, maxBytes: 36, maxRecords: 100 });
  const results = await Promise.allSettled([0, 1, 2].map((i) => spool.append(Buffer.from(`ten-bytes${i}`))));
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'fulfilled', 'rejected'],
  );
  assert.equal(spool.pendingBytes, 36);
  assert.equal(spool.wouldRefuse(1), true);
  await spool.close();
});

for (const [memory, memoryBytes] of [
  ['all records in memory', undefined],
  ['a few records in memory', 60],
  ['no records in memory', 0],
] as const) {
  test(`compaction under sustained load keeps order and loses nothing across restarts (${memory})`, async () => {
    const dir = await tempDir();
    const options = { dir, maxBytes: 400, maxRecords: 1000, memoryBytes };
    let { spool } = await Spool.open(options);
    const crashed: Spool[] = [];
    const delivered: string[] = [];
    let next = 0;
    for (let round = 0; round < 30; round++) {
      while (!spool.wouldRefuse(12)) await spool.append(Buffer.from(`r-${String(next++).padStart(8, '0')}`));
      const batch = await spool.peek(3);
      delivered.push(...texts(batch.records));
      await spool.acknowledge(batch);
      if (round % 7 === 6) {
        // Restart without close, as a crash would (the old handle is closed only at the end).
        crashed.push(spool);
        ({ spool } = await Spool.open(options));
      }
    }
    const rest = await spool.peek(1000);
    delivered.push(...texts(rest.records));
    await spool.acknowledge(rest);
    assert.deepEqual(
      delivered,
      Array.from({ length: next }, (_, i) => `r-${String(i).padStart(8, '0')}`),
    );
    // One segment and the position file remain.
    assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('segment-')).length, 1);
    await spool.close();
    await Promise.all(crashed.map((s) => s.close().catch(() => {})));
  });
}

test('records still in memory are read from there, not from the file', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000, memoryBytes: 70 });
  for (const r of records(10)) await spool.append(r); // 16 bytes a frame: the last 4 fit in memory
  // Overwrite the file's payload bytes in place, keeping its length: only memory still holds the
  // records as they were appended.
  const segment = await segmentOf(dir);
  const onDisk = await readFile(segment);
  await writeFile(segment, Buffer.from(onDisk.toString('latin1').replaceAll('record-', 'XXXXXX-'), 'latin1'));
  const batch = await spool.peek(100);
  assert.deepEqual(texts(batch.records), [
    ...Array.from({ length: 6 }, (_, i) => `XXXXXX-${i}`),
    ...texts(records(4, 6)),
  ]);
  await spool.close();
});

test('with a drained-compaction delay the file is reclaimed once the spool stays drained', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({
    dir,
    maxBytes: 1 << 20,
    maxRecords: 100,
    drainedCompactionDelayMs: 1000,
  });
  for (const r of records(5)) await spool.append(r);
  await spool.acknowledge(await spool.peek(100));
  const segment = await segmentOf(dir);
  // Drained many times a second, a spool does not create a new file each time...
  assert.ok((await stat(segment)).size > 0);
  for (const r of records(5, 5)) await spool.append(r);
  await spool.acknowledge(await spool.peek(100));
  assert.equal(await segmentOf(dir), segment);
  // ...but reclaims it once traffic pauses, and nothing pending is lost on the way.
  // (A stat may meet the old segment just as the reclaim removes it: look again.)
  await waitUntil(async () => {
    try {
      return (await stat(await segmentOf(dir))).size === 0;
    } catch {
      return false;
    }
  });
  assert.equal(spool.pendingRecords, 0);
  await spool.append(Buffer.from('after'));
  assert.deepEqual(texts((await spool.peek(10)).records), ['after']);
  await spool.close();
  const reopened = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 100 });
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), ['after']);
  await reopened.spool.close();
});

test('with a position-sync delay, acknowledging is in memory at once and on disk soon after', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 100, positionSyncDelayMs: 1500 };
  const { spool } = await Spool.open(options);
  for (const r of records(6)) await spool.append(r);
  const first = await spool.peek(4);
  await spool.acknowledge(first);
  assert.equal(spool.pendingRecords, 2);
  assert.deepEqual(texts((await spool.peek(10)).records), texts(records(2, 4)));
  // A crash before the position reached the disk hands those records out again: at-least-once.
  const early = await Spool.open(options);
  assert.equal(early.recovery.pendingRecords, 6);
  await early.spool.close();
  // Once it has (read from the file: reopening would race the live spool's write of it), they are
  // never handed out again.
  const storedOffset = async () =>
    (JSON.parse(await readFile(join(dir, 'position.json'), 'utf8')) as { offset: number }).offset;
  await waitUntil(async () => (await storedOffset()) === first.end);
  const afterCrash = await Spool.open(options);
  assert.equal(afterCrash.recovery.pendingRecords, 2);
  await afterCrash.spool.close();
  // close() writes a position still waiting.
  await spool.acknowledge(await spool.peek(1));
  await spool.close();
  const reopened = await Spool.open(options);
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), texts(records(1, 5)));
  await reopened.spool.close();
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test('a crash in the middle of compaction leaves a consistent spool', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 100 };
  const { spool } = await Spool.open(options);
  for (const r of records(5)) await spool.append(r);
  await spool.close();
  // A half-written next segment (its position switch never happened) must be ignored.
  await writeFile(join(dir, 'segment-000000000002.log'), Buffer.from('garbage from an unfinished copy'));
  const reopened = await Spool.open(options);
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), texts(records(5)));
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('segment-')).length, 1);
  await reopened.spool.close();
});

test('a compaction that fails before its switch closes the new segment and keeps the old one', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 100 });
  for (const r of records(3)) await spool.append(r);
  // The position file cannot be written: the switch to the next segment fails.
  await mkdir(join(dir, 'position.json.tmp'));
  await assert.rejects(spool.acknowledge(await spool.peek(10)));
  const open = await Promise.all(
    (await readdir('/proc/self/fd')).map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => '')),
  );
  assert.deepEqual(
    open.filter((target) => target.startsWith(dir) && target.includes('segment-000000000002')),
    [],
    'the next segment is closed',
  );
  await rmdir(join(dir, 'position.json.tmp'));
  await spool.append(Buffer.from('after'));
  await spool.close();
  // On disk the acknowledgement never happened: the records come back (at least once), none lost.
  const reopened = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 100 });
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), [...texts(records(3)), 'after']);
  await reopened.spool.close();
});

test('a compaction that fails after its rename points the position back at the old segment', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 100 };
  const { spool } = await Spool.open(options);
  for (const r of records(3)) await spool.append(r);
  // Acknowledging everything drains the spool, which compacts it into the next segment.
  const batch = await spool.peek(10);
  // The directory sync after the rename fails: the rename happened, whether it lasts is unknown.
  spoolFaults.afterPositionRename = () => {
    spoolFaults.afterPositionRename = undefined; // once: the rewind's own sync succeeds
    return new Error('EIO: directory sync failed');
  };
  try {
    await assert.rejects(spool.acknowledge(batch), /directory sync failed/);
  } finally {
    spoolFaults.afterPositionRename = undefined;
  }
  // Appends still go to the old segment, and the position on disk names it again.
  await spool.append(Buffer.from('after'));
  assert.deepEqual(JSON.parse(await readFile(join(dir, 'position.json'), 'utf8')).segment, 1);
  await spool.close();
  // The record accepted after the failed switch is there (without the rewind, the reopen would
  // follow the renamed position to the new segment and delete the old one, and the record with it).
  const reopened = await Spool.open(options);
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), ['after']);
  await reopened.spool.close();
});

test('a failed write that cannot be cut back refuses every later append; a reopen repairs it', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 100 };
  const { spool } = await Spool.open(options);
  for (const r of records(2)) await spool.append(r);
  spoolFaults.write = () => new Error('EIO: write failed');
  spoolFaults.truncate = () => new Error('EIO: truncate failed');
  try {
    await assert.rejects(spool.append(Buffer.from('torn')), /write failed/);
  } finally {
    spoolFaults.write = undefined;
    spoolFaults.truncate = undefined;
  }
  // Torn bytes sit past the end the spool knows: an append now would land after them.
  await assert.rejects(spool.append(Buffer.from('refused')), SpoolBrokenError);
  await spool.close();
  const reopened = await Spool.open(options);
  assert.ok(reopened.recovery.truncatedBytes > 0, 'the torn bytes are cut on reopen');
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), texts(records(2)));
  await reopened.spool.append(Buffer.from('after'));
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), [...texts(records(2)), 'after']);
  await reopened.spool.close();
});

test('a failed write that is cut back leaves the spool usable', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 100 };
  const { spool } = await Spool.open(options);
  await spool.append(Buffer.from('before'));
  spoolFaults.write = () => new Error('ENOSPC: no space left');
  try {
    await assert.rejects(spool.append(Buffer.from('lost')), /no space left/);
  } finally {
    spoolFaults.write = undefined;
  }
  await spool.append(Buffer.from('after'));
  await spool.close();
  const reopened = await Spool.open(options);
  assert.equal(reopened.recovery.truncatedBytes, 0);
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), ['before', 'after']);
  await reopened.spool.close();
});

test('a spool directory belongs to one process: a live owner or another host refuses the open', async () => {
  const dir = await tempDir();
  const options = { dir, maxBytes: 1 << 20, maxRecords: 100 };
  const lock = join(dir, LOCK_FILE);
  const owner = (pid: number, host = hostname()) =>
    writeFile(lock, JSON.stringify({ pid, host, since: '2026-11-29T00:00:00.000Z' }));
  await mkdir(dir, { recursive: true });
  // A live process on this host (the test runner's parent) holds it.
  await owner(process.ppid);
  await assert.rejects(Spool.open(options), (error: unknown) => {
    assert.ok(error instanceof SpoolLockedError);
    assert.match(error.message, new RegExp(`pid ${process.ppid} on ${hostname()}.*delete ${lock}`));
    return true;
  });
  // Another host: its processes cannot be checked from here.
  await owner(process.pid, 'another-node');
  await assert.rejects(Spool.open(options), SpoolLockedError);
  // A process that is gone: taken over, and the lock names this process until it closes.
  await owner(2 ** 22 + 17);
  const { spool } = await Spool.open(options);
  assert.equal(JSON.parse(await readFile(lock, 'utf8')).pid, process.pid);
  await spool.append(Buffer.from('mine'));
  await spool.close();
  await assert.rejects(readFile(lock), /ENOENT/);
});

test('bounds that cannot hold a single record are refused up front', async () => {
  await assert.rejects(Spool.open({ dir: await tempDir(), maxBytes: 8, maxRecords: 10 }), RangeError);
  await assert.rejects(Spool.open({ dir: await tempDir(), maxBytes: 100, maxRecords: 0 }), RangeError);
});

test('the segment shrinks back on disk once drained', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 100 });
  for (const r of records(50)) await spool.append(r);
  await spool.acknowledge(await spool.peek(100));
  assert.equal((await stat(await segmentOf(dir))).size, 0);
  await spool.close();
});

test('a deferred append waits for the next urgent one and shares its write', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000 });
  let deferredDurable = false;
  const deferred = spool.append(Buffer.from('outcome-1'), { deferMs: 60_000 }).then(() => {
    deferredDurable = true;
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(deferredDurable, false, 'a deferred record alone is not written at once');
  assert.equal((await stat(await segmentOf(dir))).size, 0);
  // The next urgent append takes it along, in order, long before its deadline.
  await spool.append(Buffer.from('request-2'));
  await deferred;
  assert.deepEqual(texts((await spool.peek(10)).records), ['outcome-1', 'request-2']);
  await spool.close();
});

test('a deferred append is written by its deadline when nothing else comes', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000 });
  const started = performance.now();
  await spool.append(Buffer.from('outcome-1'), { deferMs: 30 });
  assert.ok(performance.now() - started >= 25, 'it waited for company first');
  assert.equal(spool.pendingRecords, 1);
  // Durable: a new process finds it.
  const reopened = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000 });
  assert.equal(reopened.recovery.pendingRecords, 1);
  await reopened.spool.close();
  await spool.close();
});

test('close writes deferred records without waiting for their deadline', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000 });
  const deferred = spool.append(Buffer.from('outcome-1'), { deferMs: 60_000 });
  const started = performance.now();
  await spool.close();
  await deferred;
  assert.ok(performance.now() - started < 10_000);
  const reopened = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000 });
  assert.equal(reopened.recovery.pendingRecords, 1);
  assert.deepEqual(texts((await reopened.spool.peek(10)).records), ['outcome-1']);
  await reopened.spool.close();
});

test('a deferred append with a shorter delay brings the shared write forward', async () => {
  const dir = await tempDir();
  const { spool } = await Spool.open({ dir, maxBytes: 1 << 20, maxRecords: 1000 });
  const started = performance.now();
  const patient = spool.append(Buffer.from('patient'), { deferMs: 60_000 });
  await spool.append(Buffer.from('hurried'), { deferMs: 20 });
  await patient;
  assert.ok(performance.now() - started < 5_000, 'written by the earliest deadline');
  assert.deepEqual(texts((await spool.peek(10)).records), ['patient', 'hurried']);
  await spool.close();
});
