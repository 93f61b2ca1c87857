import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { createLogger } from '@portcullis/runtime';
import { CREDENTIAL_REDACT_PATHS } from './redaction.ts';

function capture() {
  const stream = new PassThrough();
  const lines: string[] = [];
  stream.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').trim().split('\n')));
  const logger = createLogger({
    service: 'credential',
    level: 'info',
    redact: CREDENTIAL_REDACT_PATHS,
    destination: stream,
  });
  return { logger, text: () => lines.join('\n') };
}

const SECRET = 'sk-live-0123456789abcdef';

test('secret material never reaches the credential service log', () => {
  const { logger, text } = capture();
  logger.info({ plaintext: SECRET, dataKey: SECRET, clientSecret: SECRET }, 'top level');
  logger.info(
    { lease: { accessToken: SECRET, refreshToken: SECRET, wrappedDataKey: SECRET, ciphertext: SECRET } },
    'nested',
  );
  logger.info({ req: { headers: { authorization: `Bearer ${SECRET}` } } }, 'request');
  logger.info({ config: { password: SECRET, DATABASE_URL: `postgres://u:${SECRET}@h/db` } }, 'config');
  assert.doesNotMatch(text(), new RegExp(SECRET));
  assert.equal(text().match(/\[redacted\]/g)?.length, 10);
});

test('non-secret fields stay readable', () => {
  const { logger, text } = capture();
  logger.info({ lease: { id: 'lease-1', appId: 'github' } }, 'lease issued');
  assert.match(text(), /"id":"lease-1"/);
  assert.match(text(), /"appId":"github"/);
});
