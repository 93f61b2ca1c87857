import type { Logger } from '@portcullis/runtime';
import type pg from 'pg';
import { type ExportRow, type OcsfEvent, toOcsf } from './ocsf.ts';

/** Where OCSF events go. `send` resolves only once the destination has durably accepted them. */
export interface SiemDestination {
  /** Names the destination's position in audit.siem_positions. */
  readonly name: string;
  send(events: OcsfEvent[]): Promise<void>;
  close(): Promise<void>;
}

export interface ExporterOptions {
  pool: pg.Pool;
  destination: SiemDestination;
  logger: Logger;
  batchSize?: number;
  /** Backoff after a failed send: doubles from `initialBackoffMs` up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  intervalMs?: number;
}

/**
 * Follows the ledger chain by chain and sends every tool call and approval decision to one SIEM
 * destination as OCSF. The position (per chain, the last sequence number sent) is written only
 * after the destination acknowledged, so nothing is lost across restarts and at most the batch in
 * flight is sent twice.
 */
export class SiemExporter {
  readonly #options: Required<Omit<ExporterOptions, 'logger' | 'pool' | 'destination'>> & ExporterOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;
  #backoffMs = 0;
  sent = 0;

  constructor(options: ExporterOptions) {
    this.#options = {
      batchSize: 500,
      initialBackoffMs: 200,
      maxBackoffMs: 30000,
      intervalMs: 1000,
      ...options,
    };
  }

  /**
   * Sends everything the ledger holds beyond the position; returns how many events were sent. One
   * replica at a time per destination (a session advisory lock): every replica runs the exporter,
   * and without it each would send every batch. A replica that finds the lock taken skips the round.
   */
  async runOnce(): Promise<number> {
    const { pool, destination } = this.#options;
    const lockKey = `portcullis.audit.siem.${destination.name}`;
    const holder = await pool.connect();
    // Checked out for the whole round: a connection the server ends meanwhile must fail the round
    // (the lock goes with the session), not crash the process through an unheard 'error' event.
    const onError = () => {};
    holder.on('error', onError);
    // After any failure the connection is not handed back to the pool: it may be the one that broke.
    let failed: Error | undefined;
    try {
      const { rows } = await holder.query<{ locked: boolean }>(
        'SELECT pg_try_advisory_lock(hashtext($1)) AS locked',
        [lockKey],
      );
      if (!rows[0]?.locked) return 0;
      try {
        return await this.#exportRound();
      } finally {
        await holder.query('SELECT pg_advisory_unlock(hashtext($1))', [lockKey]).catch((error: Error) => {
          failed = error; // the session is gone, and its lock with it
        });
      }
    } catch (error) {
      failed = error as Error;
      throw error;
    } finally {
      holder.off('error', onError);
      holder.release(failed);
    }
  }

  async #exportRound(): Promise<number> {
    const { pool, destination, batchSize } = this.#options;
    const { rows: chains } = await pool.query<{ chain_id: string; pos: string }>(
      `SELECT h.chain_id, COALESCE(p.seq, 0) AS pos
       FROM audit.chain_heads h
       LEFT JOIN audit.siem_positions p ON p.destination = $1 AND p.chain_id = h.chain_id
       WHERE h.seq > COALESCE(p.seq, 0) ORDER BY h.chain_id`,
      [destination.name],
    );
    let sent = 0;
    for (const chain of chains) {
      let position = Number(chain.pos);
      for (;;) {
        const rows = await this.#read(chain.chain_id, position, batchSize);
        if (rows.length === 0) break;
        const events = rows.map(toOcsf).filter((e): e is OcsfEvent => e !== null);
        if (events.length > 0) await destination.send(events);
        position = rows.at(-1)!.chainSeq;
        await pool.query(
          `INSERT INTO audit.siem_positions (destination, chain_id, seq) VALUES ($1, $2, $3)
           ON CONFLICT (destination, chain_id) DO UPDATE SET seq = GREATEST(audit.siem_positions.seq, EXCLUDED.seq), updated_at = now()`,
          [destination.name, chain.chain_id, position],
        );
        sent += events.length;
        this.sent += events.length;
        if (rows.length < batchSize) break;
      }
    }
    return sent;
  }

  async #read(chainId: string, after: number, limit: number): Promise<ExportRow[]> {
    const { rows } = await this.#options.pool.query<{
      event_id: string;
      event_type: string;
      chain_id: string;
      chain_seq: string;
      occurred_at: Date;
      payload: Record<string, unknown>;
      request: Record<string, unknown> | null;
    }>(
      `SELECT e.event_id, e.event_type, e.chain_id, e.chain_seq, e.occurred_at, e.payload, r.payload AS request
       FROM audit.ledger_events e
       LEFT JOIN LATERAL (
         SELECT q.payload FROM audit.ledger_events q
         WHERE e.event_type = 'tool_call.completed' AND q.call_id = e.call_id AND q.event_type = 'tool_call.requested'
         LIMIT 1
       ) r ON true
       WHERE e.chain_id = $1 AND e.chain_seq > $2
       ORDER BY e.chain_seq LIMIT $3`,
      [chainId, after, limit],
    );
    return rows.map((r) => ({
      eventId: r.event_id,
      eventType: r.event_type,
      chainId: r.chain_id,
      chainSeq: Number(r.chain_seq),
      occurredAt: r.occurred_at,
      payload: r.payload,
      request: r.request,
    }));
  }

  /** Runs `runOnce` every interval; a failure waits with exponential backoff, then resumes. */
  start(): void {
    const tick = async () => {
      if (this.#stopped) return;
      let delay = this.#options.intervalMs;
      try {
        await this.runOnce();
        this.#backoffMs = 0;
      } catch (error) {
        this.#backoffMs = Math.min(
          this.#options.maxBackoffMs,
          this.#backoffMs === 0 ? this.#options.initialBackoffMs : this.#backoffMs * 2,
        );
        delay = this.#backoffMs;
        this.#options.logger.warn(
          { err: error, destination: this.#options.destination.name, retryInMs: delay },
          'SIEM export failed; retrying',
        );
      }
      if (!this.#stopped) {
        this.#timer = setTimeout(() => {
          this.#running = tick();
        }, delay);
      }
    };
    this.#running = tick();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#running;
    await this.#options.destination.close();
  }
}
