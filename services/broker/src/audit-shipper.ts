import { Worker } from 'node:worker_threads';
import type { KafkaLogLevel } from '@portcullis/kafka';
import { sendDurably } from '@portcullis/kafka';
import type { Logger } from '@portcullis/runtime';
import type { Producer } from 'kafkajs';

/** Sends spooled audit records to Kafka; `ship` resolves once Kafka acknowledged all of them (acks=all). */
export interface AuditShipper {
  ship(records: readonly Buffer[]): Promise<void>;
}

/** Kafka messages for spooled audit events (JSON), keyed by call so that a call's events share a partition. */
export function keyedMessages(records: readonly Buffer[]): { key: string; value: Buffer }[] {
  return records.map((value) => ({
    key: (JSON.parse(value.toString('utf8')) as { callId: string }).callId,
    value,
  }));
}

/** Ships on the calling thread with the given producer (tests, tools; the broker uses WorkerShipper). */
export class ProducerShipper implements AuditShipper {
  readonly #producer: Producer;
  readonly #topic: string;

  constructor(producer: Producer, topic: string) {
    this.#producer = producer;
    this.#topic = topic;
  }

  async ship(records: readonly Buffer[]): Promise<void> {
    await sendDurably(this.#producer, this.#topic, keyedMessages(records));
  }
}

/** What the worker needs to build its producer: plain data only (it crosses a thread boundary). */
export interface ShipperWorkerConfig {
  clientId: string;
  brokers: string[];
  topic: string;
}

/** Main thread → worker. */
export type ToShipper =
  /** `data` holds the records back to back; `lengths` says where each ends. */
  { type: 'ship'; id: number; data: ArrayBuffer; lengths: number[] } | { type: 'close' };

/** Worker → main thread. */
export type FromShipper =
  | { type: 'shipped'; id: number }
  | { type: 'failed'; id: number; error: { name: string; message: string } }
  | {
      type: 'log';
      level: KafkaLogLevel;
      namespace: string;
      message: string;
      fields: Record<string, unknown>;
    };

/** Longest wait before a dead worker is replaced, however often it died in a row. */
const MAX_RESTART_DELAY_MS = 30_000;
/**
 * Deaths in a row (no shipment between) after which the replica reports itself not ready while its
 * worker is down: its audit events would only pile up in its own spool.
 */
const UNREADY_AFTER_FAILURES = 3;

/** The environment a shipper worker gets: kafkajs's own switches, nothing else of the broker's. */
function kafkajsEnvironment(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith('KAFKAJS_') && value !== undefined) env[name] = value;
  }
  return env;
}

export interface WorkerShipperOptions {
  config: ShipperWorkerConfig;
  logger: Logger;
  /** First wait before a dead worker is replaced; it doubles with each death in a row (up to 30 s). */
  restartDelayMs?: number;
  /** Longest `close` waits for the worker to disconnect its producer before it is terminated. */
  closeTimeoutMs?: number;
}

