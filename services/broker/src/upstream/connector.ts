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

export const DEFAULT_MAX_STDIO_SESSIONS = 64;
export const DEFAULT_MAX_STDIO_SESSIONS_PER_AGENT = 16;

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
  /**
   * Most of them one agent may hold (counted by UpstreamSessionInit.agentId), so that one agent
   * opening sessions cannot take every slot and lock the others out of stdio apps.
   */
  maxStdioSessionsPerAgent?: number;
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
  const maxStdio = options.maxStdioSessions ?? DEFAULT_MAX_STDIO_SESSIONS;
  const maxPerAgent = options.maxStdioSessionsPerAgent ?? DEFAULT_MAX_STDIO_SESSIONS_PER_AGENT;
  let stdioSessions = 0;
  const perAgent = new Map<string, number>();
  const take = (agentId: string | undefined) => {
    stdioSessions++;
    if (agentId !== undefined) perAgent.set(agentId, (perAgent.get(agentId) ?? 0) + 1);
  };
  const giveBack = (agentId: string | undefined) => {
    stdioSessions--;
    if (agentId === undefined) return;
    const left = (perAgent.get(agentId) ?? 1) - 1;
    if (left > 0) perAgent.set(agentId, left);
    else perAgent.delete(agentId);
  };
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
          const { agentId } = init;
          if (stdioSessions >= maxStdio)
            throw new UpstreamError(
              target.appId,
              'unreachable',
              `this replica already runs ${maxStdio} stdio upstream sessions`,
            );
          if (agentId !== undefined && (perAgent.get(agentId) ?? 0) >= maxPerAgent)
            throw new UpstreamError(
              target.appId,
              'unreachable',
              `this agent already holds ${maxPerAgent} stdio upstream sessions on this replica; end some of its sessions`,
            );
          take(agentId);
          let session: UpstreamSession;
          try {
            session = await openStdioSession(target.appId, transport, init, {
              ...options.stdio,
              credentials: options.credentials,
              logger,
            });
          } catch (error) {
            giveBack(agentId);
            throw error;
          }
          // The slot is given back once, however the session ends (close or release).
          let counted = true;
          const end = session.close.bind(session);
          const close = () => {
            if (counted) {
              counted = false;
              giveBack(agentId);
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
