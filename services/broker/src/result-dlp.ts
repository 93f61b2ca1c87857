import { type CallToolResult, McpError } from '@modelcontextprotocol/sdk/types.js';
import { countByType, scanJson } from '@portcullis/dlp';

export interface InspectedResult {
  /** What the agent receives: the upstream result with findings redacted, or a withheld notice. */
  result: CallToolResult;
  /** Findings redacted, by detector type; undefined when there were none. */
  redactions?: Record<string, number>;
  /** Set when the result could not be inspected and was withheld (fail closed). */
  withheld?: { code: string; message: string };
}

/**
 * DLP on the result path: every string in an upstream result (text, structured content, keys,
 * _meta) is scanned, and secrets and personal data are replaced by typed placeholders before the
 * agent sees the result. A result that cannot be inspected (nested too deep) is withheld, never
 * passed through unscanned. The policy will choose allow / redact / block per action class through
 * obligations; until then every result is redacted.
 */
export function inspectResult(result: CallToolResult): InspectedResult {
  let scanned: ReturnType<typeof scanJson<CallToolResult>>;
  try {
    scanned = scanJson(result, 'redact');
  } catch (error) {
    const message = `the upstream result could not be inspected: ${error instanceof Error ? error.message : String(error)}`;
    return {
      result: {
        isError: true,
        content: [{ type: 'text', text: `Result withheld by the gateway: ${message}` }],
      },
      withheld: { code: 'dlp_uninspectable', message },
    };
  }
  if (scanned.findings.length === 0) return { result };
  return { result: scanned.value, redactions: countByType(scanned.findings) as Record<string, number> };
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
