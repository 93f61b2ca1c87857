import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogThrottle } from './log-throttle.ts';

test('one line per key per interval, then the count of those held back', () => {
  const throttle = new LogThrottle(1000);
  assert.equal(throttle.admit('agent-a', 0), 0);
  assert.equal(throttle.admit('agent-a', 10), undefined);
  assert.equal(throttle.admit('agent-a', 999), undefined);
  assert.equal(throttle.admit('agent-b', 500), 0, 'each key on its own');
  assert.equal(throttle.admit('agent-a', 1000), 2, 'two held back since the last line');
  assert.equal(throttle.admit('agent-a', 1500), undefined);
});
