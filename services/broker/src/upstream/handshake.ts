import {
  type JsonRpcResponse,
  UpstreamError,
  type UpstreamFailure,
  type UpstreamSessionInit,
} from './connection.ts';
import { upstreamText } from './upstream-text.ts';

/** The params of the initialize request a gateway sends on the agent session's behalf. */
export function initializeParams(init: UpstreamSessionInit): Record<string, unknown> {
  return {
    protocolVersion: init.protocolVersion,
    capabilities: init.clientCapabilities,
    clientInfo: init.clientInfo,
  };
}

/**
 * The upstream's initialize result, once it is a result in a protocol version this gateway speaks.
 * A refusal fails as `refused` (the transport decides what a refusal means for it); an unsupported
 * version is a protocol violation.
 */
export function negotiatedResult(
  appId: string,
  response: JsonRpcResponse,
  supported: readonly string[],
  refused: UpstreamFailure,
): Record<string, unknown> & { protocolVersion: string } {
  if ('error' in response)
    throw new UpstreamError(
      appId,
      refused,
      // Its words reach the logs: through DLP, then cut (cut first, a secret across the cut would
      // be logged but for its end).
      `upstream refused initialize: ${response.error.code} ${upstreamText(String(response.error.message)).slice(0, 1000)}`,
    );
  const version = response.result.protocolVersion;
  if (typeof version !== 'string' || !supported.includes(version))
    throw new UpstreamError(
      appId,
      'protocol',
      `upstream negotiated unsupported protocol version ${String(version)}`,
    );
  // Kept with every agent session that opened this upstream (in Redis, read on every reload):
  // bounded, as the agent's own capabilities are.
  const capabilities = JSON.stringify(response.result.capabilities ?? {});
  if (capabilities.length > MAX_UPSTREAM_CAPABILITIES_CHARS)
    throw new UpstreamError(
      appId,
      'protocol',
      `upstream capabilities larger than ${MAX_UPSTREAM_CAPABILITIES_CHARS} characters`,
    );
  return response.result as Record<string, unknown> & { protocolVersion: string };
}

/** The largest upstream `capabilities` accepted (JSON characters). */
const MAX_UPSTREAM_CAPABILITIES_CHARS = 16 * 1024;
