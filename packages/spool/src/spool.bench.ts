import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closedLoop } from '@portcullis/testing';
import { Spool } from './spool.ts';

// Spool benchmark: durable appends per second and latency at several concurrency levels, beside
// its anchor, the naive way (one write + fdatasync per record on an append-only file), on the
// same disk in the same run. Run: pnpm bench:spool

const print = (...cells: string[]) => process.stdout.write(`${cells.join(' ')}\n`);
const RECORD = Buffer.from(JSON.stringify({ type: 'tool_call.requested', pad: 'x'.repeat(600) }));
const DURATION_MS = 1500;

const drive = (concurrency: number, op: (worker: number) => Promise<unknown>) =>
  closedLoop(concurrency, DURATION_MS, op);

print(
  'concurrency',
  'spool appends/s'.padStart(16),
  'p50 ms'.padStart(8),
  'p99 ms'.padStart(8),
  '|',
  'naive appends/s'.padStart(16),
  'p50 ms'.padStart(8),
  'p99 ms'.padStart(8),
  'ratio'.padStart(7),
);
for (const concurrency of [1, 8, 64]) {
  const dir = await mkdtemp(join(tmpdir(), 'spool-bench-'));
  const { spool } = await Spool.open({ dir, maxBytes: 2 ** 40, maxRecords: 2 ** 40 });
  const ours = await drive(concurrency, () => spool.append(RECORD));
  await spool.close();

  const file = await open(join(dir, 'naive.log'), 'a');
  // The anchor serializes as a naive implementation must: one record, one fsync, in order.
  let chain = Promise.resolve();
  const naive = await drive(concurrency, () => {
    chain = chain.then(async () => {
      await file.write(RECORD);
      await file.datasync();
    });
    return chain;
  });
  await file.close();
  await rm(dir, { recursive: true, force: true });
  print(
    String(concurrency).padStart(11),
    ours.perSecond.toFixed(0).padStart(16),
    ours.p50.toFixed(3).padStart(8),
    ours.p99.toFixed(3).padStart(8),
    '|',
    naive.perSecond.toFixed(0).padStart(16),
    naive.p50.toFixed(3).padStart(8),
    naive.p99.toFixed(3).padStart(8),
    `${(ours.perSecond / naive.perSecond).toFixed(1)}x`.padStart(7),
  );
}
