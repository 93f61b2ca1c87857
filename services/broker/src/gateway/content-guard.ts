import { countByType, scanJson } from '@portcullis/dlp';
import type { JsonRpcErrorObject } from '../upstream/connection.ts';
import type { AdmittedCall, Operation } from './enforcement.ts';
import type { RpcError } from './json-rpc.ts';

/** What DLP made of an upstream result. */
export interface GuardedResult {
  /** What the agent receives. */
  result: Record<string, unknown>;
  /** Findings redacted, by detector type (counts only: the ledger never sees the values). */
  redactions?: Record<string, number>;
  /** Set when the result was withheld from the agent. */
  blocked?: { code: string; message: string };
}

/**
 * The DLP seam of the relay: what passes from the agent to an upstream (arguments) and back
 * (results, errors). The policy's obligations for the admitted call choose what happens.
 */
export interface ContentGuard {
  arguments(
    call: AdmittedCall,
    operation: Operation,
  ): { pass: true; arguments: Record<string, unknown> } | { pass: false; error: RpcError };
  result(call: AdmittedCall, result: Record<string, unknown>): GuardedResult;
  error(call: AdmittedCall, error: JsonRpcErrorObject): JsonRpcErrorObject;
}

/**
 * A guard that redacts every secret and personal datum in results and upstream errors and lets
 * arguments pass; a result that cannot be inspected is withheld (fail closed).
 */
export const redactingGuard: ContentGuard = {
  arguments: (_call, operation) => ({ pass: true, arguments: operation.arguments }),
  result(_call, result) {
    try {
      const scanned = scanJson(result, 'redact');
      if (scanned.findings.length === 0) return { result };
      return { result: scanned.value, redactions: countByType(scanned.findings) as Record<string, number> };
    } catch (error) {
      const message = `the upstream result could not be inspected: ${error instanceof Error ? error.message : String(error)}`;
      return {
        result: {
          isError: true,
          content: [{ type: 'text', text: `Result withheld by the gateway: ${message}` }],
        },
        blocked: { code: 'dlp_uninspectable', message },
      };
    }
  },
  error(_call, error) {
    try {
      return scanJson(error, 'redact').value;
    } catch {
      return { code: error.code, message: '[REDACTED:uninspectable]' };
    }
  },
};
