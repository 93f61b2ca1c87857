/**
 * The policy's `redact` obligation: response fields the gateway must take out before a result
 * reaches the agent or the ledger (docs/policy-authoring.md). A path is `$` followed by steps:
 * `.name` (a member), `[n]` (an array element) or `[*]` (every element), e.g. `$.salary`,
 * `$.employees[*].ssn`. It applies to a tool's `structuredContent`, and to every text the result
 * carries (content blocks, resource contents, prompt messages) that is JSON. A text that is not
 * JSON cannot be searched for a field: it is withheld (fail closed), as is everything when a path
 * cannot be read.
 */

export const FIELD_PLACEHOLDER = '[REDACTED:field]';
const WITHHELD_TEXT = '[WITHHELD: the policy redacts fields of this result, and this text is not JSON]';
const WITHHELD_BLOB =
  '[WITHHELD: the policy redacts fields of this result, and a blob cannot be searched for them]';

type Step = { member: string } | { index: number } | { every: true };

/** A path's steps, or undefined when it is not one this grammar reads. */
export function parseRedactPath(path: string): Step[] | undefined {
  if (!path.startsWith('$') || path.length > 512) return undefined;
  const steps: Step[] = [];
  const step = /\.([A-Za-z_][\w-]*)|\[(\d{1,9}|\*)\]/y;
  step.lastIndex = 1;
  while (step.lastIndex < path.length) {
    const at = step.lastIndex;
    const match = step.exec(path);
    if (!match || match.index !== at) return undefined;
    if (match[1] !== undefined) steps.push({ member: match[1] });
    else if (match[2] === '*') steps.push({ every: true });
    else steps.push({ index: Number(match[2]) });
  }
  return steps.length > 0 ? steps : undefined;
}

export interface FieldRedaction {
  /** The result to pass on (a copy when anything changed). */
  result: Record<string, unknown>;
  /** Fields replaced by FIELD_PLACEHOLDER. */
  fields: number;
  /** Texts withheld because they are not JSON. */
  withheldTexts: number;
  /** Set when nothing could be applied safely (a path this grammar does not read): withhold all. */
  unappliable?: string;
  /** Whether structuredContent was changed (its output schema may no longer hold). */
  structuredChanged: boolean;
}

/** Applies the obligation's paths to an upstream result (tools/call, resources/read, prompts/get). */
export function redactFields(result: Record<string, unknown>, paths: readonly string[]): FieldRedaction {
  if (paths.length === 0) return { result, fields: 0, withheldTexts: 0, structuredChanged: false };
  try {
    return applyPaths(result, paths);
  } catch {
    // Nested deeper than copying or serialising goes (a hostile upstream): nothing can be said of
    // its fields, so nothing of it passes.
    return {
      result,
      fields: 0,
      withheldTexts: 0,
      structuredChanged: false,
      unappliable: 'the result is nested too deep to apply the redaction paths to',
    };
  }
}

function applyPaths(result: Record<string, unknown>, paths: readonly string[]): FieldRedaction {
  const none = { result, fields: 0, withheldTexts: 0, structuredChanged: false };
  const parsed: Step[][] = [];
  for (const path of paths) {
    const steps = parseRedactPath(path);
    if (!steps)
      return {
        ...none,
        unappliable: `the redaction path ${JSON.stringify(path.slice(0, 100))} cannot be read`,
      };
    parsed.push(steps);
  }
  // A copy to change: upstream results are plain JSON (parsed from the wire).
  const copy = structuredClone(result);
  let fields = 0;
  let withheldTexts = 0;
  let structuredChanged = false;
  if (isContainer(copy.structuredContent)) {
    const redacted = redactIn(copy.structuredContent, parsed);
    fields += redacted;
    structuredChanged = redacted > 0;
  }
  const items = contentItems(copy);
  for (const holder of items.filter((item): item is { text: string } => typeof item.text === 'string')) {
    let value: unknown;
    try {
      value = JSON.parse(holder.text);
    } catch {
      value = undefined;
    }
    if (!isContainer(value)) {
      holder.text = WITHHELD_TEXT;
      withheldTexts++;
      continue;
    }
    const redacted = redactIn(value, parsed);
    if (redacted > 0) {
      holder.text = JSON.stringify(value);
      fields += redacted;
    }
  }
  // A blob (a resource's bytes, base64) may be JSON with the very fields: it cannot be searched
  // here either, so it is withheld like a text that is not JSON.
  for (const holder of items.filter((item) => typeof item.blob === 'string')) {
    delete holder.blob;
    holder.mimeType = 'text/plain';
    holder.text = WITHHELD_BLOB;
    withheldTexts++;
  }
  if (fields === 0 && withheldTexts === 0) return none;
  return { result: copy, fields, withheldTexts, structuredChanged };
}

function isContainer(value: unknown): value is Record<string, unknown> | unknown[] {
  return typeof value === 'object' && value !== null;
}

/** Replaces what every path reaches in `root`; returns how many values were replaced. */
function redactIn(root: Record<string, unknown> | unknown[], paths: readonly Step[][]): number {
  let count = 0;
  for (const steps of paths) count += redactPath(root, steps, 0);
  return count;
}

function redactPath(node: unknown, steps: readonly Step[], at: number): number {
  if (!isContainer(node)) return 0;
  const step = steps[at]!;
  const last = at === steps.length - 1;
  const keys: (string | number)[] =
    'every' in step
      ? Array.isArray(node)
        ? node.map((_, index) => index)
        : []
      : 'index' in step
        ? Array.isArray(node) && step.index < node.length
          ? [step.index]
          : []
        : !Array.isArray(node) && Object.hasOwn(node, step.member)
          ? [step.member]
          : [];
  let count = 0;
  const container = node as Record<string | number, unknown>;
  for (const key of keys) {
    if (last) {
      if (container[key] !== FIELD_PLACEHOLDER) {
        container[key] = FIELD_PLACEHOLDER;
        count++;
      }
    } else count += redactPath(container[key], steps, at + 1);
  }
  return count;
}

/**
 * The objects of a result that carry what the agent reads: tool content blocks, resource contents
 * (resources/read), prompt messages' content (prompts/get), and the resource embedded in any of
 * them. Their `text` is searched for fields; a `blob` cannot be.
 */
function contentItems(result: Record<string, unknown>): Record<string, unknown>[] {
  const items: Record<string, unknown>[] = [];
  const consider = (item: unknown) => {
    if (!isContainer(item) || Array.isArray(item)) return;
    items.push(item);
    if (isContainer(item.resource) && !Array.isArray(item.resource)) consider(item.resource);
  };
  for (const list of [result.content, result.contents])
    if (Array.isArray(list)) for (const item of list) consider(item);
  if (Array.isArray(result.messages))
    for (const message of result.messages)
      if (isContainer(message)) consider((message as { content?: unknown }).content);
  return items;
}
