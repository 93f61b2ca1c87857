import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readEnv } from './env.ts';

const base = { DATABASE_URL: 'postgres://audit@db/portcullis', KAFKA_BROKERS: 'kafka:9092' };

test('an http:// HEC URL is refused unless plain HTTP is allowed explicitly', () => {
  assert.throws(
    () => readEnv({ ...base, SIEM_HEC_URL: 'http://splunk:8088', SIEM_HEC_TOKEN: 'secret' }),
    /SIEM_HEC_URL: http:\/\/ sends the HEC token and the events in clear text/,
  );
  const allowed = readEnv({
    ...base,
    SIEM_HEC_URL: 'http://splunk:8088',
    SIEM_HEC_TOKEN: 'secret',
    SIEM_HEC_ALLOW_HTTP: 'true',
  });
  assert.equal(allowed.SIEM_HEC_ALLOW_HTTP, true);
  assert.equal(
    readEnv({ ...base, SIEM_HEC_URL: 'https://splunk:8088', SIEM_HEC_TOKEN: 'secret' }).SIEM_HEC_ALLOW_HTTP,
    false,
  );
  assert.throws(() => readEnv({ ...base, SIEM_HEC_ALLOW_HTTP: 'perhaps' }), /SIEM_HEC_ALLOW_HTTP/);
});

test('retention under a week and partitions ahead beyond a month are refused', () => {
  assert.throws(() => readEnv({ ...base, RETENTION_DAYS: '3' }), /RETENTION_DAYS/);
  assert.throws(() => readEnv({ ...base, PARTITIONS_AHEAD_DAYS: '40' }), /PARTITIONS_AHEAD_DAYS/);
  assert.equal(readEnv(base).RETENTION_DAYS, 400);
});
