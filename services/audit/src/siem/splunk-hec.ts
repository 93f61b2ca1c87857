import { randomUUID } from 'node:crypto';
import type { SiemDestination } from './exporter.ts';
import type { OcsfEvent } from './ocsf.ts';

export interface SplunkHecOptions {
  /** Base URL of the HEC endpoint, e.g. https://splunk.example.com:8088 */
  url: string;
  token: string;
  index?: string;
  sourcetype?: string;
  host?: string;
  /** How long to wait for the indexer acknowledgement before sending the batch again. */
  ackTimeoutMs?: number;
  ackPollMs?: number;
  requestTimeoutMs?: number;
  /** Position name in audit.siem_positions; distinct per configured HEC. Default `splunk-hec`. */
  name?: string;
}

/**
 * Splunk HTTP Event Collector with indexer acknowledgement: a batch is POSTed to
 * /services/collector/event on this sender's channel, and `send` resolves only once
 * /services/collector/ack reports its ackId as indexed. Anything short of that throws, and the
 * exporter sends the batch again.
 */
export class SplunkHecDestination implements SiemDestination {
  readonly name: string;
  readonly #options: Required<Omit<SplunkHecOptions, 'index' | 'name'>> & { index?: string };
  /** One channel per process: Splunk tracks acks per channel. */
  readonly #channel = randomUUID();

  constructor(options: SplunkHecOptions) {
    this.name = options.name ?? 'splunk-hec';
    this.#options = {
      sourcetype: 'ocsf:api_activity',
      host: 'portcullis-audit',
      ackTimeoutMs: 30000,
      ackPollMs: 250,
      requestTimeoutMs: 10000,
      ...options,
      url: options.url.replace(/\/+$/, ''),
    };
  }

  async send(events: OcsfEvent[]): Promise<void> {
    const { sourcetype, host, index } = this.#options;
    const body = events
      .map((event) =>
        JSON.stringify({
          time: (event.time as number) / 1000,
          host,
          source: 'portcullis',
          sourcetype,
          ...(index ? { index } : {}),
          event,
        }),
      )
      .join('\n');
    const response = await this.#post('/services/collector/event', body);
    const answer = (await response.json().catch(() => ({}))) as {
      code?: number;
      ackId?: number;
      text?: string;
    };
    if (!response.ok || answer.code !== 0 || typeof answer.ackId !== 'number') {
      throw new Error(
        `HEC refused the batch: HTTP ${response.status}, code ${answer.code}, ${answer.text ?? ''}`,
      );
    }
    await this.#awaitAck(answer.ackId);
  }

  async #awaitAck(ackId: number): Promise<void> {
    const deadline = Date.now() + this.#options.ackTimeoutMs;
    while (Date.now() < deadline) {
      const response = await this.#post('/services/collector/ack', JSON.stringify({ acks: [ackId] }));
      if (response.ok) {
        const answer = (await response.json()) as { acks?: Record<string, boolean> };
        if (answer.acks?.[String(ackId)] === true) return;
      } else {
        await response.body?.cancel();
      }
      await new Promise((resolve) => setTimeout(resolve, this.#options.ackPollMs));
    }
    throw new Error(`HEC did not acknowledge ackId ${ackId} within ${this.#options.ackTimeoutMs} ms`);
  }

  #post(path: string, body: string): Promise<Response> {
    return fetch(`${this.#options.url}${path}`, {
      method: 'POST',
      headers: {
        authorization: `Splunk ${this.#options.token}`,
        'x-splunk-request-channel': this.#channel,
        'content-type': 'application/json',
      },
      body,
      signal: AbortSignal.timeout(this.#options.requestTimeoutMs),
    });
  }

  async close(): Promise<void> {}
}
