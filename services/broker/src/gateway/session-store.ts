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

/** A new session and the sessions that ended to keep its agent within its bound. */
export interface CreatedSession {
  record: SessionRecord;
  /**
   * The agent's sessions taken out of Redis: its least recently used beyond the bound, and any
   * past their idle expiry. Their upstream sessions are still open; the caller ends them.
   */
  ended: SessionRecord[];
}

// KEYS[1]: the agent's sessions (member: session id; score: when it expires idle, Redis-clock ms).
// ARGV: idle lifetime in ms, the most sessions the agent may hold, the new session's id.
// Takes out members past their expiry and the least recently used beyond the bound (returned,
// for the caller to end) and adds the new session. One script, so concurrent initializes of one
// agent cannot both squeeze in; Redis's clock, so replicas' clocks need not agree.
const RESERVE_LUA = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ended = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2]) + 1
if excess > 0 then
  for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, excess - 1)) do table.insert(ended, id) end
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return ended
`;

// KEYS[1]: the agent's sessions. ARGV: idle lifetime in ms, the session's id. Marks it used now;
// XX: a session taken out meanwhile is not added back.
const TOUCH_LUA = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`;

// KEYS[1]: a session's hash. ARGV: 'set' or 'setnx', the field, the value. Writes only into a
// session that still exists: a write racing the session's end (DELETE, eviction, expiry) must not
// bring its hash back without an expiry. Returns the field's value afterwards, or false if gone.
const WRITE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[1] == 'setnx' then
  redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3])
else
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
return redis.call('HGET', KEYS[1], ARGV[2])
`;

/**
 * Redis did not answer a session operation (away, or slower than the command timeout). Nothing
 * about the session is known: the request is refused as retryable, never guessed at.
 */
export class SessionStoreUnavailable extends Error {
  constructor(cause: unknown) {
    super('the session store (Redis) did not answer', { cause });
    this.name = 'SessionStoreUnavailable';
  }
}

/** Runs one store operation; whatever Redis throws becomes SessionStoreUnavailable. */
async function reaching<T>(operation: () => Promise<T>): Promise<T> {
  try {
    return await operation();
  } catch (error) {
    throw new SessionStoreUnavailable(error);
  }
}

// KEYS[1]: a session's hash. ARGV: the subscription's field, the most a session may hold. Adds a
// subscription unless the session is gone or already holds as many as it may: counted and added in
// one script, so subscribes arriving at once (on any replica) cannot each take the last place.
const SUBSCRIBE_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'held' end
local held = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 4) == 'sub:' then held = held + 1 end
end
if held >= tonumber(ARGV[2]) then return 'full' end
redis.call('HSET', KEYS[1], ARGV[1], '1')
return 'added'
`;

/** What reserving a subscription did: see SessionStore.reserveSubscription. */
export type SubscriptionReservation = 'added' | 'held' | 'full' | 'gone';

interface SessionScripts {
  portcullisReserveSession(
    keyCount: 1,
    key: string,
    ttlMs: number,
    max: number,
    id: string,
  ): Promise<string[]>;
  portcullisTouchSession(keyCount: 1, key: string, ttlMs: number, id: string): Promise<number>;
  portcullisWriteSession(
    keyCount: 1,
    key: string,
    mode: 'set' | 'setnx',
    field: string,
    value: string,
  ): Promise<string | null>;
  portcullisSubscribe(keyCount: 1, key: string, field: string, max: number): Promise<SubscriptionReservation>;
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
  readonly #redis: Redis & SessionScripts;
  readonly #prefix: string;
  readonly #agentPrefix: string;
  readonly #ttlMs: number;
  readonly #maxPerAgent: number;

  constructor(redis: Redis, prefix: string, ttlSeconds: number, maxPerAgent = 100) {
    if (!('portcullisReserveSession' in redis)) {
      redis.defineCommand('portcullisReserveSession', { lua: RESERVE_LUA });
      redis.defineCommand('portcullisTouchSession', { lua: TOUCH_LUA });
      redis.defineCommand('portcullisWriteSession', { lua: WRITE_LUA });
      redis.defineCommand('portcullisSubscribe', { lua: SUBSCRIBE_LUA });
    }
    this.#redis = redis as Redis & SessionScripts;
    this.#prefix = `${prefix}portcullis:mcp:session:`;
    this.#agentPrefix = `${prefix}portcullis:mcp:agent-sessions:`;
    this.#ttlMs = ttlSeconds * 1000;
    this.#maxPerAgent = maxPerAgent;
  }

  static newId(): string {
    return randomBytes(24).toString('base64url');
  }

