import { randomUUID } from 'node:crypto';
import { type LoadedPolicy, loadPolicy } from '@open-policy-agent/opa-wasm';
import { type Decision, ReasonCode } from '@portcullis/contracts';
import { z } from 'zod';
import { BundleError, type PolicyBundle } from './bundle.ts';

/** The bundle's decision entrypoint; `rego/build.sh` compiles it first, so its id is 0. */
export const DECISION_ENTRYPOINT = 'portcullis/authz/decision';

/** What the policy must return; anything else is treated as a policy error and denied. */
const PolicyResult = z.object({ allow: z.boolean(), reasons: z.array(ReasonCode).min(1) });

interface Loaded {
  policy: LoadedPolicy;
  entrypoint: number;
  bundle: PolicyBundle;
}

/**
 * Evaluates the authorization policy in-process. Fail closed: without a loaded bundle, without a
 * directory snapshot, or when the policy returns something unexpected, every call is denied.
 *
 * Evaluation is synchronous, so swapping the bundle or directory between two evaluations is
 * atomic: an evaluation always sees one complete bundle with one complete directory.
 */
export class PolicyEngine {
  #loaded: Loaded | undefined;
  #directory: Record<string, unknown> | undefined;

  get revision(): string | undefined {
    return this.#loaded?.bundle.revision;
  }

  /** Compiles and installs a bundle. On any error the previous bundle stays active. */
  async loadBundle(bundle: PolicyBundle): Promise<void> {
    let policy: LoadedPolicy;
    try {
      policy = await loadPolicy(bundle.wasm);
    } catch (error) {
      throw new BundleError(`policy.wasm failed to load: ${(error as Error).message}`);
    }
    const entrypoint = (policy.entrypoints as Record<string, number>)[DECISION_ENTRYPOINT];
    if (entrypoint === undefined) throw new BundleError(`bundle lacks the entrypoint ${DECISION_ENTRYPOINT}`);
    if (this.#directory) policy.setData({ ...bundle.data, directory: this.#directory });
    this.#loaded = { policy, entrypoint, bundle };
  }

  /** Replaces the directory snapshot (agents, entitlements) the policy sees as data.directory. */
  setDirectory(directory: Record<string, unknown>): void {
    if (this.#loaded) this.#loaded.policy.setData({ ...this.#loaded.bundle.data, directory });
    this.#directory = directory;
  }

  /** Decides one call. Never throws: failures become denials with a reason code. */
  decide(input: Record<string, unknown>): Decision {
    const decisionId = randomUUID();
    const loaded = this.#loaded;
    if (!loaded) return { decisionId, outcome: 'deny', reasons: ['no_policy'], policyRevision: 'none' };
    const policyRevision = loaded.bundle.revision;
    if (!this.#directory) return { decisionId, outcome: 'deny', reasons: ['no_directory'], policyRevision };
    try {
      const results = loaded.policy.evaluate(input, loaded.entrypoint) as { result?: unknown }[];
      const parsed = PolicyResult.safeParse(results[0]?.result);
      if (!parsed.success) return { decisionId, outcome: 'deny', reasons: ['policy_error'], policyRevision };
      const { allow, reasons } = parsed.data;
      return { decisionId, outcome: allow ? 'allow' : 'deny', reasons, policyRevision };
    } catch {
      return { decisionId, outcome: 'deny', reasons: ['policy_error'], policyRevision };
    }
  }
}
