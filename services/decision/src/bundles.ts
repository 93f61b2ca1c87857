import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { type PolicyActivatedV1, Topics, topicName } from '@portcullis/contracts';
import { withTransaction } from '@portcullis/db';
import {
  BundleError,
  checkArchive,
  opaWasmBuildArgs,
  PolicyEngine,
  readBundle,
} from '@portcullis/policy-engine';
import { AppError } from '@portcullis/runtime';
import type { Producer } from 'kafkajs';
import type pg from 'pg';
import { x as extract } from 'tar';
import { opaEnvironment, restrictedCapabilities } from './opa-sandbox.ts';
import { SMOKE_CASES, SMOKE_DIRECTORY } from './smoke.ts';

const run = promisify(execFile);

export interface BundleRecord {
  id: number;
  revision: string;
  digest: string;
  author: string;
  kind: 'source' | 'built';
  createdAt: string;
  active: boolean;
}

export interface Validation {
  compiled: boolean;
  tests: string;
  smoke: { name: string; expected: string; actual: string }[];
}

/** One activation at a time, so the topic and the history agree on the order. */
async function lockActivations(client: pg.PoolClient): Promise<void> {
  await client.query('LOCK TABLE directory.policy_activations IN EXCLUSIVE MODE');
}

/** Thrown when a bundle fails validation; the message says which step and why. */
function invalid(step: string, detail: string): AppError {
  return new AppError('bundle_invalid', `bundle rejected: ${step}: ${detail.trim().slice(0, 4000)}`, {
    status: 422,
  });
}

/**
 * The policy bundle lifecycle: validate → store (revision, digest, author) → activate / roll back.
 * A bundle is activated by publishing it on the compacted policy topic, which every broker follows;
 * the activation row is written in the same transaction, which commits only after Kafka acked.
 */
export class BundleService {
  readonly #pool: pg.Pool;
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #opa: string;
  #restricted: Promise<string> | undefined;

  constructor(pool: pg.Pool, producer: Producer, prefix: string, opaBin: string) {
    this.#pool = pool;
    this.#producer = producer;
    this.#topic = topicName(prefix, Topics.policy);
    this.#opa = opaBin;
  }

