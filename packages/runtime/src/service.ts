import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Express } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { Health } from './health.ts';
import { closeServer, createHttpApp, installErrorHandlers, listen } from './http.ts';
import { createLogger } from './logger.ts';
import { createMetricsRegistry } from './metrics.ts';
import { ShutdownManager } from './shutdown.ts';

export interface ServiceOptions {
  service: string;
  logLevel: string;
  instanceId: string;
  httpHost: string;
  httpPort: number;
  drainDelayMs: number;
  shutdownTimeoutMs: number;
  /** Extra log redaction paths for this service. */
  redact?: readonly string[];
}

/** What a service's composition root receives to wire its dependencies into. */
export interface ServiceContext {
  logger: Logger;
  health: Health;
  metrics: Registry;
  shutdown: ShutdownManager;
  /** Has /livez, /readyz and /metrics; add routes, the error handlers are added after. */
  app: Express;
  /**
   * Handlers that see each request before express does, on the same listener; one returns true
   * when it answered. For hot paths that must not pay for express middleware (the MCP gateway).
   */
  rawHandlers: RawHandler[];
}

/** A plain node:http handler that claims a request by returning true. */
export type RawHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface RunningService extends ServiceContext {
  port: number;
}

/**
 * The start-up sequence every service shares: logger, health, metrics, one shutdown path for
 * SIGTERM and SIGINT, then the service's own `compose`, then the HTTP listener, then readiness.
 * A failure during start-up runs the same shutdown path with exit code 1.
 */
export async function runService(
  options: ServiceOptions,
  compose: (context: ServiceContext) => Promise<void>,
): Promise<RunningService> {
  const logger = createLogger({
    service: options.service,
    level: options.logLevel,
    instanceId: options.instanceId,
    redact: options.redact ?? [],
  });
  const health = new Health();
  const metrics = createMetricsRegistry(options.service);
  const shutdown = new ShutdownManager({
    logger,
    health,
    drainDelayMs: options.drainDelayMs,
    timeoutMs: options.shutdownTimeoutMs,
  });
  shutdown.installSignalHandlers();
  process.on('unhandledRejection', (reason) => {
    logger.fatal({ err: reason }, 'unhandled promise rejection');
    void shutdown.shutdown('unhandledRejection', { exitCode: 1 });
  });

  const app = createHttpApp({ logger, health, metrics });
  const context: ServiceContext = { logger, health, metrics, shutdown, app, rawHandlers: [] };
  try {
    await compose(context);
    installErrorHandlers(app);
    const rawHandlers = context.rawHandlers;
    const handler =
      rawHandlers.length === 0
        ? app
        : (req: IncomingMessage, res: ServerResponse) => {
            for (const raw of rawHandlers) if (raw(req, res)) return;
            app(req, res);
          };
    const server = await listen(handler, options.httpHost, options.httpPort);
    shutdown.add('stop-intake', 'http server', () => closeServer(server, options.shutdownTimeoutMs / 2));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : options.httpPort;
    health.markStarted();
    logger.info({ host: options.httpHost, port }, `${options.service} ready`);
    return { ...context, port };
  } catch (error) {
    logger.fatal({ err: error }, 'start-up failed');
    // Nothing was serving yet, so there is no traffic to drain away from.
    await shutdown.shutdown('start-up failed', { exitCode: 1, drain: false });
    throw error;
  }
}
