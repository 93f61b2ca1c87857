import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { seededRandom } from '@portcullis/testing';
import { type DetectorType, luhnValid, scanText } from './detectors.ts';
import { fakes } from './fixtures.ts';
import { countByType, DlpLimitError, scanJson } from './scan.ts';

const typesIn = (text: string) => scanText(text).map((f) => f.type);

describe('true positives, each inside ordinary text', () => {
  const cases: [string, DetectorType][] = [
    [fakes.awsAccessKey, 'aws_access_key'],
    [fakes.gcpApiKey, 'gcp_api_key'],
    [fakes.githubToken, 'github_token'],
    [fakes.githubFineGrained, 'github_token'],
    [fakes.gitlabToken, 'gitlab_token'],
    [fakes.slackToken, 'slack_token'],
    [fakes.slackWebhook, 'slack_webhook'],
    [fakes.stripeKey, 'stripe_key'],
    [fakes.privateKey, 'private_key'],
    [fakes.jwt, 'jwt'],
    [fakes.email, 'email'],
    [fakes.visa, 'payment_card'],
    [fakes.visaSpaced, 'payment_card'],
    [fakes.amexGrouped, 'payment_card'],
    [fakes.mastercard, 'payment_card'],
    [fakes.ssn, 'us_ssn'],
    [fakes.nino, 'uk_nino'],
    [fakes.ninoCompact, 'uk_nino'],
  ];
  for (const [secret, type] of cases) {
    test(type, () => {
      const text = `Here it is: ${secret}. Keep it safe.`;
      const found = scanText(text);
      assert.deepEqual(
        found.map((f) => f.type),
        [type],
      );
      assert.equal(text.slice(found[0]!.start, found[0]!.end), secret, 'the span covers exactly the secret');
    });
  }

  test('an AWS secret key next to its name, in config text and in JSON', () => {
    for (const text of [
      `aws_secret_access_key = ${fakes.awsSecretKey}`,
      `{"SecretAccessKey": "${fakes.awsSecretKey}"}`,
      `export AWS_SECRET_ACCESS_KEY="${fakes.awsSecretKey}"`,
    ]) {
      const found = scanText(text);
      assert.deepEqual(
        found.map((f) => f.type),
        ['aws_secret_key'],
        text,
      );
      assert.equal(text.slice(found[0]!.start, found[0]!.end), fakes.awsSecretKey);
    }
  });

  test('a GCP service-account key file: key id and private key', () => {
    const file = JSON.stringify({
      type: 'service_account',
      private_key_id: fakes.gcpKeyId,
      private_key: fakes.privateKey,
      client_email: 'robot@project.iam.gserviceaccount.com',
    });
    assert.deepEqual(typesIn(file).sort(), ['email', 'gcp_service_account_key', 'private_key']);
  });
});

describe('secrets and personal data hidden in base64', () => {
  const encoded = (text: string, encoding: 'base64' | 'base64url' = 'base64') =>
    Buffer.from(text, 'utf8').toString(encoding);

  test('an AWS key pair in a base64-encoded config: the whole encoded run is the finding', () => {
    const config = `[default]\naws_access_key_id = ${fakes.awsAccessKey}\naws_secret_access_key = ${fakes.awsSecretKey}\n`;
    for (const encoding of ['base64', 'base64url'] as const) {
      const run = encoded(config, encoding);
      const text = `credentials: ${run} (mounted from the secret)`;
      const found = scanText(text);
      assert.equal(found.length, 1, encoding);
      assert.equal(found[0]!.type, 'aws_access_key');
      assert.equal(text.slice(found[0]!.start, found[0]!.end), run);
    }
  });

  test('a token, an e-mail address and a card number, each encoded on its own', () => {
    assert.deepEqual(typesIn(`token=${encoded(fakes.githubToken)}`), ['github_token']);
    assert.deepEqual(typesIn(encoded(`contact: ${fakes.email}`)), ['email']);
    assert.deepEqual(typesIn(`card ${encoded(`pan ${fakes.visa} exp 12/29`)}`), ['payment_card']);
  });

  test('encoded text with nothing in it, binary data, and runs too short to hold a secret', () => {
    assert.deepEqual(typesIn(encoded('The quarterly report is ready for review.')), []);
    assert.deepEqual(
      typesIn(Buffer.from([0, 1, 2, 255, 254, 253, ...Buffer.from(fakes.awsAccessKey)]).toString('base64')),
      [],
    );
    // 15 bytes encode to 20 characters: below the 24 a run needs to be decoded.
    assert.deepEqual(typesIn(encoded('a@b.co x@y.io z')), []);
  });

  test('200 KB of encoded runs, each holding an address: all found, in linear time', () => {
    const run = encoded('reach me at dora@example.com ok');
    const text = `${run} `.repeat(Math.ceil(200_000 / (run.length + 1)));
    const started = performance.now();
    const found = scanText(text);
    const elapsed = performance.now() - started;
    assert.equal(found.length, Math.ceil(200_000 / (run.length + 1)));
    assert.ok(elapsed < 2000, `took ${elapsed} ms`); // loose: 40–55 ms here
  });

  test('an encoded secret redacted in a tool result: the agent sees the marker, not the run', () => {
    const run = encoded(`password reset for ${fakes.email}`);
    const result = scanJson({ content: [{ type: 'text', text: `payload ${run}` }] }, 'redact');
    assert.deepEqual(result.value, { content: [{ type: 'text', text: 'payload [REDACTED:email]' }] });
  });
});