interface Pending {
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * Ships audit records from a worker thread with a kafkajs producer of its own, so that the
 * encoding, checksums, partitioning, socket I/O and response decoding of shipping never hold up
 * the broker's main thread, where calls are served.
 *
 * Supervised: a worker that dies (crash, OOM, terminate) is logged and replaced after
 * `restartDelayMs`, doubling with each death in a row. Its shipments in flight reject, so the
 * caller (the spool's replay) keeps their records and sends them again: nothing is lost, and a
 * batch Kafka took just before the crash is sent twice (duplicates by event id, which the ledger
 * ignores). Log entries of the worker's kafkajs client come back here and go through the broker's
 * redacting logger.
 */
export class WorkerShipper implements AuditShipper {
  readonly #options: WorkerShipperOptions;
  readonly #kafkaLogger: Logger;
  #worker: Worker | undefined;
  #exited: Promise<void> = Promise.resolve();
  #restart: NodeJS.Timeout | undefined;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closing = false;
  /** Worker deaths (or failed starts) since the last successful shipment. */
  #failures = 0;

  constructor(options: WorkerShipperOptions) {
    this.#options = options;
    this.#kafkaLogger = options.logger.child({ component: 'kafkajs', thread: 'audit-shipper' });
    this.#spawn();
  }

  ship(records: readonly Buffer[]): Promise<void> {
    const worker = this.#worker;
    if (this.#closing) return Promise.reject(new Error('audit shipper is closed'));
    if (!worker) return Promise.reject(new Error('audit shipper worker is restarting'));
    // One copy into a buffer of its own, whose memory then moves to the worker without a second
    // copy. The records themselves cannot move: they are views of the spool's memory.
    let total = 0;
    const lengths = records.map((record) => {
      total += record.length;
      return record.length;
    });
    const data = new Uint8Array(total);
    let at = 0;
    for (const record of records) {
      data.set(record, at);
      at += record.length;
    }
    const id = this.#nextId++;
    return new Promise<void>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      const message: ToShipper = { type: 'ship', id, data: data.buffer, lengths };
      worker.postMessage(message, [data.buffer]);
    });
  }

  /** Disconnects the worker's producer (shutdown, after the last shipment) and ends the worker. */
  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#restart);
    const worker = this.#worker;
    if (worker) {
      worker.postMessage({ type: 'close' } satisfies ToShipper);
      const timeoutMs = this.#options.closeTimeoutMs ?? 5000;
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => {
        timer = setTimeout(() => resolve('late'), timeoutMs);
      });
      if ((await Promise.race([this.#exited, late])) === 'late') {
        this.#options.logger.warn('audit shipper worker did not close in time; terminating it');
        await worker.terminate();
      }
      clearTimeout(timer);
    }
    await this.#exited;
  }

  /**
   * Readiness: throws while the worker is down after dying again and again without a shipment in
   * between (a single crash, replaced within a second, does not count). Ready again once a
   * replacement runs.
   */
  check(): void {
    if (!this.#worker && !this.#closing && this.#failures >= UNREADY_AFTER_FAILURES) {
      throw new Error(`audit shipper worker down after ${this.#failures} failures in a row; restarting it`);
    }
  }

  /**
   * Ends the worker at once and for good (shutdown with Kafka away): a shipment in flight would
   * otherwise wait out kafkajs's retries, tens of seconds, past the shutdown deadline. Its records
   * stay in the spool for the next start.
   */
  async abandon(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#restart);
    await this.#worker?.terminate();
    await this.#exited;
  }

  /** Test hook: ends the worker at once, as a crash would. */
  async terminateWorker(): Promise<void> {
    await this.#worker?.terminate();
  }

  /** Whether a worker is running (false between a crash and its replacement). */
  get running(): boolean {
    return this.#worker !== undefined;
  }

  #spawn(): void {
    this.#restart = undefined;
    if (this.#closing) return;
    let worker: Worker;
    try {
      worker = new Worker(new URL('./audit-shipper-worker.ts', import.meta.url), {
        workerData: this.#options.config,
        // Only kafkajs's own settings: the broker's environment holds secrets the worker never needs.
        env: kafkajsEnvironment(),
        // The worker holds one producer and batches of at most a few hundred records.
        resourceLimits: { maxOldGenerationSizeMb: 128 },
      });
    } catch (error) {
      this.#scheduleRestart({ err: error }, 'audit shipper worker could not start');
      return;
    }
    this.#worker = worker;
    worker.on('message', (message: FromShipper) => this.#receive(message));
    worker.on('error', (error) => this.#options.logger.error({ err: error }, 'audit shipper worker failed'));
    this.#exited = new Promise((resolve) => {
      worker.once('exit', (code) => {
        this.#worker = undefined;
        const error = new Error(`audit shipper worker exited (code ${code}) before Kafka answered`);
        for (const pending of this.#pending.values()) pending.reject(error);
        this.#pending.clear();
        if (!this.#closing) this.#scheduleRestart({ code }, 'audit shipper worker died; restarting it');
        resolve();
      });
    });
  }

  /**
   * Replaces the worker after a delay that doubles with each failure in a row (up to 30 s), so a
   * worker that cannot start or dies on every batch does not spin; a shipment that succeeds resets it.
   */
  #scheduleRestart(fields: Record<string, unknown>, message: string): void {
    this.#failures++;
    const base = this.#options.restartDelayMs ?? 1000;
    const delayMs = Math.min(base * 2 ** (this.#failures - 1), MAX_RESTART_DELAY_MS);
    this.#options.logger.error({ ...fields, failures: this.#failures, restartInMs: delayMs }, message);
    this.#restart = setTimeout(() => this.#spawn(), delayMs);
  }

  #receive(message: FromShipper): void {
    if (message.type === 'log') {
      this.#kafkaLogger[message.level]({ namespace: message.namespace, ...message.fields }, message.message);
      return;
    }
    const pending = this.#pending.get(message.id);
    if (!pending) return;
    this.#pending.delete(message.id);
    if (message.type === 'shipped') {
      this.#failures = 0;
      pending.resolve();
    } else pending.reject(Object.assign(new Error(message.error.message), { name: message.error.name }));
  }
}
