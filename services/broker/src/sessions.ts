import type { Redis } from 'ioredis';

/**
 * Which agent owns which MCP session, in Redis so every replica can check it. A session id is
 * unguessable (a random UUID), and even a leaked one is useless to any other agent: each request's
 * authenticated agent must match the owner recorded here.
 */
export class SessionRegistry {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #ttlSeconds: number;

  constructor(redis: Redis, prefix: string, ttlSeconds: number) {
    this.#redis = redis;
    this.#prefix = prefix;
    this.#ttlSeconds = ttlSeconds;
  }

  async bind(sessionId: string, agentId: string): Promise<void> {
    await this.#redis.set(this.#key(sessionId), agentId, 'EX', this.#ttlSeconds);
  }

  /** The owning agent's id, refreshing the idle timeout; undefined for unknown or expired sessions. */
  async ownerOf(sessionId: string): Promise<string | undefined> {
    const owner = await this.#redis.getex(this.#key(sessionId), 'EX', this.#ttlSeconds);
    return owner ?? undefined;
  }

  async drop(sessionId: string): Promise<void> {
    await this.#redis.del(this.#key(sessionId));
  }

  #key(sessionId: string): string {
    return `${this.#prefix}portcullis:mcp-session:${sessionId}`;
  }
}
