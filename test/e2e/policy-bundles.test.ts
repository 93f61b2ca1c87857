import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { DecisionLogV1, Topics, topicName } from '@portcullis/contracts';
import { stackEnv, waitFor } from '@portcullis/testing';
import { Kafka } from 'kafkajs';
import pg from 'pg';
import { bundlePath, repoRoot, TestStack } from '../support/stack.ts';

// The decision service's bundle lifecycle and API surface, against a real Postgres, Kafka and OPA:
// bad bundles are rejected with a clear error and the active one stays; roles are enforced; the
// OPA-compatible Data API answers with the active revision; rollback restores the previous one.

const run = promisify(execFile);
const opa = process.env.PORTCULLIS_OPA_BIN || 'opa';
let stack: TestStack;
let work: string;
let goodId: number;
let goodRevision: string;

interface Problem {
  code: string;
  title: string;
  status: number;
}

/** A tar.gz of a copy of the repo's policy, after `change` edited the copy. */
async function sourceBundle(name: string, change: (dir: string) => Promise<void>): Promise<Buffer> {
  const dir = join(work, name);
  await cp(join(repoRoot, 'rego/portcullis'), join(dir, 'portcullis'), { recursive: true });
  await cp(join(repoRoot, 'rego/.manifest'), join(dir, '.manifest'));
  await change(dir);
  await run('tar', ['czf', join(work, `${name}.tar.gz`), '-C', dir, '.']);
  return readFile(join(work, `${name}.tar.gz`));
}

const decisionRego = (dir: string) => join(dir, 'portcullis/authz/decision.rego');

async function activeRevision(): Promise<string | undefined> {
  const { bundles } = (await (await stack.api('GET', '/v1/bundles')).json()) as {
    bundles: { revision: string; active: boolean }[];
  };
  return bundles.find((bundle) => bundle.active)?.revision;
}

async function dataApi(input: unknown, token = stack.apiToken): Promise<Response> {
  return fetch(`${stack.decisionUrl}/v1/data/portcullis/authz/decision`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ input }),
  });
}

const readCall = {
  agent: { id: '' },
  app: { id: 'demo' },
  tool: { name: 'fetch_record' },
  action_class: 'read',
  arguments: {},
};

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'policy-bundles-'));
  stack = await TestStack.create();
  await stack.startDecision();
  await stack.seed({
    apps: [{ id: 'demo', name: 'Demo' }],
    agents: [{ name: 'reader', owner: 'alice@example.com', entitlements: { demo: ['read'] } }],
  });
  const uploaded = await stack.api(
    'POST',
    '/v1/bundles?kind=built',
    await readFile(bundlePath),
    'application/gzip',
  );
  assert.equal(uploaded.status, 201);
  ({ id: goodId, revision: goodRevision } = (await uploaded.json()) as { id: number; revision: string });
  assert.equal((await stack.api('POST', `/v1/bundles/${goodId}/activate`)).status, 200);
  const agents = (await (await stack.api('GET', '/v1/agents')).json()) as { agents: { id: string }[] };
  readCall.agent.id = agents.agents[0]!.id;
});

after(async () => {
  await stack?.stop();
});