  /**
   * Validates an upload and stores it. `source`: a tar.gz of a policy directory (with its tests):
   * it must pass `opa check --strict` and `opa test`, then it is built to Wasm here. `built`: a
   * bundle.tar.gz from `opa build -t wasm`. Either way the Wasm must load, expose the decision
   * entrypoint and give the expected result for every smoke case.
   */
  async upload(
    kind: 'source' | 'built',
    bytes: Buffer,
    author: string,
  ): Promise<BundleRecord & { validation: Validation }> {
    const { bundle, validation } =
      kind === 'source' ? await this.#buildFromSource(bytes) : { bundle: bytes, validation: undefined };
    const smoke = await this.#smoke(bundle);
    const fullValidation: Validation = {
      compiled: true,
      tests: validation ?? 'not run (built bundle)',
      smoke,
    };
    const parsed = await readBundle(bundle);
    const { rows } = await this.#pool.query<{ id: string; created_at: Date }>(
      `INSERT INTO directory.policy_bundles (revision, digest, author, kind, bundle, source, validation)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (digest) DO UPDATE SET digest = EXCLUDED.digest
       RETURNING id, created_at`,
      [
        parsed.revision,
        parsed.digest,
        author,
        kind,
        bundle,
        kind === 'source' ? bytes : null,
        fullValidation,
      ],
    );
    const row = rows[0]!;
    return {
      id: Number(row.id),
      revision: parsed.revision,
      digest: parsed.digest,
      author,
      kind,
      createdAt: row.created_at.toISOString(),
      active: false,
      validation: fullValidation,
    };
  }

  async list(): Promise<BundleRecord[]> {
    const { rows } = await this.#pool.query<{
      id: string;
      revision: string;
      digest: string;
      author: string;
      kind: 'source' | 'built';
      created_at: Date;
    }>(
      'SELECT id, revision, digest, author, kind, created_at FROM directory.policy_bundles ORDER BY id DESC LIMIT 100',
    );
    const active = await this.activeBundleId();
    return rows.map((row) => ({
      id: Number(row.id),
      revision: row.revision,
      digest: row.digest,
      author: row.author,
      kind: row.kind,
      createdAt: row.created_at.toISOString(),
      active: Number(row.id) === active,
    }));
  }

  async activeBundleId(): Promise<number | undefined> {
    const { rows } = await this.#pool.query<{ bundle_id: string }>(
      'SELECT bundle_id FROM directory.policy_activations ORDER BY id DESC LIMIT 1',
    );
    return rows[0] ? Number(rows[0].bundle_id) : undefined;
  }

  /** The stored bundle bytes (for the Data API engine, simulation and downloads). */
  async bundleBytes(id: number): Promise<Buffer> {
    const { rows } = await this.#pool.query<{ bundle: Buffer }>(
      'SELECT bundle FROM directory.policy_bundles WHERE id = $1',
      [id],
    );
    if (!rows[0]) throw new AppError('bundle_not_found', `no bundle ${id}`, { status: 404 });
    return rows[0].bundle;
  }

  /** Activates a stored bundle: publishes it to every broker, then records the activation. */
  async activate(id: number, by: string): Promise<{ activationId: number; revision: string }> {
    return withTransaction(this.#pool, async (client) => {
      await lockActivations(client);
      return this.#activateLocked(client, id, by);
    });
  }

  /** Re-activates the bundle that was active before the current one. */
  async rollback(by: string): Promise<{ activationId: number; revision: string; bundleId: number }> {
    return withTransaction(this.#pool, async (client) => {
      // The history is read under the lock: an activation committed meanwhile is the current one,
      // never silently undone by re-activating what came before it.
      await lockActivations(client);
      const { rows } = await client.query<{ id: string; bundle_id: string }>(
        'SELECT id, bundle_id FROM directory.policy_activations ORDER BY id DESC LIMIT 50',
      );
      const current = rows[0];
      const previous = rows.find((row) => row.bundle_id !== current?.bundle_id);
      if (!current || !previous)
        throw new AppError('nothing_to_roll_back', 'there is no earlier bundle to roll back to', {
          status: 409,
        });
      const result = await this.#activateLocked(client, Number(previous.bundle_id), by, Number(current.id));
      return { ...result, bundleId: Number(previous.bundle_id) };
    });
  }

  /** Records and publishes an activation; the caller holds the activations lock (lockActivations). */
  async #activateLocked(
    client: pg.PoolClient,
    id: number,
    by: string,
    rollbackOf?: number,
  ): Promise<{ activationId: number; revision: string }> {
    const { rows } = await client.query<{ revision: string; digest: string; bundle: Buffer }>(
      'SELECT revision, digest, bundle FROM directory.policy_bundles WHERE id = $1',
      [id],
    );
    const bundle = rows[0];
    if (!bundle) throw new AppError('bundle_not_found', `no bundle ${id}`, { status: 404 });
    const inserted = await client.query<{ id: string }>(
      'INSERT INTO directory.policy_activations (bundle_id, activated_by, rollback_of) VALUES ($1, $2, $3) RETURNING id',
      [id, by, rollbackOf ?? null],
    );
    const event: PolicyActivatedV1 = {
      type: 'policy.activated',
      version: 1,
      eventId: randomUUID(),
      occurredAt: new Date().toISOString(),
      bundleId: id,
      revision: bundle.revision,
      digest: bundle.digest,
      activatedBy: by,
      ...(rollbackOf ? { rollbackOf: String(rollbackOf) } : {}),
      bundleBase64: bundle.bundle.toString('base64'),
    };
    await this.#producer.send({
      topic: this.#topic,
      acks: -1,
      messages: [{ key: 'active', value: JSON.stringify(event) }],
    });
    return { activationId: Number(inserted.rows[0]!.id), revision: bundle.revision };
  }

  async #buildFromSource(bytes: Buffer): Promise<{ bundle: Buffer; validation: string }> {
    const dir = await mkdtemp(join(tmpdir(), 'portcullis-bundle-'));
    try {
      const src = join(dir, 'src');
      await mkdir(src);
      await writeFile(join(dir, 'upload.tar.gz'), bytes);
      try {
        // Bounded and without links before anything reaches the disk; tar refuses absolute paths
        // and '..' by default, so an upload cannot write outside src.
        await checkArchive(bytes);
        await extract({ file: join(dir, 'upload.tar.gz'), cwd: src, strict: true });
      } catch (error) {
        throw invalid('not a valid tar.gz of policy sources', (error as Error).message);
      }
      const files = await listFiles(src);
      if (!files.some((file) => file.endsWith('.rego')))
        throw invalid('no policy sources', 'the archive holds no .rego file');
      // Outside src, so that it is neither compiled nor part of the revision.
      const capabilities = join(dir, 'capabilities.json');
      await writeFile(capabilities, await this.#capabilities());
      const restricted = ['--capabilities', capabilities];
      await this.#opaStep('it does not compile (opa check --strict)', [
        'check',
        '--strict',
        ...restricted,
        src,
      ]);
      const tests = await this.#opaStep('its own tests fail (opa test)', ['test', ...restricted, src]);
      const revision = createHash('sha256')
        .update(
          files
            .filter((file) => !file.endsWith('_test.rego'))
            .sort()
            .join('\n'),
        )
        .update(bytes)
        .digest('hex')
        .slice(0, 16);
      const out = join(dir, 'bundle.tar.gz');
      await this.#opaStep('it does not build to Wasm with the decision entrypoint (opa build)', [
        ...opaWasmBuildArgs({ source: src, out, revision }),
        ...restricted,
      ]);
      return { bundle: await readFile(out), validation: tests.trim().split('\n').pop() ?? 'passed' };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** The restricted capabilities (opa-sandbox.ts), asked of the binary once; a failure is retried. */
  #capabilities(): Promise<string> {
    this.#restricted ??= restrictedCapabilities(this.#opa).catch((error: unknown) => {
      this.#restricted = undefined;
      throw error;
    });
    return this.#restricted;
  }

  async #opaStep(step: string, args: string[]): Promise<string> {
    try {
      const { stdout } = await run(this.#opa, args, {
        env: opaEnvironment(),
        maxBuffer: 16 * 1024 * 1024,
        timeout: 120_000,
      });
      return stdout;
    } catch (error) {
      const failure = error as { stdout?: string; stderr?: string; message: string };
      throw invalid(step, `${failure.stderr ?? ''}${failure.stdout ?? ''}` || failure.message);
    }
  }

  /** Loads the bundle in a fresh engine and checks every smoke case. */
  async #smoke(bundle: Buffer): Promise<Validation['smoke']> {
    const engine = new PolicyEngine();
    try {
      await engine.loadBundle(await readBundle(bundle));
    } catch (error) {
      if (error instanceof BundleError) throw invalid('the built bundle is unusable', error.message);
      throw error;
    }
    engine.setDirectory(structuredClone(SMOKE_DIRECTORY));
    const results = SMOKE_CASES.map((smoke) => {
      const decision = engine.decide(smoke.input);
      return {
        name: smoke.name,
        expected: smoke.expected,
        actual: decision.outcome === 'deny' ? `deny:${decision.reasons.join(',')}` : decision.outcome,
      };
    });
    const failed = results.filter((result) => !result.actual.startsWith(result.expected));
    if (failed.length > 0)
      throw invalid(
        'smoke decisions differ',
        failed.map((f) => `${f.name}: expected ${f.expected}, got ${f.actual}`).join('; '),
      );
    return results;
  }
}

async function listFiles(dir: string, root = dir): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((entry) =>
      entry.isDirectory()
        ? listFiles(join(dir, entry.name), root)
        : Promise.resolve([relative(root, join(dir, entry.name))]),
    ),
  );
  return nested.flat();
}
