import { createHash, timingSafeEqual } from 'node:crypto';
import { AppError } from '@portcullis/runtime';
import type { Express, RequestHandler } from 'express';
import type pg from 'pg';
import { QueryError, queryView } from './query.ts';

/**
 * GET /v1/ledger/:view — auditor queries over HTTP, read-only, one page per request.
 * Authentication: `Authorization: Bearer <token>`; only the token's SHA-256 is configured, and it
 * is compared in constant time. Errors are problem+json through the service's error handler.
 */
export function mountQueryApi(app: Express, pool: pg.Pool, tokenSha256: string | undefined): void {
  const expected = tokenSha256 ? Buffer.from(tokenSha256, 'hex') : undefined;
  const authenticate: RequestHandler = (req, res, next) => {
    if (!expected) {
      next(new AppError('query_api_disabled', 'The query API has no token configured', { status: 503 }));
      return;
    }
    const match = /^Bearer ([\x21-\x7e]{16,512})$/.exec(req.get('authorization') ?? '');
    const presented = match ? createHash('sha256').update(match[1]!, 'utf8').digest() : undefined;
    if (!presented || !timingSafeEqual(presented, expected)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="portcullis-ledger"');
      next(new AppError('unauthorized', 'A valid bearer token is required', { status: 401 }));
      return;
    }
    next();
  };
  app.get('/v1/ledger/:view', authenticate, async (req, res, next) => {
    try {
      const single = (name: string) => {
        const value = req.query[name];
        if (value !== undefined && typeof value !== 'string') {
          throw new QueryError(`query parameter ${name} must be given once`);
        }
        return value;
      };
      const page = await queryView(pool, {
        view: String(req.params.view),
        agent: single('agent'),
        user: single('user'),
        since: single('since'),
        until: single('until'),
        limit: single('limit') ?? 1000,
        cursor: single('cursor'),
      });
      res.json(page);
    } catch (error) {
      next(error instanceof QueryError ? new AppError('bad_query', error.message, { status: 400 }) : error);
    }
  });
}
