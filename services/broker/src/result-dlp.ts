import { type CallToolResult, McpError } from '@modelcontextprotocol/sdk/types.js';
import type { DlpObligation } from '@portcullis/contracts';
import { scanJson } from '@portcullis/dlp';
import { inspectResult as inspectWithObligation } from './dlp-enforcement.ts';

export interface InspectedResult {
  /** What the agent receives: the upstream result with findings redacted, or a withheld notice. */
  result: CallToolResult;
  /** Findings redacted, by detector type; undefined when there were none. */
  redactions?: Record<string, number>;
  /** Set when the result could not be inspected and was withheld (fail closed). */
  withheld?: { code: string; message: string };
}

/** What the gateway applied before policy chose DLP modes: redact everything in results. */
const REDACT_ALL_RESULTS: DlpObligation = {
  arguments: { secrets: 'allow', personal: 'allow' },
  results: { secrets: 'redact', personal: 'redact' },
};

/**
 * DLP on the result path with every category redacted, whatever the policy says: the API the
 * gateway used before decisions carried a DLP obligation. New code calls dlp-enforcement's
 * inspectResult with the decision's obligation instead.
 */
export function inspectResult(result: CallToolResult): InspectedResult {
  const inspected = inspectWithObligation(result, REDACT_ALL_RESULTS);
  if (inspected.outcome === 'block')
    return { result: inspected.result, withheld: { code: inspected.code, message: inspected.message } };
  if (Object.keys(inspected.redactions).length === 0) return { result: inspected.result };
  return { result: inspected.result, redactions: inspected.redactions };
}

/**
 * An upstream failure with DLP applied to its message and data, for the agent and the ledger.
 * For an McpError the code is kept (errors pass through faithfully); anything else becomes its
 * redacted message.
 */
export function redactUpstreamError(error: unknown): McpError | Error {
  if (error instanceof McpError) {
    // McpError prefixes "MCP error <code>: "; strip it so the rebuilt error does not repeat it.
    const bare = error.message.replace(/^MCP error -?\d+: /, '');
    return new McpError(error.code, redactString(bare), redactData(error.data));
  }
  return new Error(redactString(error instanceof Error ? error.message : String(error)));
}

function redactString(text: string): string {
  try {
    return scanJson(text, 'redact').value;
  } catch {
    return '[REDACTED:uninspectable]';
  }
}

function redactData(data: unknown): unknown {
  if (data === undefined) return undefined;
  try {
    return scanJson(data, 'redact').value;
  } catch {
    return undefined;
  }
}
