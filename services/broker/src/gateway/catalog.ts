import type { UpstreamSession } from '../upstream/connection.ts';
import { redactedError } from './content-guard.ts';
import { RpcCode, RpcError } from './json-rpc.ts';

export type ListKind = 'tools' | 'resources' | 'resourceTemplates' | 'prompts';

const METHOD: Record<ListKind, string> = {
  tools: 'tools/list',
  resources: 'resources/list',
  resourceTemplates: 'resources/templates/list',
  prompts: 'prompts/list',
};
/** The server capability an upstream must declare for each listing. */
const CAPABILITY: Record<ListKind, string> = {
  tools: 'tools',
  resources: 'resources',
  resourceTemplates: 'resources',
  prompts: 'prompts',
};
/** A hostile upstream must not keep the gateway paging forever. */
const MAX_PAGES = 50;
/** The most items one listing may hold (as many tools as registration pins at most). */
const MAX_LISTED_ITEMS = 10_000;

interface Entry {
  items: Record<string, unknown>[];
  fetchedAt: number;
}

export interface CatalogOptions {
  /** How long a listing is reused before it is fetched again, if no list_changed came first. */
  ttlMs: number;
  /** An unknown name refetches the list at most this often per app (no amplification by agents). */
  missRefreshMs: number;
  timeoutMs: number;
}

/**
 * This replica's cache of each app's tools, resources, templates and prompts. Listings are the
 * same for every agent (filtering per agent happens after), so one fetch serves all sessions; an
 * upstream's list_changed notification invalidates the app's entry. An upstream may offer more to
 * clients with more capabilities (a sampling tool only to clients that can sample), so entries are
 * kept per set of declared client capabilities: the `variant`.
 */
export class Catalog {
  readonly #options: CatalogOptions;
  readonly #entries = new Map<string, Map<string, Entry>>();
  readonly #inflight = new Map<string, Promise<Entry>>();

  constructor(options: CatalogOptions) {
    this.#options = options;
  }

  async list(
    appId: string,
    kind: ListKind,
    upstream: UpstreamSession,
    variant: string,
  ): Promise<Record<string, unknown>[]> {
    const capabilities = (upstream.initializeResult.capabilities ?? {}) as Record<string, unknown>;
    if (!capabilities[CAPABILITY[kind]]) return [];
    const cached = this.#entries.get(appId)?.get(`${kind}\u0000${variant}`);
    if (cached && performance.now() - cached.fetchedAt < this.#options.ttlMs) return cached.items;
    return (await this.#fetch(appId, `${kind}\u0000${variant}`, kind, upstream)).items;
  }

  /** One item by its upstream name (tools, prompts) or URI (resources); refetches once on a miss. */
  async find(
    appId: string,
    kind: 'tools' | 'prompts',
    name: string,
    upstream: UpstreamSession,
    variant: string,
  ): Promise<Record<string, unknown> | undefined> {
    const items = await this.list(appId, kind, upstream, variant);
    const found = items.find((item) => item.name === name);
    if (found) return found;
    const key = `${kind}\u0000${variant}`;
    const cached = this.#entries.get(appId)?.get(key);
    if (cached && performance.now() - cached.fetchedAt < this.#options.missRefreshMs) return undefined;
    return (await this.#fetch(appId, key, kind, upstream)).items.find((item) => item.name === name);
  }

  invalidate(appId: string, kind?: ListKind): void {
    const entries = this.#entries.get(appId);
    if (!entries) return;
    if (!kind) this.#entries.delete(appId);
    else for (const key of [...entries.keys()]) if (key.startsWith(`${kind}\u0000`)) entries.delete(key);
  }

  #fetch(appId: string, key: string, kind: ListKind, upstream: UpstreamSession): Promise<Entry> {
    const flightKey = `${appId}\u0000${key}`;
    const running = this.#inflight.get(flightKey);
    if (running) return running;
    const fetching = this.#page(kind, upstream)
      .then((items) => {
        const entry = { items, fetchedAt: performance.now() };
        let entries = this.#entries.get(appId);
        if (!entries) {
          entries = new Map();
          this.#entries.set(appId, entries);
        }
        entries.set(key, entry);
        return entry;
      })
      .finally(() => this.#inflight.delete(flightKey));
    this.#inflight.set(flightKey, fetching);
    return fetching;
  }

  async #page(kind: ListKind, upstream: UpstreamSession): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    let cursor: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const response = await upstream.request(METHOD[kind], cursor ? { cursor } : undefined, {
        timeoutMs: this.#options.timeoutMs,
      });
      if ('error' in response) {
        // The upstream's words reach the agent and the logs: through DLP like any upstream error.
        const { code, message } = redactedError(response.error);
        throw new RpcError(code, message, { code: 'upstream_error', appId: upstream.appId });
      }
      const list = response.result[kind];
      if (!Array.isArray(list))
        throw new RpcError(
          RpcCode.UpstreamFailed,
          `Upstream ${upstream.appId} sent a malformed ${METHOD[kind]} result`,
          // The same code and retry hint as any other protocol violation (upstreamRpcError).
          { code: 'upstream_protocol', appId: upstream.appId, retryable: false },
        );
      for (const item of list)
        if (item && typeof item === 'object') items.push(item as Record<string, unknown>);
      // Each listed tool is fingerprinted, and one that is not pinned reported: bounded.
      if (items.length > MAX_LISTED_ITEMS)
        throw new RpcError(
          RpcCode.UpstreamFailed,
          `Upstream ${upstream.appId} lists more than ${MAX_LISTED_ITEMS} ${kind}`,
          { code: 'upstream_protocol', appId: upstream.appId, retryable: false },
        );
      cursor = typeof response.result.nextCursor === 'string' ? response.result.nextCursor : undefined;
      if (!cursor) return items;
    }
    return items;
  }
}

/** Client capabilities an upstream may tailor its listings to (MCP 2025-11-25). */
const KNOWN_CLIENT_CAPABILITIES = ['elicitation', 'experimental', 'roots', 'sampling', 'tasks'];

/**
 * The catalog variant of a client: which known capabilities it declared. Unknown names do not
 * count, so an agent cannot grow the cache (or make the gateway refetch listings) by inventing them.
 */
export function capabilityVariant(clientCapabilities: Record<string, unknown>): string {
  return KNOWN_CLIENT_CAPABILITIES.filter((name) => clientCapabilities[name] !== undefined).join(',');
}
