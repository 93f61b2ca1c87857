import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
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
import { AppError, type Logger } from '@portcullis/runtime';
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

/** What an activation or a rollback did: recorded always; `published` once Kafka acknowledged it. */
export interface ActivationOutcome {
  activationId: number;
  revision: string;
  published: boolean;
}

/** The advisory lock that makes one publication of the newest activation at a time, across replicas. */
const PUBLISH_LOCK = 'portcullis.policy-activation.publish';

/** One activation at a time, so that the history's order is the order they were made in. */
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
 * A bundle is activated by recording the activation, then publishing it on the compacted policy
 * topic, which every broker follows. The history is the outbox: what it records as active is what
 * the topic ends on, even when Kafka is away at the moment of activation.
 */
export class BundleService {
  readonly #pool: pg.Pool;
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #opa: string;
  readonly #logger: Logger;
  readonly #publishWaitMs: number;
  #restricted: Promise<string> | undefined;
  /** The publication passes of this process, one after another (see publishPending). */
  #passes: Promise<unknown> = Promise.resolve();
  #queuedPasses = 0;
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(options: {
    pool: pg.Pool;
    producer: Producer;
    topicPrefix: string;
    opaBin: string;
    logger: Logger;
    /** How long an activation waits for Kafka's acknowledgement before answering `published: false`. */
    publishWaitMs?: number;
  }) {
    this.#pool = options.pool;
    this.#producer = options.producer;
    this.#topic = topicName(options.topicPrefix, Topics.policy);
    this.#opa = options.opaBin;
    this.#logger = options.logger;
    this.#publishWaitMs = options.publishWaitMs ?? 5000;
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

  /**
   * Activates a stored bundle: records the activation, then publishes it to every broker. The
   * record is what counts: if Kafka does not acknowledge within `publishWaitMs`, the answer says
   * `published: false` and the publication goes on (and is retried) in the background.
   */
  async activate(id: number, by: string): Promise<ActivationOutcome> {
    const activation = await withTransaction(this.#pool, async (client) => {
      await lockActivations(client);
      return this.#recordActivation(client, id, by);
    });
    return { ...activation, published: await this.#publishedWithin(activation.activationId) };
  }

  /** Re-activates the bundle that was active before the current one. */
  async rollback(by: string): Promise<ActivationOutcome & { bundleId: number }> {
    const activation = await withTransaction(this.#pool, async (client) => {
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
      const bundleId = Number(previous.bundle_id);
      return { ...(await this.#recordActivation(client, bundleId, by, Number(current.id))), bundleId };
    });
    return { ...activation, published: await this.#publishedWithin(activation.activationId) };
  }

  /** Records an activation; the caller holds the activations lock (lockActivations). */
  async #recordActivation(
    client: pg.PoolClient,
    id: number,
    by: string,
    rollbackOf?: number,
  ): Promise<{ activationId: number; revision: string }> {
    const { rows } = await client.query<{ revision: string }>(
      'SELECT revision FROM directory.policy_bundles WHERE id = $1',
      [id],
    );
    const bundle = rows[0];
    if (!bundle) throw new AppError('bundle_not_found', `no bundle ${id}`, { status: 404 });
    const inserted = await client.query<{ id: string }>(
      'INSERT INTO directory.policy_activations (bundle_id, activated_by, rollback_of) VALUES ($1, $2, $3) RETURNING id',
      [id, by, rollbackOf ?? null],
    );
    return { activationId: Number(inserted.rows[0]!.id), revision: bundle.revision };
  }

  /** Whether activation `activationId` (or a newer one) reached Kafka within publishWaitMs. */
  async #publishedWithin(activationId: number): Promise<boolean> {
    const publishing = this.publishPending().then(
      (published) => published !== undefined && published >= activationId,
      (error: unknown) => {
        this.#logger.warn({ err: error, activationId }, 'policy activation not published yet; will retry');
        return false;
      },
    );
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), this.#publishWaitMs);
    });
    try {
      return await Promise.race([publishing, waited]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Publishes the newest activation unless it already was; resolves to the id of the newest
   * activation now published (undefined: none yet). Passes run one after another in this process,
   * and under an advisory lock across replicas: whichever publishes last publishes the newest, so
   * the topic ends on what the history says is active. Throws if Kafka does not acknowledge.
   */
  publishPending(): Promise<number | undefined> {
    this.#queuedPasses++;
    const pass = this.#passes
      .then(() => this.#publishNewest())
      .finally(() => {
        this.#queuedPasses--;
      });
    this.#passes = pass.catch(() => undefined);
    return pass;
  }

  /**
   * Publishes what an earlier attempt left behind (Kafka away, a crash between commit and
   * publication), now and every `intervalMs`, unless a pass is already under way.
   */
  startPublishing(intervalMs: number): void {
    const retry = () => {
      if (this.#queuedPasses > 0) return;
      this.publishPending().catch((error: unknown) =>
        this.#logger.warn({ err: error }, 'policy activation not published yet; will retry'),
      );
    };
    retry();
    this.#retryTimer = setInterval(retry, intervalMs);
  }

  /**
   * Stops the retries. A pass under way is not waited for: with Kafka away it could outlast the
   * shutdown; if it does not finish, the activation stays unpublished and the next start sends it.
   */
  stopPublishing(): void {
    clearInterval(this.#retryTimer);
  }

  async #publishNewest(): Promise<number | undefined> {
    return withTransaction(this.#pool, async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [PUBLISH_LOCK]);
      const { rows } = await client.query<{
        id: string;
        event_id: string;
        bundle_id: string;
        activated_by: string;
        rollback_of: string | null;
        activated_at: Date;
        published_at: Date | null;
        revision: string;
        digest: string;
      }>(
        `SELECT a.id, a.event_id, a.bundle_id, a.activated_by, a.rollback_of, a.activated_at,
                a.published_at, b.revision, b.digest
           FROM directory.policy_activations a JOIN directory.policy_bundles b ON b.id = a.bundle_id
          ORDER BY a.id DESC LIMIT 1`,
      );
      const newest = rows[0];
      if (!newest) return undefined;
      if (newest.published_at) return Number(newest.id);
      // The bundle's bytes only when there is something to publish: this pass runs every few
      // seconds on every replica.
      // Through this transaction's connection, not a second one from the pool.
      const bytes = await client.query<{ bundle: Buffer }>(
        'SELECT bundle FROM directory.policy_bundles WHERE id = $1',
        [newest.bundle_id],
      );
      const bundle = bytes.rows[0]!.bundle;
      const event: PolicyActivatedV1 = {
        type: 'policy.activated',
        version: 1,
        eventId: newest.event_id,
        occurredAt: newest.activated_at.toISOString(),
        bundleId: Number(newest.bundle_id),
        revision: newest.revision,
        digest: newest.digest,
        activatedBy: newest.activated_by,
        ...(newest.rollback_of ? { rollbackOf: newest.rollback_of } : {}),
        bundleBase64: bundle.toString('base64'),
      };
      await this.#producer.send({
        topic: this.#topic,
        acks: -1,
        messages: [{ key: 'active', value: JSON.stringify(event) }],
      });
      // Older ones never published are superseded: the topic's one key now holds the newest.
      await client.query(
        'UPDATE directory.policy_activations SET published_at = now() WHERE id <= $1 AND published_at IS NULL',
        [newest.id],
      );
      return Number(newest.id);
    });
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