describe('bad bundles are rejected with a clear error and the active one stays', () => {
  type Case = [string, 'source' | 'built', () => Promise<Uint8Array>, RegExp];
  const cases: Case[] = [
    [
      'it does not compile',
      'source',
      () =>
        sourceBundle('broken', (dir) =>
          writeFile(decisionRego(dir), 'package portcullis.authz\n\ndecision := {\n'),
        ),
      /does not compile \(opa check --strict\)/,
    ],
    [
      'it fails its own tests',
      'source',
      () =>
        sourceBundle('failing', async (dir) => {
          const text = await readFile(decisionRego(dir), 'utf8');
          const broken = text.replace(
            'default reasons := ["allowed"]',
            'default reasons := ["no_entitlement"]',
          );
          assert.notEqual(broken, text, 'the mutation must apply, or this case tests nothing');
          await writeFile(decisionRego(dir), broken);
        }),
      /its own tests fail \(opa test\)/,
    ],
    [
      'it lacks the entrypoint',
      'built',
      async () => {
        const dir = join(work, 'other');
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'other.rego'), 'package other\n\nx := input.y\n');
        await run(opa, [
          'build',
          '-b',
          '-t',
          'wasm',
          '-O=1',
          '-e',
          'other/x',
          '-o',
          join(work, 'other.tar.gz'),
          dir,
        ]);
        return readFile(join(work, 'other.tar.gz'));
      },
      /lacks the entrypoint portcullis\/authz\/decision/,
    ],
    [
      'it is not Wasm',
      'built',
      async () => {
        const dir = join(work, 'notwasm');
        await mkdir(dir, { recursive: true });
        await writeFile(join(dir, 'policy.wasm'), 'this is text, not a module');
        await run('tar', ['czf', join(work, 'notwasm.tar.gz'), '-C', dir, 'policy.wasm']);
        return readFile(join(work, 'notwasm.tar.gz'));
      },
      /not a WebAssembly module/,
    ],
    [
      'it is truncated',
      'built',
      async () => (await readFile(bundlePath)).subarray(0, 2000),
      /not a valid tar\.gz|no \/policy\.wasm/,
    ],
    [
      'it lacks the entrypoint when built from source',
      'source',
      () =>
        sourceBundle('renamed', async (dir) => {
          // The whole package moves (decision.rego and the files it shares it with); tests go.
          const authz = join(dir, 'portcullis/authz');
          for (const file of await readdir(authz)) {
            const path = join(authz, file);
            if (file.endsWith('_test.rego')) await rm(path);
            else if (file.endsWith('.rego'))
              await writeFile(
                path,
                (await readFile(path, 'utf8')).replace(
                  'package portcullis.authz',
                  'package portcullis.other',
                ),
              );
          }
        }),
      /does not build to Wasm with the decision entrypoint/,
    ],
    // An upload's tests run on the decision service's host: they must not see its environment
    // (the database URL, with its password) nor reach the network from it.
    ...(
      [
        // Fails with the URL in its printed output, if it compiles.
        [
          'its tests read the service environment (opa.runtime)',
          'v := opa.runtime().env.DATABASE_URL\n\tprint(v)\n\tv == ""',
        ],
        // Compiles without the restriction; then fails, its request refused.
        [
          'its tests reach the network (http.send)',
          'http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).status_code == 200',
        ],
      ] as const
    ).map(
      ([name, body]): Case => [
        name,
        'source',
        () =>
          sourceBundle(name.replace(/\W+/g, '-'), async (dir) => {
            await writeFile(
              join(dir, 'portcullis/authz/leak_test.rego'),
              `package portcullis.authz_test\n\ntest_leak if {\n\t${body}\n}\n`,
            );
          }),
        /does not compile \(opa check --strict\)/,
      ],
    ),
  ];
  for (const [name, kind, bytes, message] of cases) {
    test(name, async () => {
      const response = await stack.api('POST', `/v1/bundles?kind=${kind}`, await bytes(), 'application/gzip');
      const body = (await response.json()) as Problem;
      assert.doesNotMatch(JSON.stringify(body), /postgres(ql)?:\/\//, 'no database URL in the answer');
      assert.equal(response.status, 422, JSON.stringify(body));
      assert.match(response.headers.get('content-type') ?? '', /application\/problem\+json/);
      assert.equal(body.code, 'bundle_invalid');
      assert.match(body.title, message);
      assert.equal(await activeRevision(), goodRevision);
      const decision = (await (await dataApi(readCall)).json()) as { result: { outcome: string } };
      assert.equal(decision.result.outcome, 'allow');
    });
  }
});

