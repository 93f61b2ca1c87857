import { createHash, randomUUID } from 'node:crypto';
import { type CallToolResult, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
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
import { actionClassOf } from './action-class.ts';
import type { Agent } from './directory.ts';
import { type AuditSink, AuditUnavailableError } from './durable-audit.ts';
import { type RateLimiter, rateLimitedError, UnknownRateClassError } from './rate-limit.ts';
import { inspectResult, redactUpstreamError } from './result-dlp.ts';
import type { UpstreamApp } from './upstream.ts';

/** Where a denied agent learns how to ask for access; part of every denial. */
const ACCESS_REQUEST_HINT = 'Ask the agent owner to request an entitlement for this app and action class.';

export interface ToolCallDeps {
  engine: PolicyEngine;
  upstream: UpstreamApp;
  audit: AuditSink;
  logger: Logger;
  instanceId: string;
  /** Per agent and per agent+tool limits; absent only in tests that do not exercise them. */
  limiter?: RateLimiter;
}

/**
 * The enforcement pipeline for one tools/call: resolve the tool, decide in-process, record the
 * request and decision durably, and only then call the upstream; record the outcome after.
 */
export class ToolCallHandler {
  readonly #deps: ToolCallDeps;
  #inFlight = 0;

  constructor(deps: ToolCallDeps) {
    this.#deps = deps;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  async handle(
    agent: Agent,
    name: string,
    args: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<CallToolResult> {
    this.#inFlight++;
    try {
      return await this.#handle(agent, name, args, signal);
    } finally {
      this.#inFlight--;
    }
  }

  async #handle(
    agent: Agent,
    name: string,
    args: Record<string, unknown>,
    signal: AbortSignal,
  ): Promise<CallToolResult> {
    const { engine, upstream, audit, logger } = this.#deps;
    const tool = await upstream.findTool(name);
    if (!tool) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);

    const callId = randomUUID();
    const started = performance.now();
    const actionClass = actionClassOf(tool.annotations);
    const { actionClass: judgedAs, ...decision } = engine.decide(
      policyInput(agent, upstream.appId, tool, actionClass, args, {
        call_id: callId,
        instance_id: this.#deps.instanceId,
      }),
    );
    // Limits apply to calls policy allowed, in the class the policy's obligation names.
    const limited =
      decision.outcome === 'allow'
        ? await this.#rateLimit(agent, name, decision.obligations?.rateLimitClass ?? 'standard')
        : undefined;
    const requested: ToolCallRequestedV1 = {
      ...this.#envelope(callId),
      type: 'tool_call.requested',
      agent: { id: agent.id, name: agent.name, owner: agent.owner },
      app: { id: upstream.appId },
      tool: { name },
      // The class the policy judged the call as: an admin override in the directory may differ.
      actionClass: ActionClass.safeParse(judgedAs).success ? (judgedAs as ActionClass) : actionClass,
      argumentsDigest: digestOf(args),
      decision,
    };
    try {
      await audit.publish(requested);
    } catch (error) {
      // Fail closed: a call whose request cannot be recorded (Kafka away and spool full) is not executed.
      logger.error({ err: error, callId }, 'audit path unavailable; call refused');
      throw new McpError(
        ErrorCode.InternalError,
        'Audit path unavailable: the call was not executed. Retry later.',
        {
          code: 'audit_unavailable',
          retryable: true,
          retryAfterMs: error instanceof AuditUnavailableError ? error.retryAfterMs : 1000,
        },
      );
    }

    if (limited) {
      const code = (limited.data as { code: string }).code;
      await this.#complete(callId, started, 'not_executed', { code, message: limited.message });
      throw limited;
    }

    // Anything but allow is not executed. Approval workflows come with the approvals issue; until
    // then the agent gets a machine-readable "approval required" result naming the approvers.
    if (decision.outcome !== 'allow') {
      await this.#complete(callId, started, 'not_executed');
      return decision.outcome === 'require_approval'
        ? approvalRequired(callId, decision)
        : denial(callId, decision);
    }

    let result: CallToolResult;
    try {
      result = await upstream.callTool(name, args, signal);
    } catch (error) {
      // Upstream errors pass through faithfully, but through DLP like any result.
      const failure = redactUpstreamError(error);
      await this.#complete(callId, started, 'failed', {
        code: upstreamErrorCode(error),
        message: failure.message,
      });
      if (error instanceof McpError) throw failure;
      throw new McpError(ErrorCode.InternalError, `Upstream ${upstream.appId} failed: ${failure.message}`);
    }
    // DLP before the agent and the ledger see anything of the result.
    const inspected = inspectResult(result);
    await this.#complete(
      callId,
      started,
      result.isError || inspected.withheld ? 'failed' : 'succeeded',
      inspected.withheld ??
        (result.isError ? { code: 'tool_error', message: 'the tool reported an error' } : undefined),
      inspected.redactions,
    );
    return inspected.result;
  }

  async #complete(
    callId: string,
    started: number,
    outcome: ToolCallOutcome,
    error?: { code: string; message: string },
    redactions?: Record<string, number>,
  ): Promise<void> {
    const completed: ToolCallCompletedV1 = {
      ...this.#envelope(callId),
      type: 'tool_call.completed',
      outcome,
      ...(error ? { error: { code: error.code, message: error.message.slice(0, 1000) } } : {}),
      durationMs: Math.round((performance.now() - started) * 1000) / 1000,
      ...(redactions ? { redactions } : {}),
    };
    try {
      await this.#deps.audit.publish(completed);
    } catch (publishError) {
      // The call already happened; its request is on record. The audit sink spools outcomes while
      // Kafka is away and keeps room for them when it admits a call, so this is a disk failure.
      this.#deps.logger.error({ err: publishError, callId, outcome }, 'outcome event could not be recorded');
    }
  }

  /** An error to answer with when the call is over a limit or cannot be checked (fail closed). */
  async #rateLimit(agent: Agent, tool: string, rateClass: string): Promise<McpError | undefined> {
    const { limiter, upstream, logger } = this.#deps;
    if (!limiter) return undefined;
    try {
      const verdict = await limiter.consume(agent.id, `${upstream.appId}/${tool}`, rateClass);
      return verdict.allowed ? undefined : rateLimitedError(verdict);
    } catch (error) {
      logger.error({ err: error, rateClass }, 'rate limit could not be checked; call refused');
      const unknownClass = error instanceof UnknownRateClassError;
      return new McpError(
        ErrorCode.InternalError,
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
 * The policy input for one call (documented in docs/policy-authoring.md). Time is added by the
 * engine. The delegating user and request context join when the gateway learns them (OAuth).
 */
export function policyInput(
  agent: Agent,
  appId: string,
  tool: { name: string; annotations?: unknown },
  actionClass: ActionClass,
  args: Record<string, unknown>,
  request: { call_id: string; instance_id: string },
): Record<string, unknown> {
  return {
    request,
    agent: {
      id: agent.id,
      owner: agent.owner,
      state: agent.state,
      client_type: agent.clientType ?? 'unknown',
    },
    app: { id: appId },
    tool: { name: tool.name, annotations: tool.annotations ?? {} },
    action_class: actionClass,
    arguments: args,
  };
}

/** Approval required is a tool result too: the call was not executed; who may approve is named. */
function approvalRequired(callId: string, decision: Decision): CallToolResult {
  const detail = {
    decision: 'require_approval',
    reasons: decision.reasons,
    approvers: decision.approvers ?? [],
    policyRevision: decision.policyRevision,
    callId,
    decisionId: decision.decisionId,
  };
  return {
    isError: true,
    content: [
      {
        type: 'text',
        text: `Approval required (${decision.reasons.join(', ')}); the call was not executed. ${JSON.stringify(detail)}`,
      },
    ],
    _meta: { 'portcullis/decision': detail },
  };
}

/** A denial is a tool result, not a protocol error, so agents can read the reason and react. */
function denial(callId: string, decision: Decision): CallToolResult {
  const detail = {
    decision: 'deny',
    reasons: decision.reasons,
    policyRevision: decision.policyRevision,
    callId,
    decisionId: decision.decisionId,
    howToRequestAccess: ACCESS_REQUEST_HINT,
  };
  return {
    isError: true,
    content: [
      { type: 'text', text: `Denied by policy (${decision.reasons.join(', ')}). ${JSON.stringify(detail)}` },
    ],
    _meta: { 'portcullis/decision': detail },
  };
}

/** SHA-256 of the arguments' RFC 8785 canonical JSON: equal arguments always give equal digests. */
export function digestOf(args: Record<string, unknown>): string {
  return createHash('sha256')
    .update(canonicalize(args) ?? 'null', 'utf8')
    .digest('hex');
}

function upstreamErrorCode(error: unknown): string {
  if (error instanceof McpError)
    return error.code === ErrorCode.RequestTimeout ? 'upstream_timeout' : `upstream_${error.code}`;
  return 'upstream_unreachable';
}
