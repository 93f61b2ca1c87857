import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  AppAuth,
  AppTransport,
  type DecisionLogV1,
  OAuthClientId,
  ToolFingerprint,
  ToolName,
} from '@portcullis/contracts';
import { DECISION_ENTRYPOINT, decisionLogEntry, type PolicyEngine } from '@portcullis/policy-engine';
import { AppError } from '@portcullis/runtime';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type pg from 'pg';
import { z } from 'zod';
import { AppConnectionError, type AppConnections } from './app-connections.ts';
import type { BundleService } from './bundles.ts';
import type { DirectoryPublisher } from './directory-publisher.ts';
import {
  AgentNotFoundError,
  AppPolicyInput,
  type DirectoryAdmin,
  type DirectoryStore,
  GrantInput,
  OAuthClientTakenError,
} from './directory-store.ts';
import { SimulationScope, simulate } from './simulation.ts';
import { type ListedTools, UpstreamToolsError } from './upstream-tools.ts';

/** Roles, weakest first: each role may do everything the ones before it may. */
export const Role = z.enum(['viewer', 'policy-author', 'admin']);
export type Role = z.infer<typeof Role>;

/** API tokens come from configuration as SHA-256 hashes: the service never holds a token in clear. */
export const ApiToken = z.object({
  name: z.string().min(1),
  role: Role,
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'the lowercase hex SHA-256 of the token'),
});
export type ApiToken = z.infer<typeof ApiToken>;

declare global {
  namespace Express {
    interface Request {
      /** The authenticated API caller (name and role), set by requireRole. */
      caller?: { name: string; role: Role };
    }
  }
}

export interface ApiDeps {
  tokens: readonly ApiToken[];
  store: DirectoryStore;
  admin: DirectoryAdmin;
  bundles: BundleService;
  publisher: DirectoryPublisher;
  /** The engine behind the Data API: the active bundle with the published directory. */
  engine: PolicyEngine;
  /** Called after an activation so the Data API engine follows it. */
  onActivated: () => Promise<void>;
  /** Writes one decision-log entry durably (Kafka, acks=all). */
  logDecision: (entry: DecisionLogV1) => Promise<void>;
  instanceId: string;
  /** Read access to the ledger (audit.tool_calls) for what-if simulation. */
  ledger: pg.Pool;
  /** Apps' connections, tool pins and reported tool changes. */
  apps: AppConnections;
  /** Lists and fingerprints an upstream's tools (SDK client, with the configured deadline). */
  listTools: (transport: AppTransport) => Promise<ListedTools>;
}

const APP_ERROR_STATUS = { app_not_found: 404, not_registered: 409, no_pending_change: 409 } as const;

/** Maps the app registry's and the upstream listing's failures to problem+json errors. */
function appFailure(error: unknown): unknown {
  if (error instanceof AppConnectionError)
    return new AppError(error.code, error.message, { status: APP_ERROR_STATUS[error.code], cause: error });
  if (error instanceof UpstreamToolsError)
    return new AppError(error.code, `${error.message}; nothing was stored`, {
      status: error.code === 'upstream_unreachable' ? 502 : 422,
      retry: error.code === 'upstream_unreachable',
      cause: error,
    });
  return error;
}

const rank = (role: Role) => Role.options.indexOf(role);

/** Authenticates a bearer token against the configured hashes and checks the caller's role. */
export function requireRole(tokens: readonly ApiToken[], minimum: Role) {
  const hashed = tokens.map((token) => ({ ...token, digest: Buffer.from(token.sha256, 'hex') }));
  return (req: Request, _res: Response, next: NextFunction) => {
    const match = /^Bearer +(\S+)$/i.exec(req.get('authorization') ?? '');
    if (!match)
      return next(
        new AppError('unauthenticated', 'An API token is required: Authorization: Bearer <token>', {
          status: 401,
        }),
      );
    const digest = createHash('sha256').update(match[1]!).digest();
    // Compare against every token in constant time, so timing does not reveal which one is close.
    let found: (typeof hashed)[number] | undefined;
    for (const token of hashed) if (timingSafeEqual(token.digest, digest)) found = token;
    if (!found) return next(new AppError('unauthenticated', 'The API token is not valid', { status: 401 }));
    if (rank(found.role) < rank(minimum))
      return next(
        new AppError('forbidden', `This needs the ${minimum} role; ${found.name} has ${found.role}`, {
          status: 403,
        }),
      );
    req.caller = { name: found.name, role: found.role };
    next();
  };
}