  /** Stores a new session, taking out the agent's least recently used ones beyond its bound. */
  async create(record: Omit<SessionRecord, 'id' | 'upstreams' | 'subscriptions'>): Promise<CreatedSession> {
    return reaching(() => this.#create(record));
  }

  async #create(record: Omit<SessionRecord, 'id' | 'upstreams' | 'subscriptions'>): Promise<CreatedSession> {
    const id = SessionStore.newId();
    const key = this.#key(id);
    // The hash first, its place in the agent's set second: a concurrent initialize that takes this
    // session out then always finds a hash to delete (the other order could leave one alive, uncounted).
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
    let endedIds: string[];
    try {
      endedIds = await this.#redis.portcullisReserveSession(
        1,
        this.#agentKey(record.agentId),
        this.#ttlMs,
        this.#maxPerAgent,
        id,
      );
    } catch (error) {
      await this.#redis.del(key).catch(() => undefined);
      throw error;
    }
    return {
      record: { ...record, id, upstreams: {}, subscriptions: [] },
      ended: await this.#takeOut(endedIds),
    };
  }

  /**
   * Reads and deletes sessions the agent's set no longer holds, each in one transaction: an
   * upstream session another replica records between a separate read and delete would be deleted
   * unread, and never closed. One key per transaction: session hashes are keyed by id alone and
   * need not share a cluster slot. A failure leaves that session to its idle expiry rather than
   * failing the initialize that displaced it.
   */
  async #takeOut(ids: readonly string[]): Promise<SessionRecord[]> {
    const ended: SessionRecord[] = [];
    for (const id of ids) {
      try {
        const key = this.#key(id);
        const [read] = (await this.#redis.multi().hgetall(key).del(key).exec()) ?? [];
        const [error, hash] = (read ?? []) as [Error | null, Record<string, string> | undefined];
        if (error) throw error;
        if (hash?.agent) ended.push(recordOf(id, hash));
      } catch {
        // Redis away for a moment: the hash expires on its own.
      }
    }
    return ended;
  }

  /** The session, refreshing its idle timeout; undefined when unknown or expired. */
  async load(id: string): Promise<SessionRecord | undefined> {
    if (!/^[\w-]{32}$/.test(id)) return undefined;
    const key = this.#key(id);
    const hash = await reaching(async () => {
      const results = await this.#redis.pipeline().hgetall(key).pexpire(key, this.#ttlMs).exec();
      // A pipeline reports each command's failure in its results rather than rejecting.
      const [error, fields] = results?.[0] ?? [];
      if (error) throw error;
      return fields as Record<string, string>;
    });
    if (!hash.agent) return undefined;
    this.#touch(hash.agent, id);
    return recordOf(id, hash);
  }

  /**
   * Marks a session in use without reading it — an open standalone stream is use, though no
   * request comes: refreshes its idle timeout and its place in its agent's eviction order.
   * False when the session is gone from Redis (ended elsewhere, or expired): the caller lets go of
   * its copy, since the message that would have told it may have been lost.
   */
  async keepAlive(id: string, agentId: string): Promise<boolean> {
    const refreshed = await reaching(() => this.#redis.pexpire(this.#key(id), this.#ttlMs));
    if (refreshed === 0) return false;
    this.#touch(agentId, id);
    return true;
  }

  /**
   * Records an upstream session unless another replica recorded one for the same app first;
   * returns the one that counts. Two replicas opening the same app for one session at once must
   * not leave the agent with two upstream sessions.
   */
  async claimUpstream(id: string, appId: string, upstream: StoredUpstream): Promise<StoredUpstream> {
    const stored = await reaching(() =>
      this.#redis.portcullisWriteSession(1, this.#key(id), 'setnx', `up:${appId}`, JSON.stringify(upstream)),
    );
    // Null: the session ended meanwhile; its next request gets "session not found".
    return typeof stored === 'string' ? (JSON.parse(stored) as StoredUpstream) : upstream;
  }

  async setUpstream(id: string, appId: string, upstream: StoredUpstream | undefined): Promise<void> {
    if (upstream) await this.#write(id, `up:${appId}`, JSON.stringify(upstream));
    else await reaching(() => this.#redis.hdel(this.#key(id), `up:${appId}`));
  }

  async setLogLevel(id: string, level: string): Promise<void> {
    await this.#write(id, 'level', level);
  }

  /** Most resource subscriptions one session may hold (each is replayed to a fresh upstream). */
  static readonly MAX_SUBSCRIPTIONS = 100;

  /**
   * Records a subscription before it is made upstream: `added`, or `held` if the session already
   * had it; `full` at MAX_SUBSCRIPTIONS, `gone` if the session ended. The caller takes an `added`
   * one back (unsubscribed) when the upstream refuses it.
   */
  async reserveSubscription(id: string, uri: string): Promise<SubscriptionReservation> {
    return reaching(() =>
      this.#redis.portcullisSubscribe(1, this.#key(id), `sub:${uri}`, SessionStore.MAX_SUBSCRIPTIONS),
    );
  }

  async unsubscribed(id: string, uri: string): Promise<void> {
    await reaching(() => this.#redis.hdel(this.#key(id), `sub:${uri}`));
  }

  async drop(id: string, agentId: string): Promise<void> {
    // Two commands, not a transaction: the keys need not share a cluster slot. If the second fails,
    // the set keeps a member for a session that is gone until its score expires: it only makes room
    // for one session fewer meanwhile.
    await reaching(async () => {
      await this.#redis.del(this.#key(id));
      await this.#redis.zrem(this.#agentKey(agentId), id);
    });
  }

  /** Sets one field of a session that still exists (see WRITE_LUA). */
  async #write(id: string, field: string, value: string): Promise<void> {
    await reaching(() => this.#redis.portcullisWriteSession(1, this.#key(id), 'set', field, value));
  }

  /**
   * Marks the session used now in its agent's set (the order eviction goes by). Not awaited: a
   * lost touch only makes the session look idle since its previous one (reads come every few
   * seconds).
   */
  #touch(agentId: string, id: string): void {
    void this.#redis
      .portcullisTouchSession(1, this.#agentKey(agentId), this.#ttlMs, id)
      .catch(() => undefined);
  }

  #key(id: string): string {
    return this.#prefix + id;
  }

  #agentKey(agentId: string): string {
    return this.#agentPrefix + agentId;
  }
}

/** A session record from its Redis hash. */
function recordOf(id: string, hash: Record<string, string>): SessionRecord {
  const upstreams: Record<string, StoredUpstream> = {};
  const subscriptions: string[] = [];
  for (const [field, value] of Object.entries(hash)) {
    if (field.startsWith('up:')) upstreams[field.slice(3)] = JSON.parse(value) as StoredUpstream;
    else if (field.startsWith('sub:')) subscriptions.push(field.slice(4));
  }
  const scope = hash.scope ?? 'aggregate';
  return {
    id,
    agentId: hash.agent ?? '',
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
