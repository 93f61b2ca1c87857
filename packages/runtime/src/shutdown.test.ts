import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { Health } from './health.ts';
import { createLogger } from './logger.ts';
import { ShutdownManager } from './shutdown.ts';

function setup(drainDelayMs = 0) {
  const health = new Health();
  health.markStarted();
  const logger = createLogger({ service: 't', level: 'silent', destination: new PassThrough() });
  const exits: number[] = [];
  const manager = new ShutdownManager({
    logger,
    health,
    drainDelayMs,
    timeoutMs: 5000,
    exit: (c) => exits.push(c),
  });
  return { health, manager, exits };
}

test('phases run in order whatever the registration order, and readiness drops first', async () => {
  const { health, manager, exits } = setup(50);
  const order: string[] = [];
  manager.add('close', 'pool', () => void order.push('close'));
  manager.add('flush', 'producer', () => void order.push('flush'));
  manager.add('stop-intake', 'http', async () => {
    order.push(`stop-intake (ready=${(await health.readiness()).ready})`);
  });
  manager.add('drain', 'work', () => void order.push('drain'));
  const running = manager.shutdown('test');
  assert.equal((await health.readiness()).status, 'shutting_down');
  assert.equal(await running, 0);
  assert.deepEqual(order, ['stop-intake (ready=false)', 'drain', 'flush', 'close']);
  assert.deepEqual(exits, [0]);
});

test('shutdown is idempotent: a second signal does not run the steps again', async () => {
  const { manager, exits } = setup();
  let runs = 0;
  manager.add('close', 'count', () => void runs++);
  await Promise.all([manager.shutdown('SIGTERM'), manager.shutdown('SIGINT')]);
  assert.equal(runs, 1);
  assert.deepEqual(exits, [0]);
});

test('a failing step does not stop later steps, and the exit code says it failed', async () => {
  const { manager, exits } = setup();
  let closed = false;
  manager.add('flush', 'broken', () => {
    throw new Error('boom');
  });
  manager.add('close', 'pool', () => {
    closed = true;
  });
  assert.equal(await manager.shutdown('test'), 1);
  assert.equal(closed, true);
  assert.deepEqual(exits, [1]);
});

test('readiness: starting, ready, degraded by a failing check', async () => {
  const health = new Health();
  assert.equal((await health.readiness()).status, 'starting');
  health.markStarted();
  assert.equal((await health.readiness()).ready, true);
  health.addCheck('db', async () => {
    throw new Error('connection refused');
  });
  const readiness = await health.readiness();
  assert.equal(readiness.ready, false);
  assert.equal(readiness.checks.db, 'connection refused');
});
