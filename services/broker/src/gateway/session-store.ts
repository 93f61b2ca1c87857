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

/** A new session and the sessions it displaced to keep its agent within its bound. */
export interface CreatedSession {
  record: SessionRecord;
  /** Ids of the agent's least recently used sessions that were ended to make room. */
  evicted: string[];
}

// KEYS[1]: the agent's sessions (member: session id; score: when it expires idle, epoch ms).
// ARGV: now, the new session's expiry, the most sessions the agent may hold, the new session's id.
// Forgets expired members, takes out the least recently used beyond the bound (returned, for the
// caller to delete) and adds the new session. One script, so concurrent initializes of one agent
// cannot both squeeze in.
const RESERVE_LUA = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3]) + 1
local evicted = {}
if excess > 0 then
  evicted = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
return evicted
`;

interface ReserveRedis {
  portcullisReserveSession(
    keyCount: 1,
    key: string,
    now: number,
    expiresAt: number,
    max: number,
    id: string,
  ): Promise<string[]>;
}

/**
 * MCP session state in Redis, so that any broker replica can serve any request of a session and a
 * session outlives the replica it started on. One hash per session; every read refreshes the idle
 * timeout.
 *
 * Invariants: a session id is 192 random bits, never derived from anything the agent sends; the
 * record names the agent that created it and every request's authenticated agent must match it;
 * no credential is ever stored here (upstream session ids are not credentials: upstreams bind
 * them to their own authentication). An agent holds at most `maxPerAgent` sessions: a new one
 * beyond that ends the agent's least recently used one (a client that crashed without DELETE
 * leaves sessions behind, and must not be locked out until they expire; an agent opening sessions
 * in a loop must not fill Redis, nor make a replica start a stdio child per session).
 */
export class SessionStore {
  readonly #redis: Redis & ReserveRedis;
  readonly #prefix: string;
  readonly #agentPrefix: string;
  readonly #ttlMs: number;
  readonly #maxPerAgent: number;

  constructor(redis: Redis, prefix: string, ttlSeconds: number, maxPerAgent = 100) {
    if (!('portcullisReserveSession' in redis))
      redis.defineCommand('portcullisReserveSession', { lua: RESERVE_LUA });
    this.#redis = redis as Redis & ReserveRedis;
    this.#prefix = `${prefix}portcullis:mcp:session:`;
    this.#agentPrefix = `${prefix}portcullis:mcp:agent-sessions:`;
    this.#ttlMs = ttlSeconds * 1000;
    this.#maxPerAgent = maxPerAgent;
  }

  static newId(): string {
    return randomBytes(24).toString('base64url');
  }

  /** Stores a new session, ending the agent's least recently used ones beyond its bound. */
  async create(record: Omit<SessionRecord, 'id' | 'upstreams' | 'subscriptions'>): Promise<CreatedSession> {
    const id = SessionStore.newId();
    const key = this.#key(id);
    // The hash first, its place in the agent's set second: a concurrent initialize that evicts this
    // session then always finds a hash to delete (the other order could leave one alive, uncounted).
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
    let evicted: string[];
    try {
      const now = Date.now();
      evicted = await this.#redis.portcullisReserveSession(
        1,
        this.#agentKey(record.agentId),
        now,
        now + this.#ttlMs,
        this.#maxPerAgent,
        id,
      );
    } catch (error) {
      await this.#redis.del(key).catch(() => undefined);
      throw error;
    }
    // Separate commands, not part of the script: session hashes are keyed by id alone and need not
    // share a cluster slot with the agent's set.
    if (evicted.length > 0) await this.#redis.del(...evicted.map((evictedId) => this.#key(evictedId)));
    return { record: { ...record, id, upstreams: {}, subscriptions: [] }, evicted };
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
    this.#touch(hash.agent, id);
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

  async drop(id: string, agentId: string): Promise<void> {
    await this.#redis.multi().del(this.#key(id)).zrem(this.#agentKey(agentId), id).exec();
  }

  /**
   * Marks the session used now in its agent's set (the order eviction goes by). Not awaited: a
   * lost touch only makes the session look idle since its previous one (reads come every few
   * seconds); XX, so a session evicted meanwhile is not added back.
   */
  #touch(agentId: string, id: string): void {
    const agentKey = this.#agentKey(agentId);
    void this.#redis
      .pipeline()
      .zadd(agentKey, 'XX', Date.now() + this.#ttlMs, id)
      .pexpire(agentKey, this.#ttlMs)
      .exec()
      .catch(() => undefined);
  }

  #key(id: string): string {
    return this.#prefix + id;
  }

  #agentKey(agentId: string): string {
    return this.#agentPrefix + agentId;
  }
}
