import { compileSchema } from '@portcullis/compiled-schema';
import { AuditEvent, Topics, topicName } from '@portcullis/contracts';
import { sendDurably } from '@portcullis/kafka';
import type { Logger } from '@portcullis/runtime';
import { type Spool, SpoolFullError } from '@portcullis/spool';
import type { Producer } from 'kafkajs';
import { type AuditShipper, ProducerShipper } from './audit-shipper.ts';

/** Where the enforcement pipeline records audit events; resolves once an event is durable. */
export interface AuditSink {
  publish(event: AuditEvent): Promise<void>;
}

/** The audit path cannot take the event: the call must not run. Retryable once Kafka is back. */
export class AuditUnavailableError extends Error {
  readonly code = 'audit_unavailable';
  readonly retryAfterMs: number;
  constructor(message: string, retryAfterMs: number, cause?: unknown) {
    super(message, { cause });
    this.name = 'AuditUnavailableError';
    this.retryAfterMs = retryAfterMs;
  }
}

export interface DurableAuditOptions {
  producer: Producer;
  /**
   * A second producer for outcome events, so that recording the end of one call never holds up
   * the start of the next (each idempotent producer has one request in flight). Defaults to
   * `producer`.
   */
  outcomeProducer?: Producer;
  topicPrefix: string;
  spool: Spool;
  /**
   * Sends what the spool holds to Kafka (local-first shipping, and the replay after Kafka was
   * away). The broker passes a WorkerShipper, which does it off the main thread. Defaults to
   * `producer` on this thread.
   */
  shipper?: AuditShipper;
  /**
   * When an event counts as accepted. `kafka` (the default): acknowledged by Kafka (acks=all), the
   * spool only while Kafka is away. `local-first`: fsync'd to this replica's spool, which streams
   * to Kafka in the background — a call waits ≈ 0.1 ms instead of a Kafka round trip, but until
   * it is shipped (within about 20–30 ms: see SHIP_LINGER_MS) the event exists on this replica's disk only
   * (docs/gateway.md, "Audit durability").
   */
  acceptance?: 'kafka' | 'local-first';
  /** Longest a call waits for Kafka's acknowledgement before its event goes to the spool. */
  sendTimeoutMs: number;
  /** Pause between replay attempts while Kafka is away. */
  retryIntervalMs: number;
  /**
   * The largest part of the spool (of its bytes and of its records) one agent's calls may hold
   * while they wait for Kafka (default 0.5): one agent calling in a loop during a Kafka outage —
   * its calls denied or over their limits are recorded too — fills its share and is refused,
   * not the spool, and every other agent's calls go on.
   */
  agentShare?: number;
  logger: Logger;
}

/** One spooled record this process appended, and whose call it belongs to. */
interface SpooledRecord {
  agentId: string | undefined;
  bytes: number;
  /** False once its append failed: it is not in the spool, and acknowledgements skip it. */
  inSpool: boolean;
}

/**
 * Room kept in the spool, per call in flight, for its outcome event: a call is admitted only if
 * its request and its outcome both fit, so an executed call never loses its outcome to a full
 * spool. Outcome events are small: their error message takes at most 1,000 bytes as JSON
 * (audit-text.ts), the rest of the event a few hundred.
 */
const OUTCOME_RESERVE_BYTES = 2048;
const REPLAY_BATCH = 200;
/**
 * In local-first mode, longest an outcome event waits in memory for a later request's disk write
 * to share (the spool is every call's way in there, so a write comes soon). A broker killed inside
 * that window loses the outcome, not the request: the same exposure as kafka mode's outcome linger.
 * When the spool is only the fallback (Kafka away), outcomes are written at once.
 */
const OUTCOME_DEFER_MS = 10;
/** In local-first mode, how long events gather in the spool before they are shipped together. */
const SHIP_LINGER_MS = 20;

/**
 * AuditEvent with an ajv validator compiled from it in front (ADR 0044): two events per call, and
 * zod's parse cost tens of µs each. What the compiled check does not accept goes to zod, which
 * throws the same error as before, or returns the stripped copy of an event with unknown keys.
 * Not in place: the event belongs to the caller, so it is never modified.
 */
const auditEvents = compileSchema(AuditEvent);

/** The part of the spool one agent's calls may hold when the configuration names none. */
const DEFAULT_AGENT_SHARE = 0.5;

