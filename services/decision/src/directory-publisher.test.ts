import assert from 'node:assert/strict';
import { test } from 'node:test';
import { chunkMessages } from './directory-publisher.ts';

test('a large publication goes out in sends under the byte bound, in order, nothing lost', () => {
  // About 7 MB: what a first publication of the benchmark's 10,000 agents takes.
  const messages = Array.from({ length: 10_000 }, (_, i) => ({
    key: `agent:${i}`,
    value: JSON.stringify({ grants: 'x'.repeat(700), i }),
  }));
  const chunks = chunkMessages(messages, 512 * 1024);
  assert.ok(chunks.length > 10, `${chunks.length} sends`);
  for (const chunk of chunks) {
    const bytes = chunk.reduce((sum, m) => sum + String(m.key).length + String(m.value).length + 64, 0);
    assert.ok(bytes <= 512 * 1024, `a send of ${bytes} bytes`);
  }
  assert.deepEqual(chunks.flat(), messages);
});

test('tombstones count, and a single message over the bound still goes (alone)', () => {
  const big = { key: 'agent:big', value: 'y'.repeat(2000) };
  const chunks = chunkMessages([{ key: 'a', value: null }, big, { key: 'b', value: 'z' }], 1000);
  assert.deepEqual(chunks, [[{ key: 'a', value: null }], [big], [{ key: 'b', value: 'z' }]]);
});