describe('tricky negatives', () => {
  const negatives: [string, string][] = [
    ['16 digits failing Luhn', '4111111111111112'],
    ['Luhn-valid digits of no card network', '0000000000000000'],
    ['a UUID', '123e4567-e89b-12d3-a456-426614174000'],
    ['an all-digit UUID', '12345678-1234-1234-1234-123456789012'],
    ['a SHA-256 hex digest', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'],
    ['a SHA-1 hex digest', 'da39a3ee5e6b4b0d3255bfef95601890afd80709'],
    ['a Unix timestamp in ms', '1764300000000'],
    ['an ISO date', '2026-11-28T13:23:46Z'],
    ['SSN area 000', '000-12-3456'],
    ['SSN area 666', '666-12-3456'],
    ['SSN area 9xx', '912-12-3456'],
    ['SSN group 00', '123-00-4567'],
    ['SSN serial 0000', '123-45-0000'],
    ['NINO with a disallowed prefix', 'BG123456A'],
    ['NINO with a disallowed first letter', 'QQ123456C'],
    ['NINO with a bad suffix', 'AB123456E'],
    ['an e-mail without a top-level domain', 'root@localhost'],
    ['a handle', 'ping @dora about it'],
    ['a Stripe publishable key', `pk_live_${'a'.repeat(24)}`],
    ['a public key', '-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----'],
    ['a JWT-shaped string whose header names no algorithm', `eyJ0eXAiOiJ4In0.eyJzdWIiOiJ4In0.c2ln`],
    ['an AWS-like id inside a longer word', `X${fakes.awsAccessKey}`],
    ['a 40-character base64 string with no name', 'wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEYab'],
    ['a card number glued into a word', `order${fakes.visa}x`],
  ];
  for (const [what, text] of negatives) {
    test(what, () => assert.deepEqual(typesIn(text), [], text));
  }

  test('random base64 and hex blobs produce no findings (seeded property test)', () => {
    const next = seededRandom(42);
    const alphabets = {
      base64: 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/',
      hex: '0123456789abcdef',
    };
    for (const [name, alphabet] of Object.entries(alphabets)) {
      for (let round = 0; round < 200; round++) {
        const length = 16 + Math.floor(next() * 2048);
        let blob = '';
        for (let i = 0; i < length; i++) blob += alphabet[Math.floor(next() * alphabet.length)];
        assert.deepEqual(typesIn(blob), [], `${name} round ${round}`);
      }
    }
  });
});

describe('Luhn', () => {
  test('valid and invalid numbers; every single-digit change is caught', () => {
    assert.equal(luhnValid('79927398713'), true);
    assert.equal(luhnValid('79927398710'), false);
    const next = seededRandom(7);
    for (let round = 0; round < 200; round++) {
      const base = fakes.visa.split('');
      const i = Math.floor(next() * base.length);
      const d = (Number(base[i]) + 1 + Math.floor(next() * 9)) % 10;
      base[i] = String(d);
      assert.equal(luhnValid(base.join('')), false, base.join(''));
    }
  });
});

describe('deep JSON scanning', () => {
  const result = {
    content: [
      { type: 'text', text: `Your key is ${fakes.awsAccessKey} and mail goes to ${fakes.email}` },
      { type: 'text', text: 'nothing here' },
    ],
    structuredContent: {
      credentials: { aws: { accessKeyId: fakes.awsAccessKey, secretAccessKey: fakes.awsSecretKey } },
      [`owner:${fakes.email}`]: 'a key that leaks',
      'a/b~c': [[{ card: Number(fakes.visa) }]],
    },
  };

  test('redact mode replaces every finding with a typed placeholder, in values and keys', () => {
    const { value, findings } = scanJson(result, 'redact');
    assert.equal(
      value.content[0]?.text,
      'Your key is [REDACTED:aws_access_key] and mail goes to [REDACTED:email]',
    );
    assert.equal(value.content[1]?.text, 'nothing here');
    const structured = value.structuredContent as Record<string, unknown>;
    assert.deepEqual(structured.credentials, {
      aws: { accessKeyId: '[REDACTED:aws_access_key]', secretAccessKey: '[REDACTED:aws_secret_key]' },
    });
    assert.equal(structured['owner:[REDACTED:email]'], 'a key that leaks');
    assert.deepEqual(structured['a/b~c'], [[{ card: '[REDACTED:payment_card]' }]]);
    assert.deepEqual(countByType(findings), {
      aws_access_key: 2,
      email: 2,
      aws_secret_key: 1,
      payment_card: 1,
    });
    // Paths are JSON Pointers, escaped per RFC 6901.
    assert.ok(findings.some((f) => f.path === '/structuredContent/a~1b~0c/0/0/card'));
    assert.ok(findings.some((f) => f.path === '/structuredContent' && f.in === 'key'));
  });

  test('redaction never mutates the input', () => {
    const before = JSON.stringify(result);
    scanJson(result, 'redact');
    assert.equal(JSON.stringify(result), before);
  });

  test('block mode reports findings and returns the value untouched', () => {
    const { value, findings } = scanJson(result, 'block');
    assert.equal(value, result);
    assert.equal(findings.length, 6);
  });

  test('findings never contain the secret itself', () => {
    const { findings } = scanJson(result, 'block');
    const serialized = JSON.stringify(findings);
    for (const secret of [fakes.awsAccessKey, fakes.awsSecretKey, fakes.email, fakes.visa]) {
      assert.equal(serialized.includes(secret), false);
    }
  });

  test('a value without findings comes back as the same object (no copy on the hot path)', () => {
    const clean = { content: [{ type: 'text', text: 'all fine' }], n: 12 };
    assert.equal(scanJson(clean, 'redact').value, clean);
  });

  test('hostile nesting is refused rather than overflowing the stack', () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 1000; i++) deep = [deep];
    assert.throws(() => scanJson(deep, 'redact'), RangeError);
  });

  test('a kinds filter reports and redacts only those kinds', () => {
    const value = {
      note: `mail ${fakes.email} key ${fakes.awsAccessKey}`,
      aws_secret_access_key: fakes.awsSecretKey,
    };
    const secrets = scanJson(value, 'redact', { kinds: new Set(['secret'] as const) });
    assert.deepEqual(countByType(secrets.findings), { aws_access_key: 1, aws_secret_key: 1 });
    assert.equal(secrets.value.note, `mail ${fakes.email} key [REDACTED:aws_access_key]`);
    const personal = scanJson(value, 'redact', { kinds: new Set(['personal_data'] as const) });
    assert.deepEqual(countByType(personal.findings), { email: 1 });
    assert.equal(personal.value.aws_secret_access_key, fakes.awsSecretKey);
    assert.equal(scanJson(value, 'block', { kinds: new Set() }).findings.length, 0);
  });

  test('a size bound stops the scan with a typed error instead of scanning on', () => {
    const big = { a: 'x'.repeat(600), b: ['y'.repeat(600)] };
    assert.equal(scanJson(big, 'block', { maxChars: 1300 }).findings.length, 0);
    assert.throws(
      () => scanJson(big, 'block', { maxChars: 1000 }),
      (error: unknown) => error instanceof DlpLimitError && error.limit === 'size',
    );
    let deep: unknown = 'x';
    for (let i = 0; i < 300; i++) deep = { d: deep };
    assert.throws(
      () => scanJson(deep, 'block'),
      (error: unknown) => error instanceof DlpLimitError && error.limit === 'depth',
    );
  });

  test('two keys that redact to the same placeholder both survive', () => {
    const { value } = scanJson({ [fakes.email]: 1, 'other@example.org': 2 }, 'redact');
    assert.deepEqual(Object.values(value).sort(), [1, 2]);
  });
});

