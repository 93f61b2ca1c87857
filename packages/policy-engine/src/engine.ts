import { randomUUID } from 'node:crypto';
import { type LoadedPolicy, loadPolicy } from '@open-policy-agent/opa-wasm';
import { compileSchema } from '@portcullis/compiled-schema';
import { type Decision, DlpObligation, ReasonCode } from '@portcullis/contracts';
import { z } from 'zod';
import { BundleError, type PolicyBundle } from './bundle.ts';
import { DataPatcher, type DirectoryChange } from './data-patcher.ts';

/** The bundle's decision entrypoint; `rego/build.sh` compiles it first, so its id is 0. */
export const DECISION_ENTRYPOINT = 'portcullis/authz/decision';

/**
 * What the policy must return; anything else is treated as a policy error and denied. The DLP
 * obligation is required and strict: a missing direction or category, or a mode other than allow,
 * redact or block, fails the parse, so a malformed obligation can never mean "allow".
 */
export const PolicyResult = z.object({
  outcome: z.enum(['allow', 'deny', 'require_approval']),
  allow: z.boolean(),
  reasons: z.array(ReasonCode).min(1),
  approvers: z.array(z.string()),
  action_class: z.string(),
  visible: z.boolean(),
  obligations: z.object({
    rate_limit_class: z.string().min(1),
    redact: z.array(z.string()),
    dlp: DlpObligation,
  }),
});
export type PolicyResult = z.infer<typeof PolicyResult>;

/**
 * PolicyResult with an ajv validator compiled from it in front (ADR 0044): zod costs tens of µs
 * per decision, the compiled check a few; anything it does not accept still goes to zod, so what
 * is a policy_error is unchanged. In place: opa-wasm hands each evaluation a fresh object (its
 * JSON.parse of the policy's output) that nothing else holds, so unknown keys are deleted from it
 * as zod would have stripped them.
 */
const policyResult = compileSchema(PolicyResult, { strip: 'in-place' });

/** A decision with the details the enforcement point acts on beyond the ledger's record. */
export interface EngineDecision extends Decision {
  /** The action class the policy judged the call as (an admin override may change it). */
  actionClass: string;
  /**
   * Whether the tool belongs in the agent's listings (tools/list): some arguments at some time
   * could be allowed. Listing-only; false whenever the engine denies on its own (no policy, …).
   */
  visible: boolean;
}

/** The time fields the policy reads (Wasm has no time built-ins, so the engine passes them in). */
export interface PolicyTime {
  now_ms: number;
  /** 0 = Sunday … 6 = Saturday, UTC. */
  weekday: number;
  /** Minutes since midnight UTC. */
  minute_of_day: number;
}

/** The input.time document for a given instant. */
export function policyTime(nowMs: number): PolicyTime {
  const date = new Date(nowMs);
  return {
    now_ms: nowMs,
    weekday: date.getUTCDay(),
    minute_of_day: date.getUTCHours() * 60 + date.getUTCMinutes(),
  };
}

interface Loaded {
  entrypoint: number;
  bundle: PolicyBundle;
  patcher: DataPatcher;
}

/**
 * Evaluates the authorization policy in-process. Fail closed: without a loaded bundle, without a
 * directory snapshot, or when the policy returns something unexpected, every call is denied.
 *
 * Atomicity: evaluation is synchronous and a new bundle is compiled and given the directory
 * completely before it replaces the old one in a single assignment, so every evaluation sees one
 * complete bundle with one complete directory, and its decision names that bundle's revision.
 */
export class PolicyEngine {
  #loaded: Loaded | undefined;
  #directory: Record<string, unknown> | undefined;

  get revision(): string | undefined {
    return this.#loaded?.bundle.revision;
  }

  /** True when both a bundle and a directory snapshot are loaded, i.e. decisions can allow. */
  get ready(): boolean {
    return this.#loaded !== undefined && this.#directory !== undefined;
  }

