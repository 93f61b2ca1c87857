import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { ConfigError, env, loadEnv } from './index.ts';

const schema = z.object({
  PORT: env.port('HTTP port'),
  BROKERS: env.csv('Kafka brokers'),
  SECRET: z.string().min(16).describe('signing secret; no default on purpose'),
});

test('loadEnv parses and coerces', () => {
  const parsed = loadEnv('svc', schema, { PORT: '8080', BROKERS: 'a:1, b:2', SECRET: 'x'.repeat(16) });
  assert.deepEqual(parsed, { PORT: 8080, BROKERS: ['a:1', 'b:2'], SECRET: 'x'.repeat(16) });
});

test('loadEnv reports every problem with the variable and its description', () => {
  assert.throws(
    () => loadEnv('svc', schema, { PORT: '99999', BROKERS: '' }),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 3);
      assert.match(error.message, /PORT: .*\(HTTP port\)/);
      assert.match(error.message, /SECRET: .*signing secret/);
      return true;
    },
  );
});

test('loadEnv never echoes a rejected value, which may be a secret', () => {
  try {
    loadEnv('svc', schema, { PORT: '1', BROKERS: 'a:1', SECRET: 'hunter2' });
    assert.fail('expected a ConfigError');
  } catch (error) {
    assert.doesNotMatch(String(error), /hunter2/);
  }
});
