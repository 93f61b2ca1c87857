import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import express, { type ErrorRequestHandler, type Express, type RequestHandler } from 'express';
import helmet from 'helmet';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { AppError, PROBLEM_CONTENT_TYPE, problem } from './errors.ts';
import type { Health } from './health.ts';

declare global {
  // biome-ignore lint/suspicious/noRedeclare: augmenting Express's global Request type is how express is extended.
  namespace Express {
    interface Request {
      /** Correlates every log line of one request; echoed in the X-Request-Id response header. */
      id: string;
      log: Logger;
    }
  }
}

export interface HttpAppOptions {
  logger: Logger;
  health: Health;
  metrics: Registry;
}

/**
 * An express app with the routes every service has: /livez, /readyz, /metrics. Security headers
 * come from helmet; every request gets an id and a child logger carrying it.
 */
export function createHttpApp({ logger, health, metrics }: HttpAppOptions): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(helmet());
  app.use(requestContext(logger));
  app.get('/livez', (_req, res) => {
    res.json({ status: 'alive' });
  });
  app.get('/readyz', async (_req, res) => {
    const readiness = await health.readiness();
    res.status(readiness.ready ? 200 : 503).json(readiness);
  });
  app.get('/metrics', async (_req, res) => {
    res.type(metrics.contentType).send(await metrics.metrics());
  });
  return app;
}

function requestContext(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const incoming = req.get('x-request-id');
    // Accept a caller's id only when it is short and plain, so it cannot forge log lines.
    req.id = incoming && /^[\w.-]{1,64}$/.test(incoming) ? incoming : randomUUID();
    req.log = logger.child({ requestId: req.id });
    res.setHeader('X-Request-Id', req.id);
    next();
  };
}

/** Adds the terminal 404 and error handlers; call after all routes. Errors become problem+json. */
export function installErrorHandlers(app: Express): void {
  app.use((req, res) => {
    res
      .status(404)
      .type(PROBLEM_CONTENT_TYPE)
      .json(problem('not_found', 404, 'Not Found', `No route for ${req.method} ${req.path}`));
  });
  const handler: ErrorRequestHandler = (error, req, res, _next) => {
    const { status, body } = toProblem(error);
    if (status >= 500) req.log?.error({ err: error }, 'request failed');
    if (res.headersSent) {
      res.end();
      return;
    }
    res.status(status).type(PROBLEM_CONTENT_TYPE).json(body);
  };
  app.use(handler);
}

/** Maps an error to an HTTP status and problem body; unknown errors never leak their message. */
export function toProblem(error: unknown): { status: number; body: ReturnType<typeof problem> } {
  if (error instanceof AppError) {
    return {
      status: error.status,
      body: { ...problem(error.code, error.status, error.message), retry: error.retry },
    };
  }
  // body-parser errors carry an http status and a type.
  const httpError = error as { status?: number; type?: string; expose?: boolean; message?: string };
  if (typeof httpError.status === 'number' && httpError.status >= 400 && httpError.status < 500) {
    const code =
      httpError.type === 'entity.too.large' ? 'payload_too_large' : (httpError.type ?? 'bad_request');
    return {
      status: httpError.status,
      body: problem(
        code.replaceAll('.', '_'),
        httpError.status,
        httpError.expose ? (httpError.message ?? 'Bad Request') : 'Bad Request',
      ),
    };
  }
  return { status: 500, body: problem('internal', 500, 'Internal Server Error') };
}

/** Starts listening; resolves once the port is bound (port 0 picks a free one). */
export function listen(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  host: string,
  port: number,
): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer(handler);
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

/**
 * Stops accepting connections and waits for in-flight requests; idle keep-alive connections close
 * at once. After `graceMs`, any connection still open (e.g. a long-lived stream) is cut.
 */
export function closeServer(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close((error) => {
      clearTimeout(timer);
      if (error && (error as NodeJS.ErrnoException).code !== 'ERR_SERVER_NOT_RUNNING') reject(error);
      else resolve();
    });
    server.closeIdleConnections();
  });
}
