import { createServer as createHttpServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import { freePort } from '@portcullis/testing';
import type { OcsfEvent } from '../ocsf.ts';

/** A local Splunk HEC: channels, ackIds, acknowledgement after "indexing", injectable faults. */
export class LocalHec {
  readonly token = 'hec-token-00000000-1111';
  readonly indexed: OcsfEvent[] = [];
  /** Next N event POSTs answer 503 "Server is busy". */
  failNext = 0;
  /** The next N batches are accepted but never indexed, so their ack never turns true. */
  loseNext = 0;
  eventPosts = 0;
  channels = new Set<string>();
  readonly #acks = new Map<string, Map<number, boolean>>();
  #server: HttpServer | undefined;
  url = '';

  async start(): Promise<void> {
    this.#server = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => {
        body += chunk.toString('utf8');
      });
      req.on('end', () => this.#handle(req.url ?? '', req.headers, body, res));
    });
    const port = await freePort();
    await new Promise<void>((resolve) => this.#server!.listen(port, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${port}`;
  }

  #handle(
    url: string,
    headers: Record<string, string | string[] | undefined>,
    body: string,
    res: ServerResponse,
  ): void {
    const reply = (status: number, json: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(json));
    };
    if (headers.authorization !== `Splunk ${this.token}`) {
      reply(401, { text: 'Invalid token', code: 4 });
      return;
    }
    const channel = headers['x-splunk-request-channel'];
    if (typeof channel !== 'string' || !/^[0-9a-f-]{36}$/.test(channel)) {
      reply(400, { text: 'Data channel is missing', code: 10 });
      return;
    }
    this.channels.add(channel);
    const acks = this.#acks.get(channel) ?? new Map<number, boolean>();
    this.#acks.set(channel, acks);
    if (url === '/services/collector/event') {
      this.eventPosts++;
      if (this.failNext > 0) {
        this.failNext--;
        reply(503, { text: 'Server is busy', code: 9 });
        return;
      }
      // HEC accepts concatenated JSON objects; ours are newline-separated.
      const envelopes = body
        .split('\n')
        .map((line) => JSON.parse(line) as { event: OcsfEvent; time: number });
      const ackId = acks.size;
      acks.set(ackId, false);
      if (this.loseNext > 0) this.loseNext--;
      else
        setTimeout(() => {
          for (const e of envelopes) this.indexed.push(e.event);
          acks.set(ackId, true);
        }, 30);
      reply(200, { text: 'Success', code: 0, ackId });
      return;
    }
    if (url === '/services/collector/ack') {
      const { acks: asked } = JSON.parse(body) as { acks: number[] };
      reply(200, { acks: Object.fromEntries(asked.map((id) => [String(id), acks.get(id) === true])) });
      return;
    }
    reply(404, { text: 'The requested URL was not found on this server.', code: 404 });
  }

  uids(): Set<string> {
    return new Set(this.indexed.map((e) => (e.metadata as { uid: string }).uid));
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.#server?.close(() => resolve()) ?? resolve());
  }
}
