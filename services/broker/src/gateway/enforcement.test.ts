import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AuditEvent } from '@portcullis/contracts';
import { endsOnRecord, type Operation } from './enforcement.ts';
import { enforcementOverSpool, readerOfDemo } from './test-support.ts';

// A call whose handling throws after its admission (a bug path) still ends on record, through the
// real policy and audit sink (test-support.ts). How the gateway's handlers use it: methods.test.ts.

const read: Operation = { appId: 'demo', tool: 'lookup', actionClass: 'read', arguments: { q: 'x' } };

test('a call whose handling throws after admission is recorded as ended, once', async () => {
  const { enforcement, spooled, close } = await enforcementOverSpool();
  try {
    const cleared = await enforcement.judge(readerOfDemo, read);
    assert.ok('admitted' in cleared);
    await assert.rejects(
      endsOnRecord(cleared.admitted, 'failed', async () => {
        throw new TypeError('a bug after the upstream answered');
      }),
      TypeError,
    );
    // A later report of the same call (a handler that finished after all) changes nothing.
    (await cleared.admitted).finish('succeeded');
    const events = await spooled();
    assert.deepEqual(
      events.map((event) => [event.type, 'outcome' in event ? event.outcome : undefined]),
      [
        ['tool_call.requested', undefined],
        ['tool_call.completed', 'failed'],
      ],
    );
    const outcome = events[1] as Extract<AuditEvent, { type: 'tool_call.completed' }>;
    assert.equal(outcome.error?.code, 'internal_error');
  } finally {
    await close();
  }
});
