import { hash, randomUUID } from 'node:crypto';
import {
  ActionClass,
  type Decision,
  type ToolCallCompletedV1,
  type ToolCallOutcome,
  type ToolCallRequestedV1,
} from '@portcullis/contracts';
import type { PolicyEngine } from '@portcullis/policy-engine';
import type { Logger } from '@portcullis/runtime';
import canonicalize from 'canonicalize';
import { auditText } from '../audit-text.ts';
import type { Agent } from '../directory.ts';
import { type AuditSink, AuditUnavailableError } from '../durable-audit.ts';
import type { GatewayMetrics, RateLimitRefusal } from '../gateway-metrics.ts';
import { LogThrottle } from '../log-throttle.ts';
import { type RateLimiter, rateLimitedError, UnknownRateClassError } from '../rate-limit.ts';
import { RpcCode, RpcError } from './json-rpc.ts';

/** Where a denied agent learns how to ask for access; part of every denial. */
export const ACCESS_REQUEST_HINT =
  'Ask the agent owner to request an entitlement for this app and action class.';

/** Who is calling: the authenticated agent and, for a delegated OAuth token, the human user. */
export interface Caller {
  agent: Agent;
  user?: { id: string };
}

/** One operation the policy judges: a tool call, a resource read or a prompt fetch. */
export interface Operation {
  appId: string;
  /** The upstream tool name, or `resources/read` / `prompts/get` with the target in `arguments`. */
  tool: string;
  annotations?: unknown;
  actionClass: ActionClass;
  arguments: Record<string, unknown>;
}

export interface EnforcementDeps {
  engine: PolicyEngine;
  audit: AuditSink;
  limiter?: RateLimiter;
  logger: Logger;
  instanceId: string;
  metrics?: GatewayMetrics;
}

/**
 * Runs what follows a call's admission so that the call ends on record whatever happens: should
 * `work` throw before it reported the outcome (a bug, or a failure nobody foresaw), the call is
 * finished as `ifThrown` (asked at that moment: whether the request had gone upstream) with an
 * internal error before the error goes on. Without it the ledger would hold a request with no
 * outcome, and the audit sink would keep the room it reserved for that outcome until a restart.
 */
export async function endsOnRecord<T>(
  admission: Promise<AdmittedCall>,
  ifThrown: ToolCallOutcome | (() => ToolCallOutcome),
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (error) {
    // Refused admissions carry their own outcome (recorded by Enforcement): nothing to add.
    const admitted = await admission.catch(() => undefined);
    admitted?.finish(typeof ifThrown === 'function' ? ifThrown() : ifThrown, {
      error: { code: 'internal_error', message: 'the gateway failed while handling the call' },
    });
    throw error;
  }
}

/** A call the policy allowed and the ledger has on record; report its end with finish() (once). */
export interface AdmittedCall {
  callId: string;
  decision: Decision;
  /**
   * Records the call's outcome event in the background: nobody waits for it (it may wait a few
   * milliseconds to share a disk write or a produce request); shutdown does, through `settled()`.
   */
  finish(outcome: ToolCallOutcome, detail?: OutcomeDetail): void;
}

/** What an outcome event says besides the outcome. */
export interface OutcomeDetail {
  error?: { code: string; message: string };
  /** Findings DLP redacted from the result, by detector type. */
  redactions?: Record<string, number>;
  /** Findings DLP redacted from the arguments before they went upstream. */
  argumentRedactions?: Record<string, number>;
}

/** When a call started and when the policy had decided it (performance.now()). */
interface CallTimes {
  started: number;
  decided: number;
}

/**
 * An allowed call within its limits whose request event may not be durable yet (see `judge`). The
 * caller may prepare the upstream request now (DLP on the arguments, the HTTP request) but sends
 * nothing before `admitted` resolves; `admitted` rejects with an RpcError when the audit path
 * refuses the call, and every caller must await it.
 */
export interface ClearedCall {
  decision: Decision;
  admitted: Promise<AdmittedCall>;
}

/** A call that must not run: answer with `result` (tools/call) or throw `error` (other methods). */
export interface RefusedCall {
  callId: string;
  decision: Decision;
  /** What the agent reads: reason codes, policy revision, how to request access or who approves. */
  detail: Record<string, unknown>;
  error: RpcError;
}

/**
 * The enforcement pipeline shared by tools/call, resources/read and prompts/get: decide
 * in-process, apply the rate limit the policy's obligation names, record the request and the
 * decision durably, and only then let the caller reach the upstream.
 *
 * Invariants: nothing reaches an upstream unless the policy said allow AND the request event was
 * accepted by Kafka or the spool (fail closed: an unrecordable call is refused); every admitted
 * or refused call gets an outcome event.
 */
