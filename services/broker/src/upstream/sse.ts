import { StringDecoder } from 'node:string_decoder';

/** One server-sent event: its data lines joined by "\n", its id and its type, when present. */
export interface SseEvent {
  data: string;
  id: string | undefined;
  event: string | undefined;
}

export class SseTooLargeError extends Error {}

/**
 * An incremental text/event-stream parser (WHATWG "event stream interpretation"), fed with raw
 * chunks as they arrive. It keeps the last event id (for Last-Event-ID) and the server's `retry`
 * hint. One event — its pending line plus its data — may hold at most `maxEventChars` characters,
 * so a hostile stream cannot grow the buffer without bound.
 */
export class SseParser {
  lastEventId: string | undefined;
  retryMs: number | undefined;
  readonly #decoder = new StringDecoder('utf8');
  readonly #maxEventChars: number;
  readonly #onEvent: (event: SseEvent) => void;
  #pending = '';
  #data: string[] = [];
  #dataChars = 0;
  #event: string | undefined;
  #id: string | undefined;
  #sawId = false;
  #first = true;

  constructor(maxEventChars: number, onEvent: (event: SseEvent) => void) {
    this.#maxEventChars = maxEventChars;
    this.#onEvent = onEvent;
  }

  /** Feeds one chunk; dispatches every event it completes. Throws SseTooLargeError over the bound. */
  push(chunk: Buffer): void {
    let text = this.#decoder.write(chunk);
    if (this.#first && text.length > 0) {
      this.#first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    this.#pending += text;
    let start = 0;
    const pending = this.#pending;
    // The next LF and CR at or after `start`, searched again only once passed (-1: none left).
    // Searching both on every line made a chunk of many short lines quadratic in its length.
    let lf = -2;
    let cr = -2;
    for (;;) {
      if (lf !== -1 && lf < start) lf = pending.indexOf('\n', start);
      if (cr !== -1 && cr < start) cr = pending.indexOf('\r', start);
      let end: number;
      let next: number;
      if (cr !== -1 && (lf === -1 || cr < lf)) {
        // A CR at the very end may be the first half of CRLF: wait for the next chunk.
        if (cr === pending.length - 1) break;
        end = cr;
        next = pending.charCodeAt(cr + 1) === 10 ? cr + 2 : cr + 1;
      } else if (lf !== -1) {
        end = lf;
        next = lf + 1;
      } else {
        break;
      }
      this.#line(pending.slice(start, end));
      start = next;
    }
    this.#pending = start === 0 ? pending : pending.slice(start);
    if (this.#pending.length + this.#dataChars > this.#maxEventChars) {
      throw new SseTooLargeError(`an event exceeds ${this.#maxEventChars} characters`);
    }
  }

  /** The stream ended: an unterminated last event is discarded, as the standard says. */
  end(): void {
    this.#decoder.end();
    this.#pending = '';
    this.#data = [];
    this.#dataChars = 0;
  }

  #line(line: string): void {
    if (line.length === 0) {
      this.#dispatch();
      return;
    }
    if (line.charCodeAt(0) === 58 /* ':' comment */) return;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case 'data':
        this.#data.push(value);
        this.#dataChars += value.length + 1;
        if (this.#dataChars > this.#maxEventChars) {
          throw new SseTooLargeError(`an event exceeds ${this.#maxEventChars} characters`);
        }
        break;
      case 'event':
        this.#event = value;
        break;
      case 'id':
        if (!value.includes('\0')) {
          this.#id = value;
          this.#sawId = true;
        }
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break;
    }
  }

  #dispatch(): void {
    if (this.#sawId) this.lastEventId = this.#id;
    const event: SseEvent = {
      data: this.#data.join('\n'),
      id: this.#sawId ? this.#id : undefined,
      event: this.#event,
    };
    const hadData = this.#data.length > 0;
    this.#data = [];
    this.#dataChars = 0;
    this.#event = undefined;
    this.#sawId = false;
    if (hadData) this.#onEvent(event);
  }
}
