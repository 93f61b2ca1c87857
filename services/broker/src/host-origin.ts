import { PROBLEM_CONTENT_TYPE, problem } from '@portcullis/runtime';
import type { RequestHandler } from 'express';

/**
 * DNS-rebinding protection for the MCP endpoint. A hostile web page can make a browser resolve its
 * own name to 127.0.0.1 and talk to a gateway on the loopback interface; the browser then sends the
 * attacker's name in Host and its page's origin in Origin. So every request must name an allowed
 * Host, and a request that carries an Origin (browsers always do for cross-origin fetches) must come
 * from an allowed origin. Non-browser clients send no Origin and are judged by Host alone.
 * Checked before authentication, so a refused request touches nothing.
 */
export interface HostOriginOptions {
  /** `host`, `host:port`, or `host:*` (any port); IPv6 in brackets. Case-insensitive. */
  allowedHosts: readonly string[];
  /** `scheme://host`, `scheme://host:port`, or `scheme://host:*`. Case-insensitive. */
  allowedOrigins: readonly string[];
}

/** Loopback names on any port: what a gateway on a developer's machine is reached by. */
export const LOOPBACK_HOSTS = ['localhost:*', '127.0.0.1:*', '[::1]:*'];
export const LOOPBACK_ORIGINS = [
  'http://localhost:*',
  'http://127.0.0.1:*',
  'http://[::1]:*',
  'https://localhost:*',
  'https://127.0.0.1:*',
  'https://[::1]:*',
];

interface HostPattern {
  host: string;
  /** '' = no port given, '*' = any port. */
  port: string;
}

/** Splits `host[:port]` (IPv6 in brackets); undefined when it is not a plausible authority. */
function splitAuthority(authority: string): HostPattern | undefined {
  const value = authority.trim().toLowerCase();
  const match = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::(\d{1,5}|\*))?$/.exec(value);
  if (!match) return undefined;
  return { host: match[1]!, port: match[2] ?? '' };
}

function matches(candidate: HostPattern, allowed: readonly HostPattern[]): boolean {
  return allowed.some(
    (pattern) => pattern.host === candidate.host && (pattern.port === '*' || pattern.port === candidate.port),
  );
}

function parseOriginPattern(origin: string): { scheme: string; authority: HostPattern } | undefined {
  const match = /^(https?):\/\/(.+)$/i.exec(origin.trim());
  const authority = match ? splitAuthority(match[2]!) : undefined;
  return match && authority ? { scheme: match[1]!.toLowerCase(), authority } : undefined;
}

/** Why a request was refused, as the problem+json it is answered with. */
export interface HostOriginRefusal {
  code: 'host_not_allowed' | 'origin_not_allowed';
  detail: string;
}

/**
 * Builds the check; throws at start-up on a malformed allow-list entry. The check returns
 * undefined for an allowed request, else why it is refused.
 */
export function hostOriginCheck(
  options: HostOriginOptions,
): (host: string | undefined, origin: string | undefined) => HostOriginRefusal | undefined {
  const hosts = options.allowedHosts.map((entry) => {
    const parsed = splitAuthority(entry);
    if (!parsed) throw new Error(`not a host[:port] pattern: ${entry}`);
    return parsed;
  });
  const origins = options.allowedOrigins.map((entry) => {
    const parsed = parseOriginPattern(entry);
    if (!parsed) throw new Error(`not an origin pattern (scheme://host[:port]): ${entry}`);
    return parsed;
  });
  return (hostHeader, origin) => {
    const host = splitAuthority(hostHeader ?? '');
    if (!host || !matches(host, hosts))
      return { code: 'host_not_allowed', detail: 'The Host header does not name this gateway.' };
    if (origin !== undefined) {
      const parsed = parseOriginPattern(origin);
      const allowed =
        parsed !== undefined &&
        origins.some((o) => o.scheme === parsed.scheme && matches(parsed.authority, [o.authority]));
      if (!allowed)
        return { code: 'origin_not_allowed', detail: 'Requests from this origin are not allowed.' };
    }
    return undefined;
  };
}

/** The check as express middleware (answers 403 problem+json). */
export function hostOriginProtection(options: HostOriginOptions): RequestHandler {
  const check = hostOriginCheck(options);
  return (req, res, next) => {
    const refusal = check(req.headers.host, req.headers.origin);
    if (!refusal) return next();
    res
      .status(403)
      .type(PROBLEM_CONTENT_TYPE)
      .json(problem(refusal.code, 403, 'Forbidden', refusal.detail));
  };
}