export class Enforcement {
  readonly #deps: EnforcementDeps;
  /** Outcome events on their way: the agent's answer does not wait for them, shutdown does. */
  readonly #outcomes = new Set<Promise<void>>();
  /** Audit refusals are logged once per agent per 10 s (LogThrottle). */
  readonly #refusalLog = new LogThrottle();

  constructor(deps: EnforcementDeps) {
    this.#deps = deps;
  }

  /** The policy's view of whether the caller may see an operation in a listing. */
  visible(caller: Caller, operation: Omit<Operation, 'arguments'>): boolean {
    const decision = this.#deps.engine.decide(
      policyInput(
        caller,
        { ...operation, arguments: {} },
        { call_id: 'listing', instance_id: this.#deps.instanceId },
      ),
    );
    return decision.visible;
  }

  /**
   * Whether the policy allows an operation now, as it would a call (time windows, argument
   * constraints, approvals) — for what the gateway relays without recording a call (a resource
   * subscription, a completion): an approval requirement or any denial refuses it.
   */
  permits(caller: Caller, operation: Operation): boolean {
    const decision = this.#deps.engine.decide(
      policyInput(caller, operation, { call_id: 'relayed', instance_id: this.#deps.instanceId }),
    );
    return decision.outcome === 'allow';
  }

  /** Resolves once an operation is admitted or refused (see `judge`). */
  async admit(caller: Caller, operation: Operation): Promise<AdmittedCall | RefusedCall> {
    const cleared = await this.judge(caller, operation);
    return 'admitted' in cleared ? cleared.admitted : cleared;
  }

  /**
   * Decides an operation at once and starts admitting it: recording the request and the decision
   * durably and, for an allowed call, checking the rate limits, side by side. Settles as soon as
   * what may stop the call before its recording is known:
   * - allowed and within its rate limits: a ClearedCall, while the request event may still be on
   *   its way to disk or to Kafka;
   * - not allowed by policy: the refusal to answer with, once the call is on record;
   * - rejects with an RpcError when a limit, or the audit path, refused the call (on record as not
   *   executed).
   */
  judge(caller: Caller, operation: Operation): Promise<ClearedCall | RefusedCall> {
    const { engine, metrics } = this.#deps;
    const callId = randomUUID();
    const started = performance.now();
    // `visible` is for listings only; the ledger records the decision as the contract defines it.
    const {
      actionClass: judgedAs,
      visible: _listing,
      ...decision
    } = engine.decide(
      policyInput(caller, operation, { call_id: callId, instance_id: this.#deps.instanceId }),
    );
    const decided = performance.now();
    metrics?.step('policy', decided - started);
    metrics?.decided(operation.appId, decision.outcome);
    // Members in the contract's order: the audit sink publishes a valid event as it is (where zod
    // used to publish its copy in schema order), so the JSON keeps the order it had (durable-audit.ts).
    const requested: ToolCallRequestedV1 = {
      type: 'tool_call.requested',
      ...this.#envelope(callId),
      agent: { id: caller.agent.id, name: caller.agent.name, owner: caller.agent.owner },
      app: { id: operation.appId },
      tool: { name: operation.tool },
      // The class the policy judged the call as: an admin override in the directory may differ.
      actionClass: isActionClass(judgedAs) ? judgedAs : operation.actionClass,
      argumentsDigest: digestOf(operation.arguments),
      decision,
      ...(caller.user ? { onBehalfOf: { userId: caller.user.id } } : {}),
    };
    const times = { started, decided };
    if (decision.outcome !== 'allow') return this.#refused(operation.appId, requested, times);
    // Limits apply to calls policy allowed, in the class the policy's obligation names. The check
    // runs while the request is being recorded: a limited call is on record as not executed.
    const limiting = this.#rateLimit(
      caller.agent,
      operation,
      decision.obligations?.rateLimitClass ?? 'standard',
    );
    const admitted = this.#admitted(operation.appId, requested, limiting, times);
    // Whoever gets the ClearedCall awaits `admitted`; should a caller fail before it does, a
    // refusal here must not become an unhandled rejection that ends the process.
    admitted.catch(() => {});
    return limiting.then(async (refused) => {
      if (refused) {
        // Over a limit: `admitted` throws the refusal once the call is on record as not executed.
        await admitted;
        throw refused;
      }
      return { decision, admitted };
    });
  }

  /** An allowed call once on record and within its limits; throws a limit's or the audit path's refusal. */
  async #admitted(
    appId: string,
    requested: ToolCallRequestedV1,
    limiting: Promise<RpcError | undefined>,
    { started, decided }: CallTimes,
  ): Promise<AdmittedCall> {
    const { callId, decision } = requested;
    const limited = await this.#record(requested, limiting, decided);
    const finish = this.#finisher(appId, callId, started);
    if (limited) {
      this.#deps.metrics?.rateLimited(refusalReason(limited));
      finish('not_executed', { error: { code: String(limited.data?.code), message: limited.message } });
      throw limited;
    }
    return { callId, decision, finish };
  }

  /** A call the policy did not allow, once on record as not executed. */
  async #refused(
    appId: string,
    requested: ToolCallRequestedV1,
    { started, decided }: CallTimes,
  ): Promise<RefusedCall> {
    const { callId } = requested;
    await this.#record(requested, undefined, decided);
    this.#finisher(appId, callId, started)('not_executed');
    return refusal(requested);
  }