/** Readiness asks whether a call of about this size would still be admitted. */
const TYPICAL_REQUEST_BYTES = 1024;

/**
 * The audit path: Kafka first (acks=all, bounded wait), else the local spool.
 *
 * Invariants:
 * - `publish` resolves only when the event is acknowledged by Kafka or fsync'd in the spool.
 * - Order: while anything is spooled, every new event goes to the spool too, behind it; the spool
 *   replays in append order, so a call's request always reaches Kafka before its outcome.
 * - The replayer deletes records from the spool only after Kafka acknowledged them. A crash
 *   between that acknowledgement and the position update can re-send one batch (in local-first
 *   mode, whose spool writes its position every 200 ms, up to 200 ms of batches): the ledger is
 *   idempotent by event id, so those duplicates are harmless by design.
 * - Shipping may happen on another thread (WorkerShipper): the spool stays here and is acknowledged
 *   only when the shipper reports Kafka's acknowledgement; a shipper that fails or dies rejects, and
 *   the same records are sent again after a pause.
 * - A direct send that timed out may still land later (kafkajs keeps retrying); the spooled copy
 *   then arrives as a duplicate with the same event id. Again harmless, never a loss.
 */
export class DurableAuditPublisher implements AuditSink {
  readonly #options: DurableAuditOptions;
  readonly #topic: string;
  /** True while the spool holds events not yet on Kafka. */
  #spooling: boolean;
  #appending = 0;
  #replaying: Promise<void> | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  readonly #localFirst: boolean;
  readonly #requests: GroupSender;
  readonly #outcomes: GroupSender;
  readonly #shipper: AuditShipper;
  /** The records this process appended, oldest first, until Kafka acknowledged them (see #released). */
  readonly #spooledRecords: SpooledRecord[] = [];
  /** Records pending when the spool was opened (an earlier process's): acknowledged first. */
  #inheritedRecords: number;
  /** The spool's acknowledgedRecords already taken off the agents' holds. */
  #releasedRecords = 0;
  /** Per agent: what its calls hold in the spool now. */
  readonly #agentHolds = new Map<string, { records: number; bytes: number }>();
  /** The agent of each call whose request is recorded and whose outcome is not yet (the open calls). */
  readonly #callAgents = new Map<string, string>();
  /** Per agent: its calls whose request is recorded and whose outcome is not yet. */
  readonly #agentOpenCalls = new Map<string, number>();

  constructor(options: DurableAuditOptions) {
    this.#options = options;
    this.#topic = topicName(options.topicPrefix, Topics.audit);
    this.#shipper = options.shipper ?? new ProducerShipper(options.producer, this.#topic);
    this.#requests = new GroupSender(options.producer, this.#topic, options.sendTimeoutMs);
    // Nobody waits for an outcome (the agent already has its answer), so outcomes linger a few
    // milliseconds to share produce requests: fewer requests, less CPU per call.
    this.#outcomes = options.outcomeProducer
      ? new GroupSender(options.outcomeProducer, this.#topic, options.sendTimeoutMs, OUTCOME_LINGER_MS)
      : this.#requests;
    this.#localFirst = options.acceptance === 'local-first';
    this.#inheritedRecords = options.spool.pendingRecords;
    this.#releasedRecords = options.spool.acknowledgedRecords;
    this.#spooling = this.#localFirst || options.spool.pendingRecords > 0;
    if (this.#spooling) this.#startReplay();
  }

  /** Events waiting in the spool for Kafka. */
  get spooled(): number {
    return this.#options.spool.pendingRecords;
  }

  get spooling(): boolean {
    return this.#spooling;
  }

  async publish(event: AuditEvent): Promise<void> {
    // Validate our own output: a malformed event would otherwise surface only in the dead-letter topic.
    let valid: AuditEvent;
    try {
      valid = auditEvents.parse(event);
    } catch (error) {
      // A malformed outcome is refused, but its call is over all the same: its room is released.
      if (event.type === 'tool_call.completed') this.#closed(event.callId);
      throw error;
    }
    const value = JSON.stringify(valid);
    const opensCall = valid.type === 'tool_call.requested';
    const agentId =
      valid.type === 'tool_call.requested' ? valid.agent.id : this.#callAgents.get(valid.callId);
    if (valid.type === 'tool_call.requested') {
      this.#admit(Buffer.byteLength(value), valid.agent.id);
      this.#opened(valid.callId, valid.agent.id);
    }
    try {
      await this.#publish(valid.callId, value, opensCall, agentId);
    } catch (error) {
      if (opensCall) this.#closed(valid.callId);
      throw error;
    } finally {
      // The call is over whether or not its outcome made it: release its reserved room.
      if (valid.type === 'tool_call.completed') this.#closed(valid.callId);
    }
  }

  /** A call's request is being recorded: room is kept for its outcome until `#closed`. */
  #opened(callId: string, agentId: string): void {
    this.#callAgents.set(callId, agentId);
    this.#agentOpenCalls.set(agentId, (this.#agentOpenCalls.get(agentId) ?? 0) + 1);
  }

  /** A call's outcome is recorded, or its request could not be: the room kept for it is released. */
  #closed(callId: string): void {
    const agentId = this.#callAgents.get(callId);
    if (agentId === undefined) return;
    this.#callAgents.delete(callId);
    const open = (this.#agentOpenCalls.get(agentId) ?? 1) - 1;
    if (open > 0) this.#agentOpenCalls.set(agentId, open);
    else this.#agentOpenCalls.delete(agentId);
  }

  /**
   * Throws when the audit path could not take a new call: Kafka away and the spool full, or a
   * spool that refuses appends after a disk failure (unready, the replica gets restarted, and
   * reopening the spool repairs it).
   */
  check(): void {
    const { broken } = this.#options.spool;
    if (broken) throw broken;
    if (this.#spooling && this.#refusesCall(TYPICAL_REQUEST_BYTES)) {
      throw new Error(`kafka unreachable and the audit spool is full (${this.spooled} events)`);
    }
  }

  /** Replays what it can within `timeoutMs` (shutdown); what is left stays on disk for next time. */
  async flush(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#behind() && Date.now() < deadline) {
      this.#wake?.();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    if (this.#behind())
      this.#options.logger.warn(
        { spooled: this.spooled },
        'audit events left in the spool for the next start',
      );
  }