test('scanning stays linear on adversarial input (no catastrophic backtracking)', () => {
  const inputs = [
    'a'.repeat(200_000),
    `${'a'.repeat(100_000)}@`,
    '1'.repeat(200_000),
    `${'1234 '.repeat(40_000)}`,
    `-----BEGIN RSA PRIVATE KEY-----${'A'.repeat(200_000)}`,
    `eyJ${'A'.repeat(200_000)}`,
    `secret_key=${'A'.repeat(200_000)}`,
  ];
  for (const input of inputs) {
    const started = performance.now();
    scanText(input);
    const elapsed = performance.now() - started;
    // Loose bound: a quadratic pattern would take seconds on 200 KB.
    assert.ok(elapsed < 500, `${input.slice(0, 20)}…: ${elapsed} ms`);
  }
});

describe('a secret inside something else that is found', () => {
  const inUrl = `git clone https://${fakes.githubToken}@github.com/acme/repo.git`;
  const glued = `alice@example.com.${fakes.githubToken}`;

  test('a token in a URL with credentials is a secret, even when only secrets are looked for', () => {
    // The address-shaped span (`//ghp_…@github.com`) starts first; the token must not be lost to it.
    assert.deepEqual(
      scanText(inUrl, new Set(['secret'] as const)).map((f) => f.type),
      ['github_token'],
    );
    assert.deepEqual(new Set(typesIn(inUrl)), new Set(['github_token', 'email']));
    const { findings } = scanJson({ command: inUrl }, 'block', { kinds: new Set(['secret'] as const) });
    assert.deepEqual(
      findings.map((f) => f.type),
      ['github_token'],
    );
  });

  test('overlapping findings are redacted as one span, named by the secret, leaving nothing of either', () => {
    for (const text of [inUrl, glued, `${fakes.awsAccessKey}@example.com`]) {
      const { value } = scanJson({ text }, 'redact');
      const redacted = (value as { text: string }).text;
      assert.ok(!redacted.includes(fakes.githubToken.slice(4, 14)), redacted);
      assert.ok(!redacted.includes(fakes.awsAccessKey.slice(4)), redacted);
      assert.ok(!/\[REDACTED:email\]/.test(redacted) || !redacted.includes('ghp_'), redacted);
    }
    const { value } = scanJson({ text: inUrl }, 'redact');
    assert.equal((value as { text: string }).text, 'git clone https:[REDACTED:github_token]/acme/repo.git');
  });
});