  /**
   * Makes the request event durable, and meanwhile waits for the rate limiter's verdict (its
   * refusal, if any). Throws when the event cannot be recorded: fail closed.
   */
  async #record(
    requested: ToolCallRequestedV1,
    limiting: Promise<RpcError | undefined> | undefined,
    decided: number,
  ): Promise<RpcError | undefined> {
    const { audit, logger, metrics } = this.#deps;
    try {
      await audit.publish(requested);
      metrics?.step('audit', performance.now() - decided);
      return await limiting;
    } catch (error) {
      // The limiter's own failures become errors inside #rateLimit; this is the audit path.
      await limiting;
      metrics?.auditRefused();
      // A call whose request cannot be recorded (Kafka away and spool full) is not executed. An
      // agent retrying in a loop would write a line per attempt: one per agent per 10 s (the
      // metric counts them all).
      const held = this.#refusalLog.admit(requested.agent.id);
      if (held !== undefined)
        logger.error(
          { err: error, callId: requested.callId, agentId: requested.agent.id, refusalsNotLogged: held },
          'audit path unavailable; call refused',
        );
      throw new RpcError(
        RpcCode.InternalError,
        'Audit path unavailable: the call was not executed. Retry later.',
        {
          code: 'audit_unavailable',
          retryable: true,
          retryAfterMs: error instanceof AuditUnavailableError ? error.retryAfterMs : 1000,
        },
      );
    }
  }

  /**
   * Reports a call's end: its outcome event, recorded in the background (see AdmittedCall.finish).
   * Once per call: the first report is the outcome, later ones are ignored (endsOnRecord reports a
   * call it cannot tell was reported already).
   */
  #finisher(appId: string, callId: string, started: number): AdmittedCall['finish'] {
    let finished = false;
    return (outcome, detail) => {
      if (finished) return;
      finished = true;
      const durationMs = performance.now() - started;
      // The agent's answer goes out first: `finish` is called just before the answer is written,
      // in the same turn of the event loop, and the outcome event is built in the next one.
      // Shutdown still waits for it (#outcomes holds it from now on).
      const publishing = nextTurn().then(() => this.#complete(appId, callId, durationMs, outcome, detail));
      this.#outcomes.add(publishing);
      void publishing.finally(() => this.#outcomes.delete(publishing));
    };
  }

  /** Resolves once every outcome event started so far is recorded (shutdown waits for it). */
  async settled(): Promise<void> {
    while (this.#outcomes.size > 0) await Promise.allSettled([...this.#outcomes]);
  }

  async #complete(
    appId: string,
    callId: string,
    durationMs: number,
    outcome: ToolCallOutcome,
    detail: OutcomeDetail = {},
  ): Promise<void> {
    const completed: ToolCallCompletedV1 = {
      type: 'tool_call.completed',
      ...this.#envelope(callId),
      outcome,
      ...(detail.error
        ? { error: { code: detail.error.code, message: auditText(detail.error.message) } }
        : {}),
      durationMs: Math.round(durationMs * 1000) / 1000,
      ...(detail.redactions && Object.keys(detail.redactions).length > 0
        ? { redactions: detail.redactions }
        : {}),
      // What DLP took out of the arguments before they went upstream: counts, as for the result.
      ...(detail.argumentRedactions && Object.keys(detail.argumentRedactions).length > 0
        ? { argumentRedactions: detail.argumentRedactions }
        : {}),
    };
    this.#count(appId, outcome, completed.durationMs, detail);
    try {
      await this.#deps.audit.publish(completed);
    } catch (publishError) {
      // The call already happened; its request is on record. The audit sink keeps room in the spool
      // for outcomes when it admits a call, so this is a disk failure.
      this.#deps.logger.error({ err: publishError, callId, outcome }, 'outcome event could not be recorded');
    }
  }

  /**
   * The outcome in the metrics. Never throws: this runs before the outcome event is published, and
   * a metric must not cost the ledger an event.
   */
  #count(appId: string, outcome: ToolCallOutcome, durationMs: number, detail: OutcomeDetail): void {
    const { metrics, logger } = this.#deps;
    if (!metrics) return;
    try {
      metrics.completed(appId, outcome, durationMs);
      metrics.redacted('result', detail.redactions);
      metrics.redacted('arguments', detail.argumentRedactions);
    } catch (error) {
      logger.warn({ err: error }, 'call outcome not counted in the metrics');
    }
  }

  /** An error to answer with when the call is over a limit or cannot be checked (fail closed). */
  async #rateLimit(agent: Agent, operation: Operation, rateClass: string): Promise<RpcError | undefined> {
    const { limiter, logger } = this.#deps;
    if (!limiter) return undefined;
    try {
      const verdict = await limiter.consume(agent.id, `${operation.appId}/${operation.tool}`, rateClass);
      if (verdict.allowed) return undefined;
      return rateLimitedError(verdict);
    } catch (error) {
      logger.error({ err: error, rateClass }, 'rate limit could not be checked; call refused');
      const unknownClass = error instanceof UnknownRateClassError;
      return new RpcError(
        RpcCode.InternalError,
        'Rate limit could not be checked: the call was not executed.',
        {
          code: unknownClass ? 'rate_class_unknown' : 'rate_limiter_unavailable',
          retryable: !unknownClass,
          ...(unknownClass ? {} : { retryAfterMs: 1000 }),
        },
      );
    }
  }

  #envelope(callId: string) {
    return {
      version: 1 as const,
      eventId: randomUUID(),
      occurredAt: new Date().toISOString(),
      callId,
      source: { service: 'broker', instanceId: this.#deps.instanceId },
    };
  }
}

