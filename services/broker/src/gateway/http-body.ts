import type { IncomingMessage } from 'node:http';
import { RpcCode, RpcError } from './json-rpc.ts';

export interface BodyLimits {
  maxBytes: number;
  /** Deepest nesting of arrays and objects accepted; JSON.parse recursion is bounded by this. */
  maxDepth: number;
}

/** Thrown for a body refused before parsing; `status` is the HTTP status to answer with. */
export class BodyError extends RpcError {
  readonly status: number;
  constructor(status: number, code: number, message: string) {
    super(code, message);
    this.status = status;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/**
 * Reads and parses one JSON request body, refusing — before any of it is acted on — bodies over
 * the size limit (413, the read stops early), invalid UTF-8 (400: a lenient decoder would turn it
 * into U+FFFD and change what the policy and the upstream see), nesting deeper than the limit
 * (400), and anything that is not JSON (400).
 */
export async function readJsonBody(req: IncomingMessage, limits: BodyLimits): Promise<unknown> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limits.maxBytes) {
    req.resume();
    throw new BodyError(
      413,
      RpcCode.InvalidRequest,
      `Request body too large (limit ${limits.maxBytes} bytes)`,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limits.maxBytes) {
      req.resume();
      throw new BodyError(
        413,
        RpcCode.InvalidRequest,
        `Request body too large (limit ${limits.maxBytes} bytes)`,
      );
    }
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = utf8.decode(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
  } catch {
    throw new BodyError(400, RpcCode.ParseError, 'Parse error: the body is not valid UTF-8');
  }
  const depth = nestingDepth(text);
  if (depth > limits.maxDepth)
    throw new BodyError(
      400,
      RpcCode.ParseError,
      `Parse error: JSON nested deeper than ${limits.maxDepth} levels`,
    );
  try {
    return JSON.parse(text);
  } catch {
    throw new BodyError(400, RpcCode.ParseError, 'Parse error: the body is not valid JSON');
  }
}

/**
 * The deepest bracket nesting outside strings, in one pass without recursion. Malformed input may
 * give a meaningless number; JSON.parse rejects it afterwards anyway.
 */
export function nestingDepth(text: string): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let index = 0; index < text.length; index++) {
    const char = text.charCodeAt(index);
    if (inString) {
      if (char === 0x5c)
        index++; // backslash: skip the escaped character
      else if (char === 0x22) inString = false;
    } else if (char === 0x22) inString = true;
    else if (char === 0x7b || char === 0x5b) {
      depth++;
      if (depth > deepest) deepest = depth;
    } else if (char === 0x7d || char === 0x5d) depth--;
  }
  return deepest;
}