test('an encrypted PEM key is redacted whole, headers with dashes and all', () => {
  const body = 'MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0';
  const key = [
    '-----BEGIN RSA PRIVATE KEY-----',
    'Proc-Type: 4,ENCRYPTED',
    'DEK-Info: AES-128-CBC,3F17F5316E2BAC89B0B9F5D6C2E4E1A0',
    '',
    body,
    '-----END RSA PRIVATE KEY-----',
  ].join('\n');
  const { value } = scanJson({ text: `key:\n${key}\nend` }, 'redact');
  assert.equal((value as { text: string }).text, 'key:\n[REDACTED:private_key]\nend');
});

test('an AWS secret key is found under the secret_key spelling too', () => {
  const secret = ['wJalrXUtnFEMI/K7MDENG/', 'bPxRfiCYEXAMPLEKEY'].join('');
  for (const name of ['secret_key', 'secretKey', 'aws_secret_access_key', 'SecretAccessKey']) {
    const { findings } = scanJson({ access_key: fakes.awsAccessKey, [name]: secret }, 'block');
    assert.deepEqual(findings.map((f) => f.type).sort(), ['aws_access_key', 'aws_secret_key'], name);
  }
});

describe('base64 runs that are text, however long or however encoded', () => {
  const encode = (text: string | Buffer) => Buffer.from(text).toString('base64');
  const found = (text: string) => scanText(text).map((f) => f.type);

  test('a run over a mebibyte (a log file in a resource blob) is decoded and scanned', () => {
    const log = `${'2026-11-29 10:00:00 INFO request served in 3 ms\n'.repeat(30_000)}key=${fakes.awsAccessKey}\n`;
    const blob = encode(log);
    assert.ok(blob.length > 1 << 20);
    assert.deepEqual(found(blob), ['aws_access_key']);
  });

  test('terminal colours and a Latin-1 export do not hide what they hold', () => {
    assert.deepEqual(found(encode(`\u001b[32mok\u001b[0m token ${fakes.githubToken}\n`)), ['github_token']);
    const latin1 = Buffer.from(`name;email\nJosé;jose@example.com\n`, 'latin1');
    assert.deepEqual(found(encode(latin1)), ['email']);
  });
});

test('common ways of writing a card number or a NINO are found', () => {
  const diners = '3056 930902 5904'; // 4-6-4, Luhn-valid
  assert.deepEqual(typesIn(`card ${diners} on file`), ['payment_card']);
  assert.deepEqual(typesIn('invoice_4111111111111111 paid'), ['payment_card']);
  assert.deepEqual(typesIn('nino ab123456c on record'), ['uk_nino']);
  // Still not: digits glued to letters or to a dashed identifier.
  assert.deepEqual(typesIn('order A4111111111111111'), []);
  assert.deepEqual(typesIn('id 12-4111111111111111'), []);
});

test('a finding overlapping another of its kind is redacted to its end, not only to the first one’s', () => {
  const { value } = scanJson({ text: 'card 4111 1111 1111 1111.john.smith@example.com end' }, 'redact');
  const text = (value as { text: string }).text;
  assert.ok(!text.includes('smith@example.com'), text);
  assert.ok(text.endsWith(' end'), text);
});
