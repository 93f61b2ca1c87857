import type { Decision } from '@portcullis/contracts';
import { scanJson } from '@portcullis/dlp';
import {
  BLOCK_ALL,
  conforms,
  DLP_LIMITS,
  DLP_META_KEY,
  inspectArguments,
  inspectResult,
  withoutStructuredContent,
} from '../dlp-enforcement.ts';
import type { JsonRpcErrorObject, JsonRpcNotification } from '../upstream/connection.ts';
import type { Operation } from './enforcement.ts';
import { type FieldRedaction, redactFields } from './field-redaction.ts';
import { RpcCode, RpcError } from './json-rpc.ts';

/** What DLP made of an upstream result. */
export interface GuardedResult {
  /** What the agent receives. */
  result: Record<string, unknown>;
  /** Findings redacted, by detector type (counts only: the ledger never sees the values). */
  redactions?: Record<string, number>;
  /** Set when the result was withheld from the agent (or its structured content was). */
  blocked?: { code: string; message: string };
}

export type GuardedArguments =
  | { pass: true; arguments: Record<string, unknown>; redactions?: Record<string, number> }
  | {
      pass: false;
      /** For methods whose refusals are errors (prompts/get). */
      error: RpcError;
      /** For tools/call: a tool result the agent can read (isError, details in _meta). */
      result: Record<string, unknown>;
    };

/**
 * The DLP seam of the relay: what passes from the agent to an upstream (arguments) and back
 * (results, errors). The call's decision carries the policy obligation that chooses allow, redact
 * or block per category (secrets, personal data), per direction, per action class (ADR 0031).
 */
export interface ContentGuard {
  arguments(decision: Decision, operation: Operation): GuardedArguments;
  result(decision: Decision, result: Record<string, unknown>, outputSchema?: object): GuardedResult;
  error(decision: Decision, error: JsonRpcErrorObject): JsonRpcErrorObject;
}

const nonEmpty = (counts: Record<string, number>) => (Object.keys(counts).length > 0 ? counts : undefined);

/**
 * A tool result whose structured content the field redaction changed so that it no longer matches
 * the tool's output schema: MCP clients reject a successful result that does not match, so the
 * structured part is withheld and the result marked an error saying why (as DLP does, ADR 0031).
 */
function withoutNonconformingStructure(
  fields: FieldRedaction,
  outputSchema: object | undefined,
): { result: Record<string, unknown>; note?: 'dlp_structured_content_withheld' } {
  const { result } = fields;
  if (!fields.structuredChanged || !outputSchema || conforms(outputSchema, result.structuredContent))
    return { result };
  // The same machine-readable shape as DLP's own withholding (docs/gateway.md, "What an agent can receive").
  const detail = { code: 'dlp_structured_content_withheld', redactions: { field: fields.fields } };
  return {
    note: 'dlp_structured_content_withheld',
    result: withoutStructuredContent(
      result,
      `The gateway redacted fields of this result as the policy requires; the structured content no longer matched the tool's output schema, so it was withheld. ${JSON.stringify(detail)}`,
      { [DLP_META_KEY]: detail },
    ),
  };
}

/** A result withheld whole because the policy's redaction paths could not be applied to it. */
function withheldUnappliable(reason: string): GuardedResult {
  const detail = { code: 'redaction_unappliable', direction: 'result' };
  return {
    result: {
      content: [{ type: 'text', text: `The result was withheld: ${reason}. ${JSON.stringify(detail)}` }],
      isError: true,
      _meta: { [DLP_META_KEY]: detail },
    },
    blocked: { code: 'redaction_unappliable', message: `result withheld: ${reason}` },
  };
}

/**
 * The guard the gateway runs: the decision's DLP obligation, or block-everything when an allow
 * somehow carries none (fail closed). Upstream error messages are always redacted: they are
 * meant for a human, and nothing in an error justifies letting a secret through.
 */
