import { connect as netConnect, type Socket } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import type { SiemDestination } from './exporter.ts';
import type { OcsfEvent } from './ocsf.ts';

export interface SyslogOptions {
  host: string;
  port: number;
  /** RFC 5425 TLS; `ca` (PEM) pins the receiver's issuer. Omitted: plain TCP (RFC 6587). */
  tls?: { ca?: string; servername?: string };
  appName?: string;
  hostname?: string;
  connectTimeoutMs?: number;
  /** Position name in audit.siem_positions; distinct per configured receiver. Default `syslog`. */
  name?: string;
}

// facility 13 = log audit (RFC 5424 table 1).
const FACILITY = 13;
// OCSF severity_id → syslog severity.
const SEVERITY: Record<number, number> = { 0: 6, 1: 6, 2: 5, 3: 4, 4: 3, 5: 2, 6: 1, 99: 6 };
// 32473 is the private enterprise number reserved for documentation (RFC 5612).
const SD_ID = 'ocsf@32473';

/** One RFC 5424 message carrying an OCSF event as its JSON message body. */
export function formatRfc5424(event: OcsfEvent, appName: string, host: string): string {
  const severityId = typeof event.severity_id === 'number' ? event.severity_id : 0;
  const pri = FACILITY * 8 + (SEVERITY[severityId] ?? 6);
  const time = new Date(event.time as number).toISOString();
  const metadata = (event.metadata ?? {}) as { uid?: string };
  const sd = `[${SD_ID} class_uid="${event.class_uid}" uid="${escapeParam(String(metadata.uid ?? '-'))}"]`;
  return `<${pri}>1 ${time} ${header(host)} ${header(appName)} - API_ACTIVITY ${sd} ${JSON.stringify(event)}`;
}

/**
 * Syslog over TCP with octet-counting framing (RFC 6587 / RFC 5425), optionally in TLS. `send`
 * resolves once the frames are written to the socket; a broken connection is dropped and the next
 * send reconnects, and the exporter resends the batch (at-least-once).
 */
export class SyslogDestination implements SiemDestination {
  readonly name: string;
  readonly #options: SyslogOptions;
  #socket: Socket | undefined;

  constructor(options: SyslogOptions) {
    this.#options = options;
    this.name = options.name ?? 'syslog';
  }

  async send(events: OcsfEvent[]): Promise<void> {
    const socket = await this.#connection();
    const app = this.#options.appName ?? 'portcullis';
    const host = this.#options.hostname ?? osHostname();
    const frames = events.map((event) => {
      const message = formatRfc5424(event, app, host);
      return `${Buffer.byteLength(message, 'utf8')} ${message}`;
    });
    await new Promise<void>((resolve, reject) => {
      const fail = (error: Error) => reject(error);
      socket.once('error', fail);
      socket.write(frames.join(''), 'utf8', (error) => {
        socket.off('error', fail);
        if (error) reject(error);
        else resolve();
      });
    }).catch((error) => {
      this.#drop();
      throw error;
    });
  }

  #connection(): Promise<Socket> {
    if (this.#socket && !this.#socket.destroyed && this.#socket.writable)
      return Promise.resolve(this.#socket);
    const { host, port, tls } = this.#options;
    return new Promise((resolve, reject) => {
      const socket = tls
        ? tlsConnect({ host, port, ca: tls.ca, servername: tls.servername ?? host })
        : netConnect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy(new Error(`syslog connect to ${host}:${port} timed out`));
      }, this.#options.connectTimeoutMs ?? 5000);
      socket.once(tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        socket.setKeepAlive(true, 10000);
        // Later errors only mark the connection dead; the next send reconnects.
        socket.on('error', () => this.#drop());
        // A receiver that closes its side will not read what we write next: reconnect first.
        socket.on('end', () => this.#drop());
        socket.on('close', () => {
          if (this.#socket === socket) this.#socket = undefined;
        });
        this.#socket = socket;
        resolve(socket);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  #drop(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }

  async close(): Promise<void> {
    const socket = this.#socket;
    this.#socket = undefined;
    if (socket && !socket.destroyed) await new Promise<void>((resolve) => socket.end(resolve));
  }
}

function header(value: string): string {
  // Header fields are printable US-ASCII without spaces (RFC 5424 §6).
  return value.replace(/[^\x21-\x7e]/g, '_').slice(0, 48) || '-';
}

function escapeParam(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}
