import type { IncomingMessage, ServerResponse } from 'node:http';

/** What RFC 9728 §2 lets a protected resource say about itself; the fields MCP clients read. */
export interface ProtectedResourceMetadata {
  resource: string;
  authorization_servers: string[];
  bearer_methods_supported: ['header'];
  scopes_supported?: string[];
  resource_name?: string;
}

export interface ProtectedResourceOptions {
  /** This gateway's resource URL, e.g. https://gateway.example.com/mcp (the tokens' audience). */
  resource: string;
  /** Issuer URL of the authorization server agents get tokens from. */
  issuer: string;
  scopes?: readonly string[] | undefined;
  resourceName?: string | undefined;
}

const WELL_KNOWN = '/.well-known/oauth-protected-resource';

/** The RFC 9728 metadata document for this gateway. */
export function protectedResourceMetadata(options: ProtectedResourceOptions): ProtectedResourceMetadata {
  return {
    resource: options.resource,
    authorization_servers: [options.issuer],
    // Only the Authorization header: a token in a query string ends up in access logs.
    bearer_methods_supported: ['header'],
    ...(options.scopes && options.scopes.length > 0 ? { scopes_supported: [...options.scopes] } : {}),
    ...(options.resourceName ? { resource_name: options.resourceName } : {}),
  };
}

/**
 * Where a client looks for the metadata of `resource` (RFC 9728 §3.1): the well-known prefix is
 * inserted between the origin and the resource's path, so https://gw/mcp is described at
 * https://gw/.well-known/oauth-protected-resource/mcp. This is the URL the challenges name.
 */
export function resourceMetadataUrl(resource: string): string {
  const url = new URL(resource);
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '');
  return `${url.origin}${WELL_KNOWN}${path}`;
}

/**
 * A node:http handler serving the metadata at `/.well-known/oauth-protected-resource` and at the
 * path-suffixed form for the resource (e.g. `/.well-known/oauth-protected-resource/mcp`). It
 * returns false for any other path, so the caller can chain it before its own routes. The
 * document is public and the same for everyone, so any origin may read it (browser clients do).
 */
export function createProtectedResourceHandler(
  options: ProtectedResourceOptions,
): (req: IncomingMessage, res: ServerResponse) => boolean {
  const body = JSON.stringify(protectedResourceMetadata(options));
  const suffixed = new URL(resourceMetadataUrl(options.resource)).pathname;
  const paths = new Set([WELL_KNOWN, suffixed]);
  return (req, res) => {
    const path = (req.url ?? '').split('?', 1)[0]!;
    if (!paths.has(path)) return false;
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS' }).end();
    } else if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD, OPTIONS' }).end();
    } else {
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body),
        // Short, so a changed issuer or scope list reaches clients soon.
        'Cache-Control': 'public, max-age=300',
      });
      res.end(req.method === 'HEAD' ? undefined : body);
    }
    return true;
  };
}
