import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { DlpMode, DlpObligation } from '@portcullis/contracts';
import { PolicyEngine, readBundle } from '@portcullis/policy-engine';
import { SignJWT } from 'jose';
import { BLOCK_ALL, DLP_META_KEY, inspectArguments, inspectResult } from './dlp-enforcement.ts';

// Planted values: real formats, built at run time (a real RSA key, a real signed JWT), so no
// scanner flags this file and the detectors see exactly what an upstream would send.
const planted = {
  aws: ['AKIA', 'IOSFODNN7EXAMPLE'].join(''),
  github: ['ghp_', 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'].join(''),
  pem: generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({
    type: 'pkcs8',
    format: 'pem',
  }) as string,
  jwt: await new SignJWT({ sub: 'agent' })
    .setProtectedHeader({ alg: 'HS256' })
    .sign(new TextEncoder().encode('a-test-signing-key-of-32-bytes!!')),
  card: '4111111111111111',
  email: 'dora.explorer@example.co.uk',
};
const secretValues = [planted.aws, planted.github, planted.pem, planted.jwt];
const personalValues = [planted.card, planted.email];
const everyValue = [...secretValues, ...personalValues];
const SECRET_COUNTS = { aws_access_key: 1, github_token: 1, private_key: 1, jwt: 1 };
const PERSONAL_COUNTS = { payment_card: 1, email: 1 };

/** Arguments with every planted value, nested in objects, arrays and a key. */
const argumentsWithEverything = () => ({
  query: `deploy with ${planted.aws}`,
  options: { auth: { token: planted.github }, notes: [`card ${planted.card}`, { key: planted.pem }] },
  headers: [{ Authorization: `Bearer ${planted.jwt}` }],
  recipients: { [planted.email]: 'to' },
});

const modes = (secrets: DlpMode, personal: DlpMode): DlpObligation => ({
  arguments: { secrets, personal },
  results: { secrets, personal },
});

/** No planted value anywhere in what the module returned, however deep. */
function assertNoValueIn(returned: unknown, values: readonly string[] = everyValue): void {
  const serialized = JSON.stringify(returned);
  for (const value of values) {
    assert.equal(serialized.includes(value), false, `a planted value leaked: ${value.slice(0, 12)}…`);
    // Long values must not leak in part either (e.g. the body of the PEM key).
    if (value.length > 60) assert.equal(serialized.includes(value.slice(40, 100)), false);
  }
}

describe('arguments', () => {
  test('allow: the arguments pass untouched and are not even scanned', () => {
    const args = argumentsWithEverything();
    const inspected = inspectArguments(args, modes('allow', 'allow'));
    assert.equal(inspected.outcome, 'pass');
    assert.equal(inspected.outcome === 'pass' && inspected.arguments, args);
  });

  test('redact: every planted value is replaced, nested values and keys too, counted by type', () => {
    const inspected = inspectArguments(argumentsWithEverything(), modes('redact', 'redact'));
    assert.ok(inspected.outcome === 'pass');
    assert.deepEqual(inspected.redactions, { ...SECRET_COUNTS, ...PERSONAL_COUNTS });
    assert.equal(inspected.arguments.query, 'deploy with [REDACTED:aws_access_key]');
    assert.deepEqual(inspected.arguments.recipients, { '[REDACTED:email]': 'to' });
    assertNoValueIn(inspected);
  });

  test('block secrets: the call is refused with dlp_blocked, the kinds named, no value anywhere', () => {
    const inspected = inspectArguments(argumentsWithEverything(), modes('block', 'allow'));
    assert.ok(inspected.outcome === 'block');
    assert.equal(inspected.code, 'dlp_blocked');
    assert.deepEqual(inspected.findings, SECRET_COUNTS, 'only the blocking category is reported');
    assert.equal(inspected.result.isError, true);
    assert.deepEqual(inspected.result._meta?.[DLP_META_KEY], {
      code: 'dlp_blocked',
      direction: 'arguments',
      categories: ['secrets'],
      findings: SECRET_COUNTS,
    });
    const text = (inspected.result.content[0] as { text: string }).text;
    assert.match(text, /^The call was not executed: the arguments contain secrets \(aws_access_key ×1, /);
    assert.match(text, /Remove them from the arguments and retry/);
    assertNoValueIn(inspected);
  });

  test('block secrets, allow personal data: a token in a URL with credentials still blocks', () => {
    // The write default. The URL's `//token@host` is address-shaped too; the address, allowed,
    // must not hide the token.
    const token = ['ghp_', 'aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789'].join('');
    const inspected = inspectArguments(
      { command: `git clone https://${token}@github.com/acme/repo.git` },
      modes('block', 'allow'),
    );
    assert.ok(inspected.outcome === 'block');
    assert.deepEqual(inspected.findings, { github_token: 1 });
  });

  test('block personal data, redact secrets: personal data blocks, the secrets never show', () => {
    const inspected = inspectArguments(argumentsWithEverything(), modes('redact', 'block'));
    assert.ok(inspected.outcome === 'block');
    assert.deepEqual(inspected.findings, PERSONAL_COUNTS);
    assert.match(inspected.message, /contain personal data \(email ×1, payment_card ×1\)/);
    assertNoValueIn(inspected);
  });

  test('block and redact together: only findings of the redact category are redacted', () => {
    const args = { to: planted.email, body: 'hello' };
    const inspected = inspectArguments(args, {
      arguments: { secrets: 'block', personal: 'redact' },
      results: { secrets: 'allow', personal: 'allow' },
    });
    assert.ok(inspected.outcome === 'pass');
    assert.deepEqual(inspected.arguments, { to: '[REDACTED:email]', body: 'hello' });
    assert.deepEqual(inspected.redactions, { email: 1 });
  });

  test('allow for one category leaves its findings in place while the other is redacted', () => {
    const inspected = inspectArguments(
      { to: planted.email, token: planted.github },
      modes('redact', 'allow'),
    );
    assert.ok(inspected.outcome === 'pass');
    assert.deepEqual(inspected.arguments, { to: planted.email, token: '[REDACTED:github_token]' });
    assert.deepEqual(inspected.redactions, { github_token: 1 });
  });

  test('clean arguments pass as the same object under the strictest modes', () => {
    const args = { repository: 'acme/api', issue: 42, labels: ['bug'] };
    const inspected = inspectArguments(args, BLOCK_ALL);
    assert.ok(inspected.outcome === 'pass');
    assert.equal(inspected.arguments, args);
    assert.deepEqual(inspected.redactions, {});
  });

  test('a mode that is not allow, redact or block is treated as block', () => {
    const unchecked = { secrets: 'log', personal: 'allow' } as unknown as DlpObligation['arguments'];
    const inspected = inspectArguments(
      { token: planted.github },
      { arguments: unchecked, results: unchecked },
    );
    assert.ok(inspected.outcome === 'block');
    assert.deepEqual(inspected.findings, { github_token: 1 });
  });

  test('an AWS secret key is found by its argument name', () => {
    const secret = ['wJalrXUtnFEMI/K7MDENG/', 'bPxRfiCYEXAMPLEKEY'].join('');
    const inspected = inspectArguments({ aws_secret_access_key: secret }, modes('block', 'allow'));
    assert.ok(inspected.outcome === 'block');
    assert.deepEqual(inspected.findings, { aws_secret_key: 1 });
    assertNoValueIn(inspected, [secret]);
  });

  test('arguments that cannot be inspected are refused (dlp_uninspectable), never passed on', () => {
    let deep: unknown = planted.aws;
    for (let i = 0; i < 400; i++) deep = { n: deep };
    const tooDeep = inspectArguments({ deep }, modes('redact', 'allow'));
    assert.ok(tooDeep.outcome === 'block');
    assert.equal(tooDeep.code, 'dlp_uninspectable');
    assert.deepEqual(tooDeep.findings, {});
    assert.match(tooDeep.message, /nested too deeply/);
    assertNoValueIn(tooDeep);

    const huge = { blob: 'x'.repeat(2_000_000), token: planted.github };
    const tooBig = inspectArguments(huge, modes('redact', 'redact'));
    assert.ok(tooBig.outcome === 'block');
    assert.equal(tooBig.code, 'dlp_uninspectable');
    assert.match(tooBig.message, /more than 1048576 characters/);
    // The bound is the caller's to choose; within it the same value is redacted.
    const within = inspectArguments(huge, modes('redact', 'redact'), { maxChars: 4_000_000 });
    assert.ok(within.outcome === 'pass');
    assert.deepEqual(within.redactions, { github_token: 1 });
  });
});

describe('results', () => {
  const resultWithEverything = (): CallToolResult => ({
    content: [
      { type: 'text', text: `found ${planted.aws} and ${planted.jwt}` },
      { type: 'text', text: `owner ${planted.email}, card ${planted.card}` },
    ],
    structuredContent: { repo: { token: planted.github, deployKey: planted.pem } },
  });

  test('allow: the result passes as is', () => {
    const result = resultWithEverything();
    const inspected = inspectResult(result, modes('allow', 'allow'));
    assert.ok(inspected.outcome === 'pass');
    assert.equal(inspected.result, result);
  });

  test('redact: text and structured content are redacted before the agent and the ledger', () => {
    const inspected = inspectResult(resultWithEverything(), modes('redact', 'redact'));
    assert.ok(inspected.outcome === 'pass');
    assert.deepEqual(inspected.redactions, { ...SECRET_COUNTS, ...PERSONAL_COUNTS });
    assert.deepEqual(inspected.result.content[1], {
      type: 'text',
      text: 'owner [REDACTED:email], card [REDACTED:payment_card]',
    });
    assert.equal(inspected.withheld, undefined);
    assertNoValueIn(inspected);
  });

  test('block: the result is withheld with a readable error naming the kinds, not the values', () => {
    const inspected = inspectResult(resultWithEverything(), modes('block', 'redact'));
    assert.ok(inspected.outcome === 'block');
    assert.equal(inspected.code, 'dlp_blocked');
    assert.deepEqual(inspected.findings, SECRET_COUNTS);
    assert.equal(inspected.result.isError, true);
    assert.equal(inspected.result.structuredContent, undefined);
    const text = (inspected.result.content[0] as { text: string }).text;
    assert.match(
      text,
      /^The tool ran but its result was withheld: the result contains secrets \(aws_access_key ×1, github_token ×1, /,
    );
    assert.deepEqual(inspected.result._meta?.[DLP_META_KEY], {
      code: 'dlp_blocked',
      direction: 'result',
      categories: ['secrets'],
      findings: SECRET_COUNTS,
    });
    assertNoValueIn(inspected);
  });

  test('redacted structured content that still matches the output schema is kept', () => {
    const outputSchema = {
      type: 'object',
      properties: { owner: { type: 'string' }, count: { type: 'integer' } },
      required: ['owner'],
    };
    const inspected = inspectResult(
      { content: [], structuredContent: { owner: planted.email, count: 3 } },
      modes('redact', 'redact'),
      { outputSchema },
    );
    assert.ok(inspected.outcome === 'pass');
    assert.deepEqual(inspected.result.structuredContent, { owner: '[REDACTED:email]', count: 3 });
    assert.equal(inspected.result.isError, undefined);
  });

  test('redaction that breaks the output schema withholds structured content and says why', () => {
    // A card number as a JSON integer becomes a string placeholder; an email format breaks too.
    const outputSchema = {
      type: 'object',
      properties: { card: { type: 'integer' }, owner: { type: 'string', format: 'email' } },
    };
    const result: CallToolResult = {
      content: [{ type: 'text', text: `owner ${planted.email}` }],
      structuredContent: { card: Number(planted.card), owner: planted.email },
      _meta: { upstream: 'kept' },
    };
    const inspected = inspectResult(result, modes('redact', 'redact'), { outputSchema });
    assert.ok(inspected.outcome === 'pass');
    assert.equal(inspected.withheld, 'dlp_structured_content_withheld');
    assert.equal(inspected.result.structuredContent, undefined);
    // isError: an MCP client rejects a successful result of a tool with an output schema that
    // lacks structured content; an error result it hands to the model as it is.
    assert.equal(inspected.result.isError, true);
    assert.deepEqual(inspected.result.content[0], { type: 'text', text: 'owner [REDACTED:email]' });
    assert.match(
      (inspected.result.content[1] as { text: string }).text,
      /no longer matched the tool's output schema, so it was withheld/,
    );
    assert.deepEqual(inspected.result._meta, {
      upstream: 'kept',
      [DLP_META_KEY]: {
        code: 'dlp_structured_content_withheld',
        redactions: { email: 2, payment_card: 1 },
      },
    });
    assertNoValueIn(inspected);

    // The same result without an output schema keeps its (redacted) structured content.
    const free = inspectResult(result, modes('redact', 'redact'));
    assert.ok(free.outcome === 'pass');
    assert.deepEqual(free.result.structuredContent, {
      card: '[REDACTED:payment_card]',
      owner: '[REDACTED:email]',
    });
  });

  test('a result too deep to inspect is withheld as dlp_uninspectable', () => {
    let deep: unknown = planted.email;
    for (let i = 0; i < 400; i++) deep = [deep];
    const inspected = inspectResult(
      { content: [], structuredContent: { deep } as Record<string, unknown> },
      modes('redact', 'redact'),
    );
    assert.ok(inspected.outcome === 'block');
    assert.equal(inspected.code, 'dlp_uninspectable');
    assert.equal(inspected.result.isError, true);
    assertNoValueIn(inspected);
  });
});

describe('with the obligations of the real policy bundle', () => {
  test('default modes: a secret in write arguments blocks, in read arguments is redacted, results redact', async () => {
    const engine = new PolicyEngine();
    await engine.loadBundle(
      await readBundle(readFileSync(new URL('../../../rego/build/bundle.tar.gz', import.meta.url))),
    );
    engine.setDirectory({
      agents: { agt_a: { state: 'active', owner: 'a@example.com' } },
      apps: { demo: {} },
      entitlements: { agt_a: { demo: [{ actions: ['read', 'write'] }] } },
    });
    const decide = (actionClass: string) =>
      engine.decide({
        agent: { id: 'agt_a' },
        app: { id: 'demo' },
        tool: { name: 't' },
        action_class: actionClass,
        arguments: {},
      });
    const write = decide('write');
    const read = decide('read');
    assert.ok(write.obligations?.dlp && read.obligations?.dlp);
    const args = { body: `token ${planted.github}`, to: planted.email };

    const writeArgs = inspectArguments(args, write.obligations.dlp);
    assert.deepEqual(
      [writeArgs.outcome, writeArgs.outcome === 'block' && writeArgs.code],
      ['block', 'dlp_blocked'],
    );

    const readArgs = inspectArguments(args, read.obligations.dlp);
    assert.ok(readArgs.outcome === 'pass');
    assert.deepEqual(readArgs.arguments, { body: 'token [REDACTED:github_token]', to: planted.email });

    const readResult = inspectResult(
      { content: [{ type: 'text', text: planted.email }] },
      read.obligations.dlp,
    );
    assert.ok(readResult.outcome === 'pass');
    assert.deepEqual(readResult.redactions, { email: 1 });
  });
});
