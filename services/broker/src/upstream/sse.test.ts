import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type SseEvent, SseParser, SseTooLargeError } from './sse.ts';

const parse = (chunks: (string | Buffer)[], max = 1024) => {
  const events: SseEvent[] = [];
  const parser = new SseParser(max, (event) => events.push(event));
  for (const chunk of chunks) parser.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  parser.end();
  return { events, parser };
};

test('multi-line data, ids, event types, comments and retry', () => {
  const { events, parser } = parse([
    ': keep-alive\n',
    'id: 1\nevent: message\ndata: {"a":\ndata: 1}\n\n',
    'retry: 250\nid: 2\ndata:x\n\n',
  ]);
  assert.deepEqual(events, [
    { data: '{"a":\n1}', id: '1', event: 'message' },
    { data: 'x', id: '2', event: undefined },
  ]);
  assert.equal(parser.lastEventId, '2');
  assert.equal(parser.retryMs, 250);
});

test('CR, LF and CRLF line ends, split anywhere across chunks, and a UTF-8 character split in two', () => {
  const euro = Buffer.from('data: €\r\n\r\n');
  const { events } = parse([
    'data: a\r',
    '\n\r',
    '\ndata: b\rdata: c\r\r',
    euro.subarray(0, 8),
    euro.subarray(8),
  ]);
  assert.deepEqual(
    events.map((event) => event.data),
    ['a', 'b\nc', '€'],
  );
});

test('a priming event (id, empty data) updates the last id; an unterminated event is dropped', () => {
  const { events, parser } = parse(['\uFEFFid: prime\ndata: \n\n', 'data: never finished']);
  assert.deepEqual(events, [{ data: '', id: 'prime', event: undefined }]);
  assert.equal(parser.lastEventId, 'prime');
});

test('an event over the bound throws, whether in one line or many', () => {
  assert.throws(() => parse([`data: ${'x'.repeat(2000)}\n\n`]), SseTooLargeError);
  assert.throws(() => parse([`data: ${'x'.repeat(2000)}`]), SseTooLargeError);
  assert.throws(() => parse(Array.from({ length: 50 }, () => `data: ${'x'.repeat(40)}\n`)), SseTooLargeError);
});

test('a chunk of many short lines is parsed in linear time (an upstream cannot stall the loop)', () => {
  // 1 MiB of blank lines, then the same with CRLF and CR ends: searching both line ends from every
  // line start made this quadratic (about 11 s for the LF case before, about 10 ms now).
  for (const end of ['\n', '\r\n', '\r']) {
    const chunk = Buffer.from(end.repeat((1024 * 1024) / end.length));
    const parser = new SseParser(1024, () => {});
    const started = performance.now();
    parser.push(chunk);
    parser.push(Buffer.from('data: x\n\n'));
    const elapsedMs = performance.now() - started;
    // Loose: far above the linear figure, far below the quadratic one.
    assert.ok(elapsedMs < 1000, `${JSON.stringify(end)} lines took ${Math.round(elapsedMs)} ms`);
  }
});
