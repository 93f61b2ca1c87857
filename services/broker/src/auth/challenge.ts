/**
 * The `WWW-Authenticate` challenge of a refused request (RFC 6750 §3, with the RFC 9728
 * `resource_metadata` parameter the MCP authorization spec asks for, so an unmodified MCP client
 * can discover the authorization server from a 401).
 */
export interface ChallengeParams {
  /** Absolute URL of this gateway's protected-resource metadata; absent when OAuth is off. */
  resourceMetadataUrl?: string | undefined;
  /** RFC 6750 error: absent when the request carried no credentials at all (§3.1). */
  error?: 'invalid_request' | 'invalid_token' | 'insufficient_scope' | undefined;
  description?: string | undefined;
  /** Space-separated scopes the client should ask for. */
  scope?: string | undefined;
}

/** Renders a Bearer challenge; parameter values are quoted strings with `"` and `\` escaped. */
export function bearerChallenge(params: ChallengeParams): string {
  const parts: string[] = [];
  const add = (name: string, value: string | undefined) => {
    // RFC 6750 limits error_description and scope to printable ASCII without `"` and `\`; a value
    // outside it is replaced rather than escaped, so no client parser can be confused by it.
    if (value !== undefined) parts.push(`${name}="${value.replace(/[^\x20-\x21\x23-\x5b\x5d-\x7e]/g, '?')}"`);
  };
  // A realm names the protection space (RFC 7235 §2.2), so even the bare challenge has a parameter.
  add('realm', 'portcullis');
  add('resource_metadata', params.resourceMetadataUrl);
  add('error', params.error);
  add('error_description', params.description);
  add('scope', params.scope);
  return `Bearer ${parts.join(', ')}`;
}