/** Parses with zod; a failure is a 400 problem naming every wrong field. */
function parse<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const result = schema.safeParse(value);
  if (!result.success) throw new AppError('invalid_request', z.prettifyError(result.error), { status: 400 });
  return result.data;
}

const wrap =
  (handler: (req: Request, res: Response) => Promise<void>) =>
  (req: Request, res: Response, next: NextFunction) =>
    handler(req, res).catch(next);

const AgentName = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,99}$/);
const AppId = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/);

/** The decision service's HTTP API, documented in docs/policy-authoring.md ("Decision service API"). */
export function createApi(deps: ApiDeps): Router {
  const router = express.Router();
  const viewer = requireRole(deps.tokens, 'viewer');
  const author = requireRole(deps.tokens, 'policy-author');
  const admin = requireRole(deps.tokens, 'admin');
  const json = express.json({ limit: '1mb' });
  const agentId = async (name: string) => {
    const agent = await deps.store.findAgent(parse(AgentName, name));
    if (!agent) throw new AppError('agent_not_found', `no agent named ${name}`, { status: 404 });
    return agent.id;
  };

  router.get('/v1/directory/status', viewer, (_req, res) => {
    res.json({
      publishedRevision: deps.publisher.publishedRevision,
      policyRevision: deps.engine.revision ?? null,
    });
  });

  router.get(
    '/v1/agents',
    viewer,
    wrap(async (_req, res) => {
      res.json({ agents: await deps.admin.listAgents() });
    }),
  );

  router.put(
    '/v1/agents/:name',
    admin,
    json,
    wrap(async (req, res) => {
      // Strict, and what is not given stays as it is: an owner change (or a misspelt field) must
      // never reactivate a suspended agent. A new agent is active unless `state` says otherwise.
      const body = parse(
        z.strictObject({
          owner: z.string().min(1).max(320),
          state: z.enum(['active', 'suspended']).optional(),
          clientType: z.string().min(1).max(100).nullable().optional(),
        }),
        req.body,
      );
      res.json(
        await deps.admin.upsertAgent(
          parse(AgentName, req.params.name),
          body.owner,
          body.state,
          body.clientType,
        ),
      );
    }),
  );

  router.post(
    '/v1/agents/:name/keys',
    admin,
    wrap(async (req, res) => {
      const issued = await deps.store.issueKey(parse(AgentName, req.params.name));
      // The key is in this response only; the service keeps its hash.
      res.status(201).set('Cache-Control', 'no-store').json({ keyId: issued.keyId, key: issued.key });
    }),
  );

  router.delete(
    '/v1/agents/:name/keys/:keyId',
    admin,
    wrap(async (req, res) => {
      const keyId = parse(z.string().regex(/^[0-9a-f]{16}$/, 'a 16-digit hex key id'), req.params.keyId);
      try {
        await deps.store.revokeKey(parse(AgentName, req.params.name), keyId);
      } catch (error) {
        throw new AppError('key_not_found', (error as Error).message, { status: 404, cause: error });
      }
      res.status(204).end();
    }),
  );

  // The OAuth clients whose access tokens authenticate as this agent at the gateway; the body's
  // list replaces the registered one (an empty list removes them all).
  router.put(
    '/v1/agents/:name/oauth-clients',
    admin,
    json,
    wrap(async (req, res) => {
      const body = parse(
        z.object({
          clientIds: z
            .array(OAuthClientId)
            .max(20)
            .refine((ids) => new Set(ids).size === ids.length, 'client ids must be unique'),
        }),
        req.body,
      );
      const name = parse(AgentName, req.params.name);
      try {
        await deps.store.setOAuthClients(name, body.clientIds);
      } catch (error) {
        if (error instanceof AgentNotFoundError)
          throw new AppError('agent_not_found', error.message, { status: 404, cause: error });
        if (error instanceof OAuthClientTakenError)
          throw new AppError('oauth_client_taken', error.message, { status: 409, cause: error });
        throw error;
      }
      res.json({ agent: name, oauthClients: [...body.clientIds].sort() });
    }),
  );

  router.put(
    '/v1/apps/:id',
    admin,
    json,
    wrap(async (req, res) => {
      // Strict at every level, and a policy not given stays as it is: renaming an app must not
      // wipe its delete rule, disabled tools or DLP modes.
      const body = parse(
        z.strictObject({ name: z.string().min(1).max(200), policy: AppPolicyInput.optional() }),
        req.body,
      );
      await deps.admin.upsertApp(parse(AppId, req.params.id), body.name, body.policy);
      res.status(204).end();
    }),
  );

  // --- apps: upstream connections and tool pins (docs/gateway.md, "Registering apps") ------------------------------
  router.get(
    '/v1/apps',
    viewer,
    wrap(async (_req, res) => {
      res.json({ apps: await deps.apps.list() });
    }),
  );

  router.get(
    '/v1/apps/:id',
    viewer,
    wrap(async (req, res) => {
      const [app] = await deps.apps.list(parse(AppId, req.params.id));
      if (!app) throw new AppError('app_not_found', `no app ${req.params.id}`, { status: 404 });
      res.json(app);
    }),
  );

  router.put(
    '/v1/apps/:id/connection',
    admin,
    json,
    wrap(async (req, res) => {
      const id = parse(AppId, req.params.id);
      const body = parse(
        z.strictObject({
          /** Creates the app with this name when it does not exist yet. */
          name: z.string().min(1).max(200).optional(),
          transport: AppTransport,
          auth: AppAuth.default({ scheme: 'none' }),
        }),
        req.body,
      );
      if (body.name === undefined && (await deps.apps.list(id)).length === 0)
        throw new AppError(
          'app_not_found',
          `no app ${id}; create it with PUT /v1/apps/${id} or give a name`,
          {
            status: 404,
          },
        );
      try {
        // The upstream is asked first, outside any transaction: if it cannot be listed, nothing is stored.
        const listed = await deps.listTools(body.transport);
        await deps.apps.register(
          id,
          { transport: body.transport, auth: body.auth },
          listed,
          `api:${req.caller!.name}`,
          body.name,
        );
        const [app] = await deps.apps.list(id);
        res.json({ ...app, rejectedTools: listed.rejected });
      } catch (error) {
        throw appFailure(error);
      }
    }),
  );

  router.get(
    '/v1/apps/:id/tool-changes',
    viewer,
    wrap(async (req, res) => {
      const all = parse(z.enum(['true', 'false']).default('false'), req.query.all) === 'true';
      try {
        res.json({ changes: await deps.apps.toolChanges(parse(AppId, req.params.id), { all }) });
      } catch (error) {
        throw appFailure(error);
      }
    }),
  );

  router.post(
    '/v1/apps/:id/tools/:tool/approve',
    admin,
    json,
    wrap(async (req, res) => {
      const id = parse(AppId, req.params.id);
      const tool = parse(ToolName, req.params.tool);
      const body = parse(z.strictObject({ fingerprint: ToolFingerprint }), req.body);
      try {
        const definition = await deps.apps.approve(id, tool, body.fingerprint, `api:${req.caller!.name}`);
        res.json({ app: id, tool, fingerprint: body.fingerprint, definition });
      } catch (error) {
        throw appFailure(error);
      }
    }),
  );

  router.put(
    '/v1/agents/:name/entitlements/:app',
    admin,
    json,
    wrap(async (req, res) => {
      const body = parse(z.strictObject({ grants: z.array(GrantInput) }), req.body);
      await deps.admin.setEntitlements(
        await agentId(String(req.params.name)),
        parse(AppId, req.params.app),
        body.grants,
        `api:${req.caller!.name}`,
      );
      res.status(204).end();
    }),
  );

  router.delete(
    '/v1/agents/:name/entitlements/:app',
    admin,
    wrap(async (req, res) => {
      await deps.admin.setEntitlements(
        await agentId(String(req.params.name)),
        parse(AppId, req.params.app),
        [],
        `api:${req.caller!.name}`,
      );
      res.status(204).end();
    }),
  );

  router.put(
    '/v1/delegations/:user/:name/:app',
    admin,
    json,
    wrap(async (req, res) => {
      const body = parse(z.strictObject({ grants: z.array(GrantInput) }), req.body);
      const user = parse(z.string().min(1).max(320), req.params.user);
      await deps.admin.setDelegations(
        user,
        await agentId(String(req.params.name)),
        parse(AppId, req.params.app),
        body.grants,
      );
      res.status(204).end();
    }),
  );

  // --- policy bundles ---------------------------------------------------------------------------
  router.get(
    '/v1/bundles',
    viewer,
    wrap(async (_req, res) => {
      res.json({ bundles: await deps.bundles.list() });
    }),
  );

  router.post(
    '/v1/bundles',
    author,
    express.raw({ type: () => true, limit: '16mb' }),
    wrap(async (req, res) => {
      const kind = parse(z.enum(['source', 'built']), req.query.kind ?? 'built');
      if (!Buffer.isBuffer(req.body) || req.body.length === 0)
        throw new AppError('invalid_request', 'the request body must be the bundle (application/gzip)', {
          status: 400,
        });
      const stored = await deps.bundles.upload(kind, req.body, `api:${req.caller!.name}`);
      res.status(201).json(stored);
    }),
  );

  router.post(
    '/v1/bundles/:id/activate',
    author,
    wrap(async (req, res) => {
      const id = parse(z.coerce.number().int().positive(), req.params.id);
      const result = await deps.bundles.activate(id, `api:${req.caller!.name}`);
      await deps.onActivated();
      // 202: recorded, and on its way to the brokers once Kafka acknowledges (retried until it does).
      res.status(result.published ? 200 : 202).json({ bundleId: id, ...result });
    }),
  );

  router.post(
    '/v1/bundles/:id/simulate',
    author,
    json,
    wrap(async (req, res) => {
      const id = parse(z.coerce.number().int().positive(), req.params.id);
      const scope = parse(SimulationScope, req.body ?? {});
      const directory = deps.engine.directory;
      if (!directory)
        throw new AppError('directory_not_loaded', 'the directory is not loaded yet; retry', {
          status: 503,
          retry: true,
        });
      const activeId = await deps.bundles.activeBundleId();
      res.json(
        await simulate({
          ledger: deps.ledger,
          candidate: await deps.bundles.bundleBytes(id),
          active: activeId === undefined ? undefined : await deps.bundles.bundleBytes(activeId),
          directory: directory as Record<string, unknown>,
          scope,
        }),
      );
    }),
  );

  router.post(
    '/v1/policy/rollback',
    author,
    wrap(async (req, res) => {
      const result = await deps.bundles.rollback(`api:${req.caller!.name}`);
      await deps.onActivated();
      res.status(result.published ? 200 : 202).json(result);
    }),
  );

  // --- OPA-compatible Data API --------------------------------------------------------------------
  router.post(
    '/v1/data/*path',
    viewer,
    json,
    wrap(async (req, res) => {
      const started = process.hrtime.bigint();
      const path = ([] as string[]).concat((req.params as { path?: string | string[] }).path ?? []).join('/');
      if (path !== DECISION_ENTRYPOINT)
        throw new AppError('unknown_path', `only /v1/data/${DECISION_ENTRYPOINT} is served`, { status: 404 });
      const body = parse(z.object({ input: z.record(z.string(), z.unknown()) }), req.body);
      const result = deps.engine.evaluateRaw(body.input);
      const decisionId = randomUUID();
      try {
        // On the audit path before the answer: a decision that cannot be logged is not given.
        await deps.logDecision(
          decisionLogEntry({
            decisionId,
            path,
            input: body.input,
            result,
            revision: deps.engine.revision ?? 'none',
            instanceId: deps.instanceId,
            service: 'decision',
            durationNs: Number(process.hrtime.bigint() - started),
          }),
        );
      } catch (error) {
        throw new AppError('audit_unavailable', 'The decision could not be logged; retry later', {
          status: 503,
          retry: true,
          cause: error,
        });
      }
      // OPA's response shape: no `result` when undefined (here: no bundle or directory loaded, which
      // callers must treat as deny), and the decision id OPA adds when decision logging is on.
      res.json({ ...(result === undefined ? {} : { result }), decision_id: decisionId });
    }),
  );

  return router;
}
