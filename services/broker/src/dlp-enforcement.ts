import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { JsonSchemaType, JsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/types.js';
import type { DlpCategoryModes, DlpObligation } from '@portcullis/contracts';
import { countByType, type DlpFinding, DlpLimitError, type FindingKind, scanJson } from '@portcullis/dlp';

/**
 * DLP enforcement at the gateway: applies a decision's DLP obligation (allow, redact or block per
 * category of finding) to a call's arguments before they go upstream, and to its result before
 * the agent and the ledger see it.
 *
 * Invariants (see ADR 0031):
 * - Nothing this module returns carries a matched value: findings are counts per detector type,
 *   messages name types and categories only, redacted values hold `[REDACTED:<type>]`.
 * - Fail closed: a value that cannot be inspected within the bounds (too deep, too much text) is
 *   treated as blocked (`dlp_uninspectable`), never passed through unscanned. Only when every
 *   category of a direction is `allow` is the value not scanned at all.
 */

/** An obligation category: which detector kinds it covers is fixed here, in one place. */
export type DlpCategory = keyof DlpCategoryModes;

/** Every detector kind of @portcullis/dlp belongs to exactly one obligation category. */
export const CATEGORY_OF_KIND: Readonly<Record<FindingKind, DlpCategory>> = {
  secret: 'secrets',
  personal_data: 'personal',
};

const CATEGORY_LABEL: Readonly<Record<DlpCategory, string>> = {
  secrets: 'secrets',
  personal: 'personal data',
};

/** Finding counts by detector type, e.g. { aws_access_key: 1 }: safe for the ledger and the agent. */
export type FindingCounts = Record<string, number>;

/** Machine-readable codes an agent (and the ledger) can receive from DLP. */
export type DlpCode = 'dlp_blocked' | 'dlp_uninspectable' | 'dlp_structured_content_withheld';

/** The key under which DLP details travel in a tool result's `_meta`. */
export const DLP_META_KEY = 'portcullis/dlp';

/**
 * Default bounds on the text scanned (UTF-16 code units of every string and key). Scanning costs
 * about 5-10 µs per KB of ordinary text (`pnpm bench:dlp`), but up to about 140 µs per KB of text
 * made to trip the detectors (a review measured 0.6-0.9 s for 8 Mi of it): the argument and
 * relayed-message bounds hold a scan near 150 ms at worst, the result bound near 1 s. Beyond them
 * the value is uninspectable (fail closed).
 */
export const DLP_LIMITS = {
  argumentsMaxChars: 1 << 20,
  resultMaxChars: 8 << 20,
  // Messages relayed outside an enforced call (notifications, server requests, completions): an
  // upstream may send as many as it likes, each scanned on the event loop, so a smaller bound.
  relayedMaxChars: 1 << 20,
} as const;

export interface DlpBlock {
  outcome: 'block';
  code: 'dlp_blocked' | 'dlp_uninspectable';
  /** The findings that caused the block, by detector type (empty when uninspectable). */
  findings: FindingCounts;
  /** A one-line reason naming detector types and categories, never values; fit for the ledger. */
  message: string;
  /** What the agent receives instead: a tool result with isError and the details in _meta. */
  result: CallToolResult;
}

export type ArgumentsInspection =
  | {
      outcome: 'pass';
      /** The arguments to send upstream: the same object when nothing was redacted. */
      arguments: Record<string, unknown>;
      /** Redacted findings by detector type; empty when none. */
      redactions: FindingCounts;
    }
  | DlpBlock;

export type ResultInspection =
  | {
      outcome: 'pass';
      /** The result for the agent and the ledger: the same object when nothing was redacted. */
      result: CallToolResult;
      redactions: FindingCounts;
      /** Set when redaction broke the tool's output schema, so structuredContent was withheld. */
      withheld?: 'dlp_structured_content_withheld';
    }
  | DlpBlock;

export interface InspectOptions {
  /** Bound on the text scanned; defaults to DLP_LIMITS for the direction. */
  maxChars?: number;
}

export interface ResultInspectOptions extends InspectOptions {
  /** The tool's outputSchema, if it declares one: redacted structuredContent must still conform. */
  outputSchema?: object;
}

/**
 * The obligation to apply when a decision carries none (the contract keeps it optional for
 * decisions recorded before DLP modes existed; an allow from the engine always has one).
 */
export const BLOCK_ALL: DlpObligation = {
  arguments: { secrets: 'block', personal: 'block' },
  results: { secrets: 'block', personal: 'block' },
};

/** Applies the obligation's argument modes to a call's arguments, before they go upstream. */
export function inspectArguments(
  args: Record<string, unknown>,
  obligation: DlpObligation,
  options: InspectOptions = {},
): ArgumentsInspection {
  const verdict = judge(args, obligation.arguments, options.maxChars ?? DLP_LIMITS.argumentsMaxChars);
  if (verdict.kind === 'clean') return { outcome: 'pass', arguments: args, redactions: {} };
  if (verdict.kind === 'redacted')
    return { outcome: 'pass', arguments: verdict.value, redactions: verdict.counts };
  return blocked('arguments', verdict);
}

/**
 * A tool result without its structured content, marked an error that says why (`explanation`,
 * appended to its content; `meta` merged into its `_meta`). For a redaction that made the
 * structured content violate the tool's output schema: MCP clients reject a successful result
 * whose structuredContent does not match, and also one that lacks it.
 */
export function withoutStructuredContent(
  result: object,
  explanation: string,
  meta?: Record<string, unknown>,
): Record<string, unknown> {
  const { structuredContent: _dropped, ...rest } = result as Record<string, unknown>;
  const content = Array.isArray(rest.content) ? rest.content : [];
  const ownMeta = (rest._meta ?? {}) as Record<string, unknown>;
  return {
    ...rest,
    isError: true,
    content: [...content, { type: 'text', text: explanation }],
    ...(meta ? { _meta: { ...ownMeta, ...meta } } : {}),
  };
}

/** Applies the obligation's result modes to an upstream tool result, before the agent sees it. */
export function inspectResult(
  result: CallToolResult,
  obligation: DlpObligation,
  options: ResultInspectOptions = {},
): ResultInspection {
  const verdict = judge(result, obligation.results, options.maxChars ?? DLP_LIMITS.resultMaxChars);
  if (verdict.kind === 'clean') return { outcome: 'pass', result, redactions: {} };
  if (verdict.kind !== 'redacted') return blocked('result', verdict);
  const redacted = verdict.value;
  // Redaction turns strings into placeholders and long integers (card numbers) into strings, which
  // can break an output schema (format, pattern, enum, type). MCP clients reject a successful result
  // whose structuredContent does not match, and also one that lacks it, so the structured part is
  // withheld and the result marked as an error that explains why; the redacted text stays.
  if (
    options.outputSchema &&
    redacted.structuredContent !== undefined &&
    redacted.structuredContent !== result.structuredContent &&
    !conforms(options.outputSchema, redacted.structuredContent)
  ) {
    const detail = { code: 'dlp_structured_content_withheld', redactions: verdict.counts };
    return {
      outcome: 'pass',
      redactions: verdict.counts,
      withheld: 'dlp_structured_content_withheld',
      result: withoutStructuredContent(
        redacted,
        `The gateway redacted ${describe(verdict.counts)} from this result; the redacted structured content no longer matched the tool's output schema, so it was withheld. ${JSON.stringify(detail)}`,
        { [DLP_META_KEY]: detail },
      ) as CallToolResult,
    };
  }
  return { outcome: 'pass', result: redacted, redactions: verdict.counts };
}

type Verdict<T> =
  | { kind: 'clean' }
  | { kind: 'redacted'; value: T; counts: FindingCounts }
  | { kind: 'blocked'; counts: FindingCounts; categories: DlpCategory[] }
  | { kind: 'uninspectable'; reason: string };

const KINDS = Object.keys(CATEGORY_OF_KIND) as FindingKind[];

function judge<T>(value: T, modes: DlpCategoryModes, maxChars: number): Verdict<T> {
  const acting = new Set(KINDS.filter((kind) => modes[CATEGORY_OF_KIND[kind]] !== 'allow'));
  if (acting.size === 0) return { kind: 'clean' };
  // Anything but allow or redact blocks, should an unchecked mode ever arrive here (fail closed).
  const blocking = new Set(
    KINDS.filter((kind) => !['allow', 'redact'].includes(modes[CATEGORY_OF_KIND[kind]])),
  );
  try {
    if (blocking.size === 0) {
      const scan = scanJson(value, 'redact', { kinds: acting, maxChars });
      return scan.findings.length === 0
        ? { kind: 'clean' }
        : { kind: 'redacted', value: scan.value, counts: counts(scan.findings) };
    }
    // Report-only first: most values are clean, and a blocked one is never copied.
    const scan = scanJson(value, 'block', { kinds: acting, maxChars });
    if (scan.findings.length === 0) return { kind: 'clean' };
    const blockingFindings = scan.findings.filter((finding) => blocking.has(finding.kind));
    if (blockingFindings.length > 0)
      return {
        kind: 'blocked',
        counts: counts(blockingFindings),
        categories: [...new Set(blockingFindings.map((finding) => CATEGORY_OF_KIND[finding.kind]))].sort(),
      };
    // Only findings of redact categories: a second, redacting pass over a value known to need it.
    const redacting = scanJson(value, 'redact', { kinds: acting, maxChars });
    return { kind: 'redacted', value: redacting.value, counts: counts(redacting.findings) };
  } catch (error) {
    return {
      kind: 'uninspectable',
      reason:
        error instanceof DlpLimitError
          ? error.limit === 'depth'
            ? 'it is nested too deeply to inspect'
            : `it holds more than ${maxChars} characters of text, the most the gateway inspects`
          : 'it could not be inspected',
    };
  }
}

function blocked(
  direction: 'arguments' | 'result',
  verdict: Extract<Verdict<unknown>, { kind: 'blocked' | 'uninspectable' }>,
): DlpBlock {
  // A withheld result belongs to a call that did run upstream: say so, or an agent may retry a write.
  const what =
    direction === 'arguments' ? 'The call was not executed' : 'The tool ran but its result was withheld';
  const code = verdict.kind === 'blocked' ? 'dlp_blocked' : 'dlp_uninspectable';
  const findings = verdict.kind === 'blocked' ? verdict.counts : {};
  const message =
    verdict.kind === 'blocked'
      ? `${what}: ${direction === 'arguments' ? 'the arguments contain' : 'the result contains'} ${verdict.categories.map((category) => CATEGORY_LABEL[category]).join(' and ')} (${describe(findings)}), which policy blocks for this tool.`
      : `${what}: the ${direction} cannot be checked for secrets and personal data (${verdict.reason}).`;
  const hint =
    direction === 'arguments'
      ? verdict.kind === 'blocked'
        ? ' Remove them from the arguments and retry.'
        : ' Send smaller arguments.'
      : '';
  const detail = {
    code,
    direction,
    ...(verdict.kind === 'blocked' ? { categories: verdict.categories } : {}),
    findings,
  };
  return {
    outcome: 'block',
    code,
    findings,
    message,
    result: {
      isError: true,
      content: [{ type: 'text', text: `${message}${hint} ${JSON.stringify(detail)}` }],
      _meta: { [DLP_META_KEY]: detail },
    },
  };
}

function counts(findings: readonly DlpFinding[]): FindingCounts {
  return countByType(findings) as FindingCounts;
}

/** "aws_access_key ×1, email ×2": types and counts, never values. */
function describe(findings: FindingCounts): string {
  return Object.entries(findings)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([type, count]) => `${type} ×${count}`)
    .join(', ');
}

// One validator for all output schemas, the one the MCP SDK's client checks results with, so the
// gateway's verdict matches what the agent's client would decide. Compiled schemas are cached per
// schema object (tool definitions are pinned, so the same object serves many calls).
let schemaValidator: AjvJsonSchemaValidator | undefined;
const compiled = new WeakMap<object, JsonSchemaValidator<unknown>>();

export function conforms(schema: object, value: unknown): boolean {
  try {
    let validate = compiled.get(schema);
    if (!validate) {
      schemaValidator ??= new AjvJsonSchemaValidator();
      validate = schemaValidator.getValidator(schema as JsonSchemaType);
      compiled.set(schema, validate);
    }
    return validate(value).valid;
  } catch {
    // A schema that does not compile cannot vouch for the redacted value.
    return false;
  }
}
