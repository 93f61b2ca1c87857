import type { Logger } from '@portcullis/runtime';
import type { Redis } from 'ioredis';
import type { JsonRpcResponse } from '../upstream/connection.ts';

/** Messages replicas route to each other for sessions whose requests landed elsewhere. */
export type BusMessage =
  /** The client answered a server-initiated request that this replica relayed. */
  | { type: 'client-response'; sessionId: string; message: JsonRpcResponse }
  /** The client cancelled one of its requests; whichever replica runs it aborts it. */
  | { type: 'cancel'; sessionId: string; requestId: string | number; reason?: string }
  /** The session was deleted; replicas drop their local state for it. */
  | { type: 'session-closed'; sessionId: string };

/**
 * Redis pub/sub between broker replicas. A request of an MCP session can land on any replica, but
 * a call in progress and the upstream streams it reads live on one: answers to server-initiated
 * requests go to the replica named in the request id (its own channel); cancellations and session
 * ends are broadcast, since any replica may hold the work. Pub/sub is at-most-once: a message for a
 * replica that has just died is lost, as is the call it was for.
 */
export class ReplicaBus {
  readonly #publisher: Redis;
  readonly #subscriber: Redis;
  readonly #own: string;
  readonly #broadcast: string;
  readonly #prefix: string;
  readonly #logger: Logger;
  #handler: ((message: BusMessage) => void) | undefined;

  constructor(redis: Redis, options: { prefix: string; instanceId: string; logger: Logger }) {
    this.#publisher = redis;
    // A subscribed connection can issue no other commands, hence a connection of its own.
    this.#subscriber = redis.duplicate();
    this.#subscriber.on('error', (error) =>
      options.logger.warn({ err: error }, 'redis bus connection error'),
    );
    this.#prefix = `${options.prefix}portcullis:mcp:bus:`;
    this.#own = `${this.#prefix}replica:${options.instanceId}`;
    this.#broadcast = `${this.#prefix}all`;
    this.#logger = options.logger;
  }

  async start(handler: (message: BusMessage) => void): Promise<void> {
    this.#handler = handler;
    this.#subscriber.on('message', (_channel: string, payload: string) => {
      try {
        this.#handler?.(JSON.parse(payload) as BusMessage);
      } catch (error) {
        this.#logger.warn({ err: error }, 'unreadable message on the replica bus ignored');
      }
    });
    // The copy inherits lazyConnect from the main connection.
    if (this.#subscriber.status === 'wait') await this.#subscriber.connect();
    await this.#subscriber.subscribe(this.#own, this.#broadcast);
  }

  async toReplica(instanceId: string, message: BusMessage): Promise<void> {
    await this.#publisher.publish(`${this.#prefix}replica:${instanceId}`, JSON.stringify(message));
  }

  async toAll(message: BusMessage): Promise<void> {
    await this.#publisher.publish(this.#broadcast, JSON.stringify(message));
  }

  async stop(): Promise<void> {
    this.#handler = undefined;
    this.#subscriber.disconnect();
  }
}