describe('API security', () => {
  test('no token and a wrong token: 401 problem+json', async () => {
    const none = await fetch(`${stack.decisionUrl}/v1/bundles`);
    assert.equal(none.status, 401);
    assert.equal(((await none.json()) as Problem).code, 'unauthenticated');
    const wrong = await dataApi(readCall, 'tok_wrong');
    assert.equal(wrong.status, 401);
  });

  test('a viewer may read and ask for decisions, but change nothing: 403', async () => {
    const as = (method: string, path: string, body?: string) =>
      fetch(`${stack.decisionUrl}${path}`, {
        method,
        headers: { Authorization: `Bearer ${stack.viewerToken}`, 'Content-Type': 'application/json' },
        ...(body === undefined ? {} : { body }),
      });
    assert.equal((await as('GET', '/v1/bundles')).status, 200);
    assert.equal((await dataApi(readCall, stack.viewerToken)).status, 200);
    for (const [method, path, body] of [
      ['POST', '/v1/bundles?kind=built', 'x'],
      ['POST', `/v1/bundles/${goodId}/activate`, undefined],
      ['POST', '/v1/policy/rollback', undefined],
      ['PUT', '/v1/agents/reader', '{"owner":"mallory@example.com"}'],
      ['DELETE', '/v1/agents/reader/entitlements/demo', undefined],
    ] as const) {
      const response = await as(method, path, body);
      assert.equal(response.status, 403, `${method} ${path}`);
      assert.equal(((await response.json()) as Problem).code, 'forbidden');
    }
    const decision = (await (await dataApi(readCall)).json()) as { result: { outcome: string } };
    assert.equal(decision.result.outcome, 'allow');
  });

  test("an agent's update keeps what it does not name: an owner change never reactivates it", async () => {
    const stateOf = async () =>
      (
        (await (await stack.api('GET', '/v1/agents')).json()) as {
          agents: { name: string; state: string; owner: string }[];
        }
      ).agents.find((agent) => agent.name === 'quiet');
    assert.equal((await stack.api('PUT', '/v1/agents/quiet', { owner: 'alice@example.com' })).status, 200);
    assert.equal((await stateOf())?.state, 'active', 'a new agent is active');
    assert.equal(
      (await stack.api('PUT', '/v1/agents/quiet', { owner: 'alice@example.com', state: 'suspended' })).status,
      200,
    );
    assert.equal((await stack.api('PUT', '/v1/agents/quiet', { owner: 'bob@example.com' })).status, 200);
    assert.deepEqual(
      { ...(await stateOf()) },
      { ...(await stateOf()), owner: 'bob@example.com', state: 'suspended' },
    );
    // A misspelt field is refused, not ignored.
    const misspelt = await stack.api('PUT', '/v1/agents/quiet', {
      owner: 'bob@example.com',
      status: 'active',
    });
    assert.equal(misspelt.status, 400);
    assert.equal((await stateOf())?.state, 'suspended');
  });

  test('invalid bodies: 400 naming the field, nothing changes', async () => {
    // The policy's snake_case spelling of a condition is not the API's: refused, not dropped.
    const snakeCase = await stack.api('PUT', '/v1/agents/reader/entitlements/demo', {
      grants: [{ actions: ['delete'], require_approval: true }],
    });
    assert.equal(snakeCase.status, 400);
    assert.match(((await snakeCase.json()) as Problem).title, /require_approval/);
    const response = await stack.api('PUT', '/v1/agents/reader/entitlements/demo', {
      grants: [{ actions: ['fly'] }],
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as Problem;
    assert.equal(body.code, 'invalid_request');
    assert.match(body.title, /actions/);
    // A redaction path the broker could not apply is refused here, not stored to withhold results.
    const path = await stack.api('PUT', '/v1/agents/reader/entitlements/demo', {
      grants: [{ actions: ['read'], redact: ['salary'] }],
    });
    assert.equal(path.status, 400);
    assert.match(((await path.json()) as Problem).title, /redact/);
    // An empty time window would deny every call in silence: refused.
    const empty = await stack.api('PUT', '/v1/agents/reader/entitlements/demo', {
      grants: [{ actions: ['read'], window: { days: [1], from_minute: 600, to_minute: 600 } }],
    });
    assert.equal(empty.status, 400);
    assert.match(((await empty.json()) as Problem).title, /window/);
    const pastMidnight = await stack.api('PUT', '/v1/agents/reader/entitlements/demo', {
      grants: [{ actions: ['read'], window: { days: [1], from_minute: 1440, to_minute: 0 } }],
    });
    assert.equal(pastMidnight.status, 400);
    assert.match(((await pastMidnight.json()) as Problem).title, /from_minute/);
    const decision = (await (await dataApi(readCall)).json()) as { result: { outcome: string } };
    assert.equal(decision.result.outcome, 'allow');
  });
});

describe('Data API', () => {
  test('answers in OPA shape with the decision and a decision id', async () => {
    const response = await dataApi(readCall);
    assert.equal(response.status, 200);
    const body = (await response.json()) as {
      result: { outcome: string; reasons: string[] };
      decision_id: string;
    };
    assert.deepEqual([body.result.outcome, body.result.reasons], ['allow', ['allowed']]);
    assert.match(body.decision_id, /^[0-9a-f-]{36}$/);
    const denied = (await (await dataApi({ ...readCall, action_class: 'delete' })).json()) as {
      result: { reasons: string[] };
    };
    assert.deepEqual(denied.result.reasons, ['no_entitlement']);
  });

  test("an app's DLP settings reach decisions; an unknown key or mode is a 400 and changes nothing", async () => {
    interface Dlp {
      arguments: Record<string, string>;
      results: Record<string, string>;
    }
    const dlpOf = async () =>
      (
        (await (await dataApi(readCall)).json()) as {
          result: { obligations: { dlp: Dlp }; visible: boolean };
        }
      ).result;
    assert.deepEqual((await dlpOf()).obligations.dlp.results, { secrets: 'redact', personal: 'redact' });
    assert.equal((await dlpOf()).visible, true);
    for (const policy of [
      { dlp: { read: { result: { personal: 'allow' } } } },
      { dlp: { read: { results: { personal: 'hide' } } } },
      { dlp: { admin: {} } },
    ]) {
      const rejected = await stack.api('PUT', '/v1/apps/demo', { name: 'Demo', policy });
      assert.equal(rejected.status, 400, JSON.stringify(policy));
      assert.equal(((await rejected.json()) as Problem).code, 'invalid_request');
    }
    const accepted = await stack.api('PUT', '/v1/apps/demo', {
      name: 'Demo',
      policy: { dlp: { read: { results: { personal: 'allow' } } } },
    });
    assert.equal(accepted.status, 204);
    const changed = await waitFor('the app setting in decisions', async () => {
      const result = await dlpOf();
      return result.obligations.dlp.results.personal === 'allow' ? result.obligations.dlp : undefined;
    });
    assert.deepEqual(changed, {
      arguments: { secrets: 'redact', personal: 'allow' },
      results: { secrets: 'redact', personal: 'allow' },
    });
    // A rename leaves the policy as it is; a misspelt field anywhere in it is refused.
    assert.equal((await stack.api('PUT', '/v1/apps/demo', { name: 'Demo (renamed)' })).status, 204);
    const renamed = (await (await stack.api('GET', '/v1/apps/demo')).json()) as {
      name: string;
      policy: unknown;
    };
    assert.deepEqual(renamed, {
      ...renamed,
      name: 'Demo (renamed)',
      policy: { dlp: { read: { results: { personal: 'allow' } } } },
    });
    for (const body of [
      { name: 'Demo', policy: { tools: { fetch_record: { disabeld: true } } } },
      { name: 'Demo', policy: { delete: 'deny', approver: ['a@example.com'] } },
      { name: 'Demo', color: 'blue' },
    ]) {
      const refused = await stack.api('PUT', '/v1/apps/demo', body);
      assert.equal(refused.status, 400, JSON.stringify(body));
    }
    // Back to the defaults for the tests after this one.
    assert.equal((await stack.api('PUT', '/v1/apps/demo', { name: 'Demo', policy: {} })).status, 204);
    await waitFor(
      'the defaults again',
      async () => (await dlpOf()).obligations.dlp.results.personal === 'redact',
    );
  });

  test('every Data API decision is logged in OPA shape on Kafka, with the arguments masked', async () => {
    const secret = 'ghp_do_not_log_me';
    const response = await dataApi({ ...readCall, arguments: { token: secret } });
    const { decision_id: decisionId } = (await response.json()) as { decision_id: string };
    const kafka = new Kafka({
      clientId: 'decision-log-test',
      brokers: stackEnv().kafkaBrokers.split(','),
      logLevel: 0,
    });
    const consumer = kafka.consumer({ groupId: `${stack.prefix}.decision-log-test` });
    await consumer.connect();
    try {
      await consumer.subscribe({
        topics: [topicName(stack.prefix, Topics.decisionLog)],
        fromBeginning: true,
      });
      const entries: string[] = [];
      await consumer.run({
        eachMessage: async ({ message }) => void entries.push(message.value?.toString() ?? ''),
      });
      const line = await waitFor('the decision-log entry', () =>
        entries.find((entry) => entry.includes(decisionId)),
      );
      assert.equal(line.includes(secret), false);
      const entry = DecisionLogV1.parse(JSON.parse(line));
      assert.deepEqual(entry.masked, ['/input/arguments']);
      assert.equal(entry.path, 'portcullis/authz/decision');
      assert.equal(entry.bundles.portcullis?.revision, goodRevision);
      assert.equal((entry.result as { outcome: string }).outcome, 'allow');
    } finally {
      await consumer.disconnect();
    }
  });

  test('an unknown path is a 404 problem', async () => {
    const response = await fetch(`${stack.decisionUrl}/v1/data/portcullis/other`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${stack.apiToken}`, 'Content-Type': 'application/json' },
      body: '{"input":{}}',
    });
    assert.equal(response.status, 404);
  });
});

describe('activation and rollback', () => {
  test('rollback re-activates the previous bundle, and the Data API follows', async () => {
    const source = await sourceBundle('strict', async (dir) => {
      await appendFileText(
        decisionRego(dir),
        '\n# METADATA\n# description: fetch_record is switched off in this revision.\ndeny_reasons contains "tool_disabled" if input.tool.name == "fetch_record"\n',
      );
    });
    const uploaded = await stack.api('POST', '/v1/bundles?kind=source', source, 'application/gzip');
    assert.equal(uploaded.status, 201);
    const strict = (await uploaded.json()) as {
      id: number;
      revision: string;
      validation: { smoke: unknown[] };
    };
    assert.ok(strict.validation.smoke.length >= 5);
    assert.equal((await stack.api('POST', `/v1/bundles/${strict.id}/activate`)).status, 200);
    assert.equal(await activeRevision(), strict.revision);
    let decision = (await (await dataApi(readCall)).json()) as { result: { reasons: string[] } };
    assert.deepEqual(decision.result.reasons, ['tool_disabled']);

    const rolledBack = await stack.api('POST', '/v1/policy/rollback');
    assert.equal(rolledBack.status, 200);
    assert.equal(((await rolledBack.json()) as { revision: string }).revision, goodRevision);
    assert.equal(await activeRevision(), goodRevision);
    decision = (await (await dataApi(readCall)).json()) as { result: { reasons: string[] } };
    assert.deepEqual(decision.result.reasons, ['allowed']);
  });

  test('a rollback waits for an activation in progress and undoes that one, not the one before it', async () => {
    const upload = async (name: string) => {
      const source = await sourceBundle(name, (dir) => appendFileText(decisionRego(dir), `\n# ${name}\n`));
      const uploaded = await stack.api('POST', '/v1/bundles?kind=source', source, 'application/gzip');
      assert.equal(uploaded.status, 201);
      return ((await uploaded.json()) as { id: number }).id;
    };
    const [second, third] = [await upload('second'), await upload('third')];
    assert.equal((await stack.api('POST', `/v1/bundles/${second}/activate`)).status, 200);
    // Another activation (of `third`) holds the history's lock and commits while the rollback waits.
    const holder = new pg.Client({ connectionString: stack.databaseUrl });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE directory.policy_activations IN EXCLUSIVE MODE');
      await holder.query(
        "INSERT INTO directory.policy_activations (bundle_id, activated_by) VALUES ($1, 'api:concurrent')",
        [third],
      );
      const rollingBack = stack.api('POST', '/v1/policy/rollback');
      await new Promise((resolve) => setTimeout(resolve, 500));
      await holder.query('COMMIT');
      const rolledBack = await rollingBack;
      assert.equal(rolledBack.status, 200);
      // `third` was current when the rollback ran: it goes back to `second`, not to what was before.
      assert.equal(((await rolledBack.json()) as { bundleId: number }).bundleId, second);
    } finally {
      await holder.end();
    }
    assert.equal((await stack.api('POST', `/v1/bundles/${goodId}/activate`)).status, 200);
  });
});

async function appendFileText(path: string, text: string): Promise<void> {
  await writeFile(path, (await readFile(path, 'utf8')) + text);
}
