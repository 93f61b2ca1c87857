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

/** For apps without pins (no registration yet): every tool passes. */
export const unpinnedGate: ToolGate = {
  admits: () => true,
  assertUsable: () => undefined,
};
