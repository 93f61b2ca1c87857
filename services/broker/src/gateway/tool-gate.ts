import type { Logger } from '@portcullis/runtime';
import { isUsable, type ListedTool, type ToolPins } from '../tool-pins.ts';
import { RpcCode, RpcError } from './json-rpc.ts';

/**
 * The tool-pinning seam of the relay: whether an upstream tool's current definition is the one an
 * admin approved. A tool that fails is hidden from listings and refused when called.
 */
export interface ToolGate {
  /** True when the tool may be listed and called; reports a changed definition as a side effect. */
  admits(appId: string, tool: Record<string, unknown>): boolean;
  /** Throws the agent-facing error for a tool that is not admitted. */
  assertUsable(appId: string, tool: Record<string, unknown>): void;
}

/** The error an agent receives for a tool whose definition changed upstream. */
export function toolBlockedError(appId: string, name: string): RpcError {
  return new RpcError(
    RpcCode.ToolBlocked,
    `Tool ${name} of app ${appId} is blocked: its definition changed upstream and awaits an admin's approval`,
    { code: 'tool_definition_changed', appId, tool: name, retryable: false },
  );
}

/**
 * Pinning as the relay applies it (ADR 0042): only tools whose definition matches the approved
 * fingerprint are listed or called; any other is reported once, for an admin to approve. An app
 * `unpinned` says is exempt: the development-only static app, while no connection is registered
 * for its id.
 */
export function pinnedToolGate(
  pins: ToolPins,
  logger: Logger,
  unpinned: (appId: string) => boolean,
): ToolGate {
  const admits = (appId: string, tool: Record<string, unknown>): boolean => {
    if (unpinned(appId)) return true;
    const listed = tool as ListedTool;
    const verdict = pins.verdict(appId, listed);
    if (isUsable(verdict)) return true;
    pins
      .reportChange(appId, listed, verdict)
      .catch((error) =>
        logger.warn({ err: error, appId }, 'tool definition change not reported; will retry'),
      );
    return false;
  };
  return {
    admits,
    assertUsable(appId, tool) {
      if (!admits(appId, tool)) throw toolBlockedError(appId, String(tool.name));
    },
  };
}
