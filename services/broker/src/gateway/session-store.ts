import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';

/** Where a session was opened: the aggregate endpoint, or one app's own endpoint. */
export type SessionScope = { kind: 'aggregate' } | { kind: 'app'; appId: string };

/** An upstream session another replica may resume (HTTP upstreams only). */
export interface StoredUpstream {
  sessionId: string;
  initializeResult: Record<string, unknown>;
}

/** Everything a replica needs to serve the next request of an MCP session. */
export interface SessionRecord {
  id: string;
  agentId: string;
  /** The delegating user of an OAuth session; the session answers only to the same user. */
  userId?: string;
  scope: SessionScope;
  protocolVersion: string;
  clientCapabilities: Record<string, unknown>;
  clientInfo: { name: string; version: string; [key: string]: unknown };
  /** The level the agent set with logging/setLevel, if any; replayed to upstreams opened later. */
  logLevel?: string;
  upstreams: Record<string, StoredUpstream>;
  /** Namespaced resource URIs the agent subscribed to. */
  subscriptions: string[];
}

/**
 * MCP session state in Redis, so that any broker replica can serve any request of a session and a
 * session outlives the replica it started on. One hash per session; every read refreshes the idle
 * timeout.
 *
 * Invariants: a session id is 192 random bits, never derived from anything the agent sends; the
 * record names the agent that created it and every request's authenticated agent must match it;
 * no credential is ever stored here (upstream session ids are not credentials: upstreams bind
 * them to their own authentication).
 */
export class SessionStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #ttlMs: number;

  constructor(redis: Redis, prefix: string, ttlSeconds: number) {
    this.#redis = redis;
    this.#prefix = `${prefix}portcullis:mcp:session:`;
    this.#ttlMs = ttlSeconds * 1000;
  }

  static newId(): string {
    return randomBytes(24).toString('base64url');
  }

  async create(record: Omit<SessionRecord, 'id' | 'upstreams' | 'subscriptions'>): Promise<SessionRecord> {
    const id = SessionStore.newId();
    const key = this.#key(id);
    await this.#redis
      .multi()
      .hset(key, {
        agent: record.agentId,
        ...(record.userId ? { user: record.userId } : {}),
        scope: record.scope.kind === 'app' ? `app:${record.scope.appId}` : 'aggregate',
        pv: record.protocolVersion,
        caps: JSON.stringify(record.clientCapabilities),
        info: JSON.stringify(record.clientInfo),
      })
      .pexpire(key, this.#ttlMs)
      .exec();
    return { ...record, id, upstreams: {}, subscriptions: [] };
  }

  /** The session, refreshing its idle timeout; undefined when unknown or expired. */
  async load(id: string): Promise<SessionRecord | undefined> {
    if (!/^[\w-]{32}$/.test(id)) return undefined;
    const key = this.#key(id);
    const results = await this.#redis.pipeline().hgetall(key).pexpire(key, this.#ttlMs).exec();
    const [error, fields] = results?.[0] ?? [];
    if (error) throw error;
    const hash = fields as Record<string, string>;
    if (!hash.agent) return undefined;
    const upstreams: Record<string, StoredUpstream> = {};
    const subscriptions: string[] = [];
    for (const [field, value] of Object.entries(hash)) {
      if (field.startsWith('up:')) upstreams[field.slice(3)] = JSON.parse(value) as StoredUpstream;
      else if (field.startsWith('sub:')) subscriptions.push(field.slice(4));
    }
    const scope = hash.scope ?? 'aggregate';
    return {
      id,
      agentId: hash.agent,
      ...(hash.user ? { userId: hash.user } : {}),
      scope: scope.startsWith('app:') ? { kind: 'app', appId: scope.slice(4) } : { kind: 'aggregate' },
      protocolVersion: hash.pv ?? '',
      clientCapabilities: JSON.parse(hash.caps ?? '{}') as Record<string, unknown>,
      clientInfo: JSON.parse(hash.info ?? '{"name":"unknown","version":"0"}') as SessionRecord['clientInfo'],
      ...(hash.level ? { logLevel: hash.level } : {}),
      upstreams,
      subscriptions,
    };
  }

  /**
   * Records an upstream session unless another replica recorded one for the same app first;
   * returns the one that counts. Two replicas opening the same app for one session at once must
   * not leave the agent with two upstream sessions.
   */
  async claimUpstream(id: string, appId: string, upstream: StoredUpstream): Promise<StoredUpstream> {
    const key = this.#key(id);
    const results = await this.#redis
      .multi()
      .hsetnx(key, `up:${appId}`, JSON.stringify(upstream))
      .hget(key, `up:${appId}`)
      .exec();
    const stored = results?.[1]?.[1];
    return typeof stored === 'string' ? (JSON.parse(stored) as StoredUpstream) : upstream;
  }

  async setUpstream(id: string, appId: string, upstream: StoredUpstream | undefined): Promise<void> {
    if (upstream) await this.#redis.hset(this.#key(id), `up:${appId}`, JSON.stringify(upstream));
    else await this.#redis.hdel(this.#key(id), `up:${appId}`);
  }

  async setLogLevel(id: string, level: string): Promise<void> {
    await this.#redis.hset(this.#key(id), 'level', level);
  }

  /** Most resource subscriptions one session may hold (each is replayed to a fresh upstream). */
  static readonly MAX_SUBSCRIPTIONS = 100;

  async setSubscribed(id: string, uri: string, subscribed: boolean): Promise<void> {
    if (subscribed) await this.#redis.hset(this.#key(id), `sub:${uri}`, '1');
    else await this.#redis.hdel(this.#key(id), `sub:${uri}`);
  }

  async drop(id: string): Promise<void> {
    await this.#redis.del(this.#key(id));
  }

  #key(id: string): string {
    return this.#prefix + id;
  }
}
