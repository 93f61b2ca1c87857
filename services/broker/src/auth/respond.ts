import type { ServerResponse } from 'node:http';
import { PROBLEM_CONTENT_TYPE, problem } from '@portcullis/runtime';
import type { AuthOutcome } from './authenticator.ts';

const TITLES: Record<number, string> = { 401: 'Unauthorized', 403: 'Forbidden', 503: 'Service Unavailable' };

/**
 * Answers a refused authentication on a raw node:http response: the status, the WWW-Authenticate
 * challenge when there is one, and a problem+json body with the stable code. Nothing of the
 * presented credential is in it (the outcome never holds any).
 */
export function writeAuthRefusal(res: ServerResponse, outcome: Extract<AuthOutcome, { ok: false }>): void {
  const body = JSON.stringify({
    ...problem(outcome.code, outcome.status, TITLES[outcome.status] ?? 'Error', outcome.detail),
    ...(outcome.status === 503 ? { retry: true } : {}),
  });
  res.writeHead(outcome.status, {
    'Content-Type': PROBLEM_CONTENT_TYPE,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    ...(outcome.wwwAuthenticate ? { 'WWW-Authenticate': outcome.wwwAuthenticate } : {}),
    ...(outcome.status === 503 ? { 'Retry-After': '5' } : {}),
  });
  res.end(body);
}