  /** Compiles and installs a bundle. On any error the previous bundle stays active. */
  async loadBundle(bundle: PolicyBundle): Promise<void> {
    let policy: LoadedPolicy;
    try {
      policy = await loadPolicy(bundle.wasm);
    } catch (error) {
      throw new BundleError(`policy.wasm failed to load: ${(error as Error).message ?? String(error)}`);
    }
    const entrypoint = (policy.entrypoints as Record<string, number>)[DECISION_ENTRYPOINT];
    if (entrypoint === undefined) throw new BundleError(`bundle lacks the entrypoint ${DECISION_ENTRYPOINT}`);
    const patcher = new DataPatcher(policy, bundle.wasm, bundle.data);
    // The directory is read again after the await above, so a change applied meanwhile is kept.
    if (this.#directory) patcher.replace(this.#directory);
    this.#loaded = { entrypoint, bundle, patcher };
  }

  /** Replaces the directory snapshot (agents, apps, entitlements, …) the policy sees as data.directory. */
  setDirectory(directory: Record<string, unknown>): void {
    this.#loaded?.patcher.replace(directory);
    this.#directory = directory;
  }

  /**
   * Applies changes to the loaded directory in place, e.g. one agent's entitlements, without
   * re-serializing the whole directory. Throws if no directory snapshot is loaded.
   */
  applyDirectoryChanges(changes: readonly DirectoryChange[]): void {
    const directory = this.#directory;
    if (!directory) throw new Error('no directory snapshot loaded; call setDirectory first');
    for (const change of changes) applyToObject(directory, change);
    this.#loaded?.patcher.apply(changes, directory);
  }

  /** The directory document the engine holds (read-only use: for diagnostics and tests). */
  get directory(): Readonly<Record<string, unknown>> | undefined {
    return this.#directory;
  }

  /**
   * Decides one call. Never throws: failures become denials with a reason code. When the input
   * has no `time`, the current time is added (Wasm cannot read the clock).
   */
  decide(input: Record<string, unknown>, nowMs: number = Date.now()): EngineDecision {
    const decisionId = randomUUID();
    const loaded = this.#loaded;
    const declared = typeof input.action_class === 'string' ? input.action_class : 'unknown';
    const denied = (reason: ReasonCode, policyRevision: string): EngineDecision => ({
      decisionId,
      outcome: 'deny',
      reasons: [reason],
      policyRevision,
      actionClass: declared,
      visible: false,
    });
    if (!loaded) return denied('no_policy', 'none');
    const policyRevision = loaded.bundle.revision;
    if (!this.#directory) return denied('no_directory', policyRevision);
    try {
      const withTime = input.time === undefined ? { ...input, time: policyTime(nowMs) } : input;
      const results = loaded.patcher.policy.evaluate(withTime, loaded.entrypoint) as { result?: unknown }[];
      const parsed = policyResult.safeParse(results[0]?.result);
      if (!parsed.success) return denied('policy_error', policyRevision);
      return toDecision(decisionId, policyRevision, parsed.data);
    } catch {
      return denied('policy_error', policyRevision);
    }
  }

  /** Evaluates the raw policy result for an input (the Data API and `policy eval` use it). */
  evaluateRaw(input: Record<string, unknown>, nowMs: number = Date.now()): unknown {
    const loaded = this.#loaded;
    if (!loaded || !this.#directory) return undefined;
    const withTime = input.time === undefined ? { ...input, time: policyTime(nowMs) } : input;
    return (loaded.patcher.policy.evaluate(withTime, loaded.entrypoint) as { result?: unknown }[])[0]?.result;
  }
}

/** Maps the policy's snake_case result to the contracts' Decision. */
export function toDecision(decisionId: string, policyRevision: string, result: PolicyResult): EngineDecision {
  return {
    decisionId,
    outcome: result.outcome,
    reasons: result.reasons,
    policyRevision,
    actionClass: result.action_class,
    visible: result.visible,
    ...(result.outcome === 'require_approval' ? { approvers: result.approvers } : {}),
    obligations: {
      rateLimitClass: result.obligations.rate_limit_class,
      redact: result.obligations.redact,
      dlp: result.obligations.dlp,
    },
  };
}

/** Applies one change to a plain JSON object (the JS mirror of data.directory). */
export function applyToObject(root: Record<string, unknown>, change: DirectoryChange): void {
  const { path } = change;
  if (path.length === 0) throw new Error('a directory change needs a non-empty path');
  let node = root;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === undefined || next === null || typeof next !== 'object' || Array.isArray(next)) {
      if (change.value === undefined) return; // removing below a missing node: nothing to do
      node[key] = {};
    }
    node = node[key] as Record<string, unknown>;
  }
  const last = path[path.length - 1]!;
  if (change.value === undefined) delete node[last];
  else node[last] = change.value;
}
