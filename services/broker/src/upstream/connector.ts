import type { Logger } from '@portcullis/runtime';
import {
  type UpstreamConnector,
  type UpstreamCredentials,
  UpstreamError,
  type UpstreamSession,
  type UpstreamSessionInit,
  type UpstreamTarget,
} from './connection.ts';
import { createHttpAgents, destroyHttpAgents, type HttpUpstreamOptions, openHttpSession } from './http.ts';
import { openStdioSession, type StdioUpstreamOptions } from './stdio.ts';

/** The scheme "no upstream auth": the upstream gets no credential at all. */
export const noUpstreamAuth: UpstreamCredentials = {
  forRequest: async () => ({}),
};

export interface UpstreamConnectorOptions {
  credentials: UpstreamCredentials;
  logger: Logger;
  /** Concurrent POSTs per upstream origin over the shared keep-alive pool; more queue for a socket. */
  maxSocketsPerUpstream?: number;
  /**
   * Most stdio children this replica runs at once (one per agent session and stdio app): agents
   * opening sessions must not exhaust the process table. Beyond it, opening fails 'unreachable'.
   */
  maxStdioSessions?: number;
  /** Transport settings passed through to each session (timeouts, bounds, backoff). */
  http?: Omit<HttpUpstreamOptions, 'credentials' | 'logger' | 'agents'>;
  stdio?: Omit<StdioUpstreamOptions, 'credentials' | 'logger'>;
}

/** An UpstreamConnector that also owns the shared sockets: close() releases them at shutdown. */
export interface ClosableUpstreamConnector extends UpstreamConnector {
  close(): Promise<void>;
}

/**
 * Opens upstream sessions over Streamable HTTP (one keep-alive pool shared by every HTTP session)
 * or stdio (one supervised child per session), chosen by the target's transport type.
 */
export function createUpstreamConnector(options: UpstreamConnectorOptions): ClosableUpstreamConnector {
  const agents = createHttpAgents(options.maxSocketsPerUpstream);
  const maxStdio = options.maxStdioSessions ?? 64;
  let stdioSessions = 0;
  return {
    async open(target: UpstreamTarget, init: UpstreamSessionInit): Promise<UpstreamSession> {
      const logger = options.logger; // sessions tag their own lines with appId
      const transport = target.transport;
      switch (transport.type) {
        case 'http':
          return openHttpSession(target.appId, transport.url, init, {
            ...options.http,
            credentials: options.credentials,
            logger,
            agents,
          });
        case 'stdio': {
          if (stdioSessions >= maxStdio)
            throw new UpstreamError(
              target.appId,
              'unreachable',
              `this replica already runs ${maxStdio} stdio upstream sessions`,
            );
          stdioSessions++;
          let session: UpstreamSession;
          try {
            session = await openStdioSession(target.appId, transport, init, {
              ...options.stdio,
              credentials: options.credentials,
              logger,
            });
          } catch (error) {
            stdioSessions--;
            throw error;
          }
          // The slot is given back once, however the session ends (close or release).
          let counted = true;
          const end = session.close.bind(session);
          const close = () => {
            if (counted) {
              counted = false;
              stdioSessions--;
            }
            return end();
          };
          session.close = close;
          session.release = close;
          return session;
        }
      }
    },
    async close(): Promise<void> {
      destroyHttpAgents(agents);
    },
  };
}
