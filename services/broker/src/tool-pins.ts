import { randomUUID } from 'node:crypto';
import {
  type ListedToolDefinition,
  type ToolDefinition,
  type ToolDefinitionChangedV1,
  Topics,
  toolDefinitionOf,
  toolFingerprint,
  topicName,
} from '@portcullis/contracts';
import type { Logger } from '@portcullis/runtime';
import type { Producer } from 'kafkajs';

/**
 * Tool pinning on the broker (ADR 0042). Each upstream tool's definition is compared with the
 * fingerprint the decision service pinned when the app was registered or the tool approved:
 *
 * - `pinned`: the fingerprints match; the tool may be shown and called (policy still decides).
 * - `changed`: the upstream now describes the tool differently. Blocked: a changed description or
 *   schema can carry instructions to the model ("tool poisoning") or widen what the tool does.
 * - `unpinned`: the tool has no pin (it appeared after registration, or the app has no connection
 *   record). Blocked as well, fail closed: nobody has approved it yet.
 *
 * Only `pinned` tools are usable. For the other two the gateway calls reportChange(), which raises
 * a ToolDefinitionChangedV1 event so an admin can approve the new definition; the approval
 * republishes the app's pins and the tool unblocks on the next verdict.
 */

/** What ToolPins needs of the directory: the broker's DirectoryFeed provides it. */
export interface PinSource {
  appConnection(appId: string): { tools: Readonly<Record<string, string>> } | undefined;
}

/** A tool as an upstream listed it (tools/list); members beyond the pinned ones are ignored. */
export interface ListedTool extends ListedToolDefinition {
  [member: string]: unknown;
}

export interface ToolVerdict {
  status: 'pinned' | 'changed' | 'unpinned';
  /** The pinned fingerprint, when the tool has a pin. */
  pinned?: string;
  /** The fingerprint of the definition the upstream serves now. */
  observed: string;
}

/** Whether a verdict lets the tool be listed and called. Anything but `pinned` is blocked. */
export function isUsable(verdict: ToolVerdict): boolean {
  return verdict.status === 'pinned';
}

// One broker reports each (app, tool, observed fingerprint) once; this bounds the memory that
// costs if an upstream keeps changing a definition (the oldest entries are forgotten first).
const MAX_REPORTED = 10_000;
// At most this many changes of one app are published per minute: an upstream whose definitions
// change on every listing (a random value in a description) cannot flood the topic and the
// decision service. Beyond it the tools stay blocked, unreported until the next minute.
const REPORTS_PER_APP_PER_MINUTE = 100;

export class ToolPins {
  readonly #source: PinSource;
  readonly #producer: Pick<Producer, 'send'>;
  readonly #topic: string;
  readonly #instanceId: string;
  readonly #logger: Logger;
  /** Keys already published (or being published) by this process, oldest first. */
  readonly #reported = new Set<string>();
  /** Reports published per app in the current minute (see REPORTS_PER_APP_PER_MINUTE). */
  readonly #budgets = new Map<string, { startedAt: number; used: number; warned: boolean }>();
  /** Fingerprints of listed tool objects: a listing is reused across calls, hashing it once is enough. */
  readonly #fingerprints = new WeakMap<object, string>();

  constructor(options: {
    source: PinSource;
    producer: Pick<Producer, 'send'>;
    topicPrefix: string;
    instanceId: string;
    logger: Logger;
  }) {
    this.#source = options.source;
    this.#producer = options.producer;
    this.#topic = topicName(options.topicPrefix, Topics.toolDefinitions);
    this.#instanceId = options.instanceId;
    this.#logger = options.logger;
  }

  /** Takes one report from the app's budget for this minute; false (and one warning) when spent. */
  #withinBudget(appId: string): boolean {
    const now = Date.now();
    let budget = this.#budgets.get(appId);
    if (!budget || now - budget.startedAt >= 60_000) {
      budget = { startedAt: now, used: 0, warned: false };
      this.#budgets.set(appId, budget);
    }
    if (budget.used < REPORTS_PER_APP_PER_MINUTE) {
      budget.used++;
      return true;
    }
    if (!budget.warned)
      this.#logger.warn(
        { appId, perMinute: REPORTS_PER_APP_PER_MINUTE },
        'upstream tool changes over the reporting budget: the tools stay blocked, reported later',
      );
    budget.warned = true;
    return false;
  }

  /** Compares the tool's definition with its pin. Pure: no event is raised here. */
  verdict(appId: string, tool: ListedTool): ToolVerdict {
    let observed = this.#fingerprints.get(tool);
    if (observed === undefined) {
      observed = toolFingerprint(tool);
      this.#fingerprints.set(tool, observed);
    }
    const pins = this.#source.appConnection(appId)?.tools;
    // Own properties only: a tool named `constructor` or `__proto__` has no pin unless one was made.
    const pinned = pins && Object.hasOwn(pins, tool.name) ? pins[tool.name] : undefined;
    if (pinned === undefined) return { status: 'unpinned', observed };
    return { status: pinned === observed ? 'pinned' : 'changed', pinned, observed };
  }

  /**
   * Raises `tool.definition_changed` for a blocked tool, once per (app, tool, observed
   * fingerprint) in this process. Resolves true when an event was published, false when it was
   * already reported (or the tool is pinned). If publishing fails it rejects and the next call
   * tries again; the tool stays blocked either way.
   */
  async reportChange(
    appId: string,
    tool: ListedTool,
    verdict: ToolVerdict = this.verdict(appId, tool),
  ): Promise<boolean> {
    if (verdict.status === 'pinned') return false;
    // The pin is part of the key: a definition reported against one pin (then superseded by an
    // admin's approval of another) is reported again when it comes back against the new pin.
    const key = `${appId}\u0000${tool.name}\u0000${verdict.pinned ?? ''}\u0000${verdict.observed}`;
    if (this.#reported.has(key)) return false;
    if (!this.#withinBudget(appId)) return false;
    this.#reported.add(key);
    if (this.#reported.size > MAX_REPORTED) this.#reported.delete(this.#reported.values().next().value!);
    let definition: ToolDefinition;
    try {
      definition = toolDefinitionOf(tool);
    } catch {
      // A name no pin can hold (path or namespace tricks), or characters no database can store:
      // blocked for good, nothing to approve.
      this.#logger.warn(
        { appId, tool: tool.name.slice(0, 200) },
        'upstream tool with an invalid name or unstorable definition blocked',
      );
      return false;
    }
    const event: ToolDefinitionChangedV1 = {
      type: 'tool.definition_changed',
      version: 1,
      eventId: randomUUID(),
      occurredAt: new Date().toISOString(),
      appId,
      tool: tool.name,
      pinnedFingerprint: verdict.pinned ?? null,
      observedFingerprint: verdict.observed,
      definition,
      source: { service: 'broker', instanceId: this.#instanceId },
    };
    try {
      await this.#producer.send({
        topic: this.#topic,
        acks: -1,
        messages: [{ key: `${appId}/${tool.name}`, value: JSON.stringify(event) }],
      });
    } catch (error) {
      this.#reported.delete(key);
      throw error;
    }
    this.#logger.warn(
      { appId, tool: tool.name, status: verdict.status, pinned: verdict.pinned, observed: verdict.observed },
      'tool definition does not match its pin; tool blocked until an admin approves it',
    );
    return true;
  }
}