/**
 * The policy input for one operation (documented in docs/policy-authoring.md). Time is added by
 * the engine.
 */
export function policyInput(
  caller: Caller,
  operation: Operation,
  request: { call_id: string; instance_id: string },
): Record<string, unknown> {
  const { agent, user } = caller;
  return {
    request,
    agent: {
      id: agent.id,
      owner: agent.owner,
      state: agent.state,
      client_type: agent.clientType ?? 'unknown',
    },
    ...(user ? { user: { id: user.id } } : {}),
    app: { id: operation.appId },
    tool: { name: operation.tool, annotations: operation.annotations ?? {} },
    action_class: operation.actionClass,
    arguments: operation.arguments,
  };
}

/**
 * What an agent reads when the policy did not allow its call. `actionClass` is the class the call
 * was judged as: what a grant must name for it (a tool that declares nothing about itself needs
 * delete, ADR 0046), so the agent's owner knows what to ask for.
 */
function refusal({ callId, decision, actionClass }: ToolCallRequestedV1): RefusedCall {
  if (decision.outcome === 'require_approval') {
    const detail = {
      decision: 'require_approval',
      code: 'approval_required',
      reasons: decision.reasons,
      actionClass,
      approvers: decision.approvers ?? [],
      policyRevision: decision.policyRevision,
      callId,
      decisionId: decision.decisionId,
    };
    return {
      callId,
      decision,
      detail,
      error: new RpcError(
        RpcCode.ApprovalRequired,
        `Approval required (${decision.reasons.join(', ')}); the call was not executed.`,
        detail,
      ),
    };
  }
  const detail = {
    decision: 'deny',
    code: 'denied',
    reasons: decision.reasons,
    actionClass,
    policyRevision: decision.policyRevision,
    callId,
    decisionId: decision.decisionId,
    howToRequestAccess: ACCESS_REQUEST_HINT,
  };
  return {
    callId,
    decision,
    detail,
    error: new RpcError(RpcCode.PolicyDenied, `Denied by policy (${decision.reasons.join(', ')}).`, detail),
  };
}

const ACTION_CLASSES: ReadonlySet<string> = new Set(ActionClass.options);
/** A plain set lookup: this runs on every call, where zod's safeParse would build a result object. */
function isActionClass(value: string): value is ActionClass {
  return ACTION_CLASSES.has(value);
}

/** Resolves in the event loop's check phase, after this turn's I/O callbacks and microtasks. */
function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** SHA-256 of the arguments' RFC 8785 canonical JSON: equal arguments always give equal digests. */
export function digestOf(args: Record<string, unknown>): string {
  // crypto.hash: one call, no Hash object to build per call (this runs on every tools/call).
  return hash('sha256', canonicalize(args) ?? 'null', 'hex');
}

/** The metrics' name for why #rateLimit refused (its error's data says which limit, or why none could decide). */
function refusalReason(error: RpcError): RateLimitRefusal {
  const { code, scope } = error.data ?? {};
  if (code === 'rate_limiter_unavailable') return 'limiter_unavailable';
  if (code === 'rate_class_unknown') return 'unknown_class';
  return scope === 'agent' ? 'agent_limit' : 'tool_limit';
}