export const obligationGuard: ContentGuard = {
  arguments(decision, operation) {
    const inspected = inspectArguments(operation.arguments, decision.obligations?.dlp ?? BLOCK_ALL);
    if (inspected.outcome === 'pass') {
      const redactions = nonEmpty(inspected.redactions);
      return { pass: true, arguments: inspected.arguments, ...(redactions ? { redactions } : {}) };
    }
    return {
      pass: false,
      result: inspected.result as Record<string, unknown>,
      error: new RpcError(RpcCode.DlpBlocked, inspected.message, {
        code: inspected.code,
        findings: inspected.findings,
        retryable: false,
      }),
    };
  },
  result(decision, upstreamResult, outputSchema) {
    // The policy's field redactions first, then DLP's detectors on what is left.
    const fields = redactFields(upstreamResult, decision.obligations?.redact ?? []);
    if (fields.unappliable) return withheldUnappliable(fields.unappliable);
    const { result, note } = withoutNonconformingStructure(fields, outputSchema);
    const fieldCounts = {
      ...(fields.fields > 0 ? { field: fields.fields } : {}),
      ...(fields.withheldTexts > 0 ? { field_text_withheld: fields.withheldTexts } : {}),
    };
    const inspected = inspectResult(
      result as Parameters<typeof inspectResult>[0],
      decision.obligations?.dlp ?? BLOCK_ALL,
      outputSchema ? { outputSchema } : {},
    );
    if (inspected.outcome === 'block')
      return {
        result: inspected.result as Record<string, unknown>,
        blocked: { code: inspected.code, message: inspected.message },
        ...(nonEmpty(inspected.findings) ? { redactions: inspected.findings } : {}),
      };
    const redactions = nonEmpty({ ...fieldCounts, ...inspected.redactions });
    const withheld = inspected.withheld ?? note;
    return {
      result: inspected.result as Record<string, unknown>,
      ...(redactions ? { redactions } : {}),
      ...(withheld
        ? { blocked: { code: withheld, message: 'structured content withheld after redaction' } }
        : {}),
    };
  },
  error(decision, error) {
    // Under a redact obligation an upstream error's words and data cannot be searched for the
    // fields it names (they are not the result's shape): only the code passes.
    if (redactsFields(decision)) return { code: error.code, message: WITHHELD_UNDER_REDACTION };
    return redactedError(error);
  },
};

/** What stands in for an upstream's words the gateway cannot search for the fields a policy redacts. */
export const WITHHELD_UNDER_REDACTION = '[WITHHELD: the policy redacts fields of this call’s answers]';

/** Whether the decision's `redact` obligation names any response field. */
export function redactsFields(decision: Decision): boolean {
  return (decision.obligations?.redact ?? []).length > 0;
}

/**
 * A notification from an app while a call to it runs whose fields the policy redacts: what the
 * upstream writes in it (log data, progress text, a logger's name, `_meta`, a cancellation's
 * reason) is free-form, not the result's shape, so it cannot be searched for the fields. Only the
 * members the protocol defines as tokens, numbers or names pass; a notification of any other kind
 * is dropped (undefined).
 */
export function withheldUnderRedaction(message: JsonRpcNotification): JsonRpcNotification | undefined {
  const params = message.params ?? {};
  const only = (kept: Record<string, unknown>): JsonRpcNotification => ({
    jsonrpc: '2.0',
    method: message.method,
    params: Object.fromEntries(Object.entries(kept).filter(([, value]) => value !== undefined)),
  });
  switch (message.method) {
    case 'notifications/message':
      return only({ level: params.level, data: WITHHELD_UNDER_REDACTION });
    case 'notifications/progress':
      return only({
        progressToken: params.progressToken,
        progress: params.progress,
        total: params.total,
        ...(params.message === undefined ? {} : { message: WITHHELD_UNDER_REDACTION }),
      });
    case 'notifications/cancelled':
      return only({ requestId: params.requestId });
    case 'notifications/resources/updated':
      return only({ uri: params.uri });
    case 'notifications/tools/list_changed':
    case 'notifications/resources/list_changed':
    case 'notifications/prompts/list_changed':
      return only({});
    default:
      return undefined;
  }
}

/**
 * Redacts every secret and personal datum in a message the relay passes along outside an enforced
 * operation: notifications and server-initiated requests from upstreams, the client's answers to
 * them, completion results. Undefined when the message cannot be inspected (nested deeper than
 * the scanner goes, or more text than it reads): the caller drops or refuses it, and must not
 * walk it itself — a hostile upstream can nest a message deep enough to overflow any recursion.
 */
export function redacted<T>(message: T): T | undefined {
  try {
    return scanJson(message, 'redact', { maxChars: DLP_LIMITS.relayedMaxChars }).value;
  } catch {
    return undefined;
  }
}

/** An upstream's JSON-RPC error, redacted; one that cannot be inspected keeps only its code. */
export function redactedError(error: JsonRpcErrorObject): JsonRpcErrorObject {
  return redacted(error) ?? { code: error.code, message: '[REDACTED:uninspectable]' };
}
