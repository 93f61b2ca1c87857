import { parseAgentKey, secretHashesEqual } from '@portcullis/contracts';
import { PROBLEM_CONTENT_TYPE, problem } from '@portcullis/runtime';
import type { RequestHandler, Response } from 'express';
import type { Agent, DirectoryFeed } from './directory.ts';
import type { Authenticator } from './gateway/gateway.ts';

declare global {
  namespace Express {
    interface Request {
      /** Set by authenticateAgent; the SDK hands it to request handlers as extra.authInfo. */
      auth?: { token: string; clientId: string; scopes: string[]; extra: { agent: Agent } };
    }
  }
}

/**
 * Authenticates the agent on every request, including every request of an established session,
 * so a suspension or a revoked key takes effect at once. The presented key is never stored on
 * the request: only the agent it proved. Wrong and unknown keys get the same answer.
 */
export function authenticateAgent(directory: Pick<DirectoryFeed, 'key' | 'agent'>): RequestHandler {
  return (req, res, next) => {
    const header = req.get('authorization');
    if (!header)
      return challenge(res, 'missing_credentials', 'An agent key is required: Authorization: Bearer <key>');
    const match = /^Bearer +(\S+)$/i.exec(header);
    const parsed = match ? parseAgentKey(match[1]!) : undefined;
    const stored = parsed ? directory.key(parsed.keyId) : undefined;
    if (!parsed || !stored || !secretHashesEqual(parsed.secretSha256, stored.secretSha256)) {
      return challenge(res, 'invalid_credentials', 'The agent key is not valid');
    }
    const agent = directory.agent(stored.agentId);
    if (!agent) return challenge(res, 'invalid_credentials', 'The agent key is not valid');
    if (agent.state !== 'active') {
      res
        .status(403)
        .type(PROBLEM_CONTENT_TYPE)
        .json(
          problem(
            'agent_suspended',
            403,
            'Agent suspended',
            `Agent ${agent.name} is suspended; ask its owner.`,
          ),
        );
      return;
    }
    req.auth = { token: parsed.keyId, clientId: agent.id, scopes: [], extra: { agent } };
    next();
  };
}

function challenge(res: Response, code: string, detail: string): void {
  res
    .status(401)
    .set('WWW-Authenticate', `Bearer realm="portcullis", error="invalid_token"`)
    .type(PROBLEM_CONTENT_TYPE)
    .json(problem(code, 401, 'Unauthorized', detail));
}

/**
 * Agent-key authentication for the raw gateway endpoint: the same checks as the middleware above.
 * The presented key is compared by hash and then forgotten.
 */
export function agentKeyAuthenticator(directory: Pick<DirectoryFeed, 'key' | 'agent'>): Authenticator {
  const invalid = {
    ok: false,
    status: 401,
    code: 'invalid_credentials',
    detail: 'The agent key is not valid',
  } as const;
  const challengeHeader = 'Bearer realm="portcullis", error="invalid_token"';
  return {
    async authenticate(headers) {
      const header = headers.authorization;
      if (!header)
        return {
          ok: false,
          status: 401,
          code: 'missing_credentials',
          detail: 'An agent key is required: Authorization: Bearer <key>',
          wwwAuthenticate: 'Bearer realm="portcullis"',
        };
      const match = /^Bearer +(\S+)$/i.exec(header);
      const parsed = match ? parseAgentKey(match[1]!) : undefined;
      const stored = parsed ? directory.key(parsed.keyId) : undefined;
      if (!parsed || !stored || !secretHashesEqual(parsed.secretSha256, stored.secretSha256))
        return { ...invalid, wwwAuthenticate: challengeHeader };
      const agent = directory.agent(stored.agentId);
      if (!agent) return { ...invalid, wwwAuthenticate: challengeHeader };
      if (agent.state !== 'active')
        return {
          ok: false,
          status: 403,
          code: 'agent_suspended',
          detail: `Agent ${agent.name} is suspended; ask its owner.`,
        };
      return { ok: true, agent };
    },
  };
}