  /** Stops replaying; call after `flush`, before the producer disconnects. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#wake?.();
    await this.#replaying;
  }

  /** Whether a new call's request, plus room for its outcome and every open call's, would not fit. */
  #refusesCall(requestBytes: number): boolean {
    const openCalls = this.#callAgents.size;
    const records = 1 + (openCalls + 1);
    const bytes = requestBytes + (openCalls + 1) * OUTCOME_RESERVE_BYTES;
    return this.#options.spool.wouldRefuse(bytes, records);
  }

  #admit(requestBytes: number, agentId: string): void {
    const { spool } = this.#options;
    // Only a spool that is in use can refuse; with Kafka healthy nothing is spooled.
    if (!this.#spooling) return;
    if (this.#refusesCall(requestBytes)) {
      throw new AuditUnavailableError(
        `audit spool full (${spool.pendingRecords} events waiting for Kafka)`,
        this.#options.retryIntervalMs,
      );
    }
    // The call's request and its outcome, on top of what the agent's calls hold already and of
    // the outcomes its open calls will add (so that many calls at once cannot overrun the share).
    const holds = this.#agentHolds.get(agentId) ?? { records: 0, bytes: 0 };
    const outcomes = (this.#agentOpenCalls.get(agentId) ?? 0) + 1;
    const share = this.#options.agentShare ?? DEFAULT_AGENT_SHARE;
    const { maxBytes, maxRecords } = spool.limits;
    if (
      holds.records + 1 + outcomes > share * maxRecords ||
      holds.bytes + requestBytes + outcomes * OUTCOME_RESERVE_BYTES > share * maxBytes
    ) {
      throw new AuditUnavailableError(
        `this agent's share of the audit spool is full (${holds.records} of its events waiting for Kafka)`,
        this.#options.retryIntervalMs,
      );
    }
  }

  /** Counts a record about to be appended to its agent's hold; the entry marks it until acknowledged. */
  #hold(agentId: string | undefined, bytes: number): SpooledRecord {
    const record: SpooledRecord = { agentId, bytes, inSpool: true };
    this.#spooledRecords.push(record);
    if (agentId !== undefined) {
      const holds = this.#agentHolds.get(agentId) ?? { records: 0, bytes: 0 };
      holds.records++;
      holds.bytes += bytes;
      this.#agentHolds.set(agentId, holds);
    }
    return record;
  }

  /** A record leaves its agent's hold: acknowledged by Kafka, or never spooled (its append failed). */
  #unhold(record: SpooledRecord): void {
    if (record.agentId === undefined) return;
    const holds = this.#agentHolds.get(record.agentId);
    if (!holds) return;
    holds.records--;
    holds.bytes -= record.bytes;
    if (holds.records <= 0) this.#agentHolds.delete(record.agentId);
  }

  /**
   * Kafka acknowledged the oldest `count` spooled records: an earlier process's first, then this
   * one's, in append order (the spool's order), skipping those whose append failed.
   */
  #released(count: number): void {
    this.#releasedRecords += count;
    const inherited = Math.min(count, this.#inheritedRecords);
    this.#inheritedRecords -= inherited;
    let left = count - inherited;
    let popped = 0;
    while (left > 0 && popped < this.#spooledRecords.length) {
      const record = this.#spooledRecords[popped++] as SpooledRecord;
      if (!record.inSpool) continue;
      this.#unhold(record);
      left--;
    }
    // Failed appends at the head are not in the spool either: dropped with the rest.
    while (popped < this.#spooledRecords.length && !this.#spooledRecords[popped]?.inSpool) popped++;
    this.#spooledRecords.splice(0, popped);
  }

  /** `key` is the call's id: an outcome (not `opensCall`) closes it once the spool has taken its room. */
  async #publish(key: string, value: string, opensCall: boolean, agentId: string | undefined): Promise<void> {
    const sender = opensCall ? this.#requests : this.#outcomes;
    if (!this.#spooling) {
      try {
        await sender.send(key, value);
        return;
      } catch (error) {
        if (!this.#spooling) {
          this.#options.logger.warn(
            { err: error },
            'kafka did not acknowledge an audit event in time; spooling audit events locally',
          );
        }
        this.#spooling = true;
      }
    }
    this.#appending++;
    const payload = Buffer.from(value, 'utf8');
    // Counted before the append is queued, so that the entries keep the spool's order.
    const record = this.#hold(agentId, payload.length);
    try {
      // Nobody waits for an outcome: in local-first mode it shares the disk write of a later request.
      const appended = this.#options.spool.append(payload, {
        deferMs: opensCall || !this.#localFirst ? 0 : OUTCOME_DEFER_MS,
      });
      // The spool reserved the outcome's room as it queued it, and the agent's hold counts it: the
      // room kept for it since its request is given back now, not while the write waits its turn.
      if (!opensCall) this.#closed(key);
      await appended;
    } catch (error) {
      record.inSpool = false;
      this.#unhold(record);
      // Failed entries at the newest end are dropped now (a broken spool fails every append).
      while (this.#spooledRecords.at(-1)?.inSpool === false) this.#spooledRecords.pop();
      if (error instanceof SpoolFullError) {
        throw new AuditUnavailableError(error.message, this.#options.retryIntervalMs, error);
      }
      throw error;
    } finally {
      this.#appending--;
      // Also after a failed append: the replay may have stopped to wait for this one, and must look
      // again (to ship what is there, or to switch back to Kafka once nothing is).
      this.#startReplay();
    }
  }

  /** Whether events wait in the spool for Kafka (in local-first mode the spool is always in use). */
  #behind(): boolean {
    if (this.#localFirst) return this.#options.spool.pendingRecords > 0 || this.#appending > 0;
    return this.#spooling;
  }

  #startReplay(): void {
    if (this.#replaying || this.#stopped) return;
    this.#replaying = this.#replay()
      .catch(async (error: unknown) => {
        // A spool that cannot be read (disk error) must not spin: log, wait, try again.
        this.#options.logger.error({ err: error, spooled: this.spooled }, 'audit replay failed; retrying');
        await this.#pause(this.#options.retryIntervalMs);
      })
      .finally(() => {
        this.#replaying = undefined;
        // An append may have become durable after the loop's last look. (Appends still in flight
        // restart the replay themselves once durable, see #publish: no need to poll for them.)
        if (this.#options.spool.pendingRecords > 0 && !this.#stopped) this.#startReplay();
      });
  }

  async #replay(): Promise<void> {
    const { spool, logger } = this.#options;
    let failures = 0;
    while (!this.#stopped) {
      // Checked synchronously: no append can slip in between this test and the switch back.
      if (spool.pendingRecords === 0 && this.#appending === 0) {
        if (this.#localFirst) return; // the spool stays the way in; the next append restarts the loop
        if (failures > 0 || this.#spooling) logger.info('audit spool drained; publishing to kafka directly');
        this.#spooling = false;
        return;
      }
      // Shipping is the normal path in local-first mode: let events gather so that one produce
      // request (and one spool acknowledgement) carries many of them. Nobody waits for it.
      if (this.#localFirst && spool.pendingRecords < REPLAY_BATCH) {
        await this.#pause(SHIP_LINGER_MS);
        if (this.#stopped) return; // stop() woke the pause: what is left stays for flush or the next start
      }
      const batch = await spool.peek(REPLAY_BATCH);
      // Nothing durable yet, only appends in flight: each restarts the replay once it is durable.
      if (batch.records.length === 0) return;
      try {
        // No timeout here: nobody waits on the replay, and waiting out kafkajs's own retries avoids
        // piling up parallel sends of the same batch.
        await this.#shipper.ship(batch.records);
      } catch (error) {
        failures++;
        if (failures === 1)
          logger.warn({ err: error, spooled: this.spooled }, 'audit replay waiting for kafka');
        await this.#pause(this.#options.retryIntervalMs);
        continue;
      }
      try {
        await spool.acknowledge(batch);
      } finally {
        // Whatever the spool let go of, even when its position write then failed.
        this.#released(spool.acknowledgedRecords - this.#releasedRecords);
      }
      // In local-first mode shipping is the normal path, not worth a line per batch.
      if (this.#localFirst && failures === 0)
        logger.debug({ shipped: batch.records.length }, 'audit events shipped to kafka');
      else
        logger.info(
          { replayed: batch.records.length, spooled: this.spooled },
          'audit events replayed to kafka',
        );
    }
  }

  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = done;
    });
  }
}

/** Most events one coalesced produce request carries. */
const GROUP_LIMIT = 500;
/** How long outcome events gather before they are sent together. */
const OUTCOME_LINGER_MS = 5;

interface QueuedEvent {
  key: string;
  value: string;
  resolve: () => void;
  reject: (error: unknown) => void;
  /** Set when the caller stopped waiting (timeout) and spooled the event instead. */
  abandoned: boolean;
}

/**
 * Group commit towards Kafka: the idempotent producer allows one produce request in flight, so
 * one request per event would queue concurrent calls behind each other (≈ 1,000 events/s here).
 * Events sent while a request is in flight go together in the next one; each caller still
 * resolves only when Kafka acknowledged its own event (acks=all). Order per key is kept: a call's
 * outcome is sent only after its request resolved.
 */
class GroupSender {
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #timeoutMs: number;
  #queue: QueuedEvent[] = [];
  #sending = false;

  readonly #lingerMs: number;

  /** `lingerMs`: how long to gather events before the first request of a burst (0: send at once). */
  constructor(producer: Producer, topic: string, timeoutMs: number, lingerMs = 0) {
    this.#producer = producer;
    this.#topic = topic;
    this.#timeoutMs = timeoutMs;
    this.#lingerMs = lingerMs;
  }

  /** Resolves once Kafka acknowledged the event; rejects after the timeout (the caller spools). */
  send(key: string, value: string): Promise<void> {
    let entry: QueuedEvent | undefined;
    const sent = new Promise<void>((resolve, reject) => {
      entry = { key, value, resolve, reject, abandoned: false };
      this.#queue.push(entry);
    });
    if (!this.#sending) void this.#drain();
    return withTimeout(sent, this.#timeoutMs).catch((error: unknown) => {
      if (entry) entry.abandoned = true;
      throw error;
    });
  }

  async #drain(): Promise<void> {
    this.#sending = true;
    if (this.#lingerMs > 0) await new Promise((resolve) => setTimeout(resolve, this.#lingerMs));
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue.splice(0, GROUP_LIMIT).filter((entry) => !entry.abandoned);
        if (group.length === 0) continue;
        try {
          await sendDurably(
            this.#producer,
            this.#topic,
            group.map(({ key, value }) => ({ key, value })),
          );
          for (const entry of group) entry.resolve();
        } catch (error) {
          for (const entry of group) entry.reject(error);
        }
      }
    } finally {
      this.#sending = false;
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no acknowledgement from kafka within ${ms} ms`)), ms);
  });
  // The losing send keeps running inside kafkajs; swallow its eventual rejection.
  promise.catch(() => {});
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
