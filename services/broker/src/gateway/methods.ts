import { type ListedToolDefinition, pinnedMembers } from '@portcullis/contracts';
import type { Logger } from '@portcullis/runtime';
import { actionClassOf } from '../action-class.ts';
import type { GatewayMetrics } from '../gateway-metrics.ts';
import type { JsonRpcRequest, JsonRpcResponse, UpstreamSession } from '../upstream/connection.ts';
import { type Catalog, capabilityVariant, type ListKind } from './catalog.ts';
import type { ContentGuard } from './content-guard.ts';
import { redacted, redactsFields } from './content-guard.ts';
import {
  ACCESS_REQUEST_HINT,
  type AdmittedCall,
  type Caller,
  type Enforcement,
  endsOnRecord,
  type Operation,
  type RefusedCall,
} from './enforcement.ts';
import { noLongerAuthorized, RpcCode, RpcError, sessionNotFound } from './json-rpc.ts';
import { type LiveSession, upstreamRpcError } from './live-session.ts';
import type { ReplyChannel } from './reply.ts';
import { SessionStore } from './session-store.ts';
import type { ToolGate } from './tool-gate.ts';

export interface MethodDeps {
  enforcement: Enforcement;
  catalog: Catalog;
  store: SessionStore;
  guard: ContentGuard;
  tools: ToolGate;
  logger: Logger;
  /** Longest wait for an upstream answer to an agent's request. */
  callTimeoutMs: number;
  /** Longest a call may run however much progress its upstream reports. */
  callMaxMs: number;
  metrics?: GatewayMetrics;
}

/** One agent request as the methods see it. */
export interface RequestContext {
  session: LiveSession;
  caller: Caller;
  /** The apps this session may reach: the aggregate's entitled apps, or the one app of its endpoint. */
  apps: readonly string[];
  request: JsonRpcRequest;
  channel: ReplyChannel;
  /** Whether the request's credential is still accepted (not revoked, its agent not suspended). */
  stillValid(): boolean;
}

type Handler = (
  deps: MethodDeps,
  context: RequestContext,
) => Promise<Record<string, unknown> | JsonRpcResponse>;

const variantOf = (session: LiveSession) => capabilityVariant(session.record.clientCapabilities);

const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'];

/**
 * The MCP methods the gateway serves. Listings fan out to the session's apps and are filtered and
 * namespaced; tools/call, resources/read and prompts/get pass through enforcement; everything else
 * is relayed to the one app it concerns. A handler returns a result, or a whole JSON-RPC response
 * when an upstream error passes through unchanged.
 */
export const METHODS: Record<string, Handler> = {
  ping: async () => ({}),
  'tools/list': listTools,
  'tools/call': callTool,
  'resources/list': (deps, context) => listResources(deps, context, 'resources'),
  'resources/templates/list': (deps, context) => listResources(deps, context, 'resourceTemplates'),
  'resources/read': readResource,
  'resources/subscribe': (deps, context) => subscribe(deps, context, true),
  'resources/unsubscribe': (deps, context) => subscribe(deps, context, false),
  'prompts/list': listPrompts,
  'prompts/get': getPrompt,
  'completion/complete': complete,
  'logging/setLevel': setLogLevel,
};

async function listTools(deps: MethodDeps, context: RequestContext): Promise<Record<string, unknown>> {
  const { session, caller } = context;
  const tools = await fanOut(deps, context, 'tools', (appId, items) =>
    items.flatMap((tool) => {
      const name = tool.name as string;
      if (!deps.tools.admits(appId, tool)) return [];
      const annotations = tool.annotations as Parameters<typeof actionClassOf>[0];
      const visible = deps.enforcement.visible(caller, {
        appId,
        tool: name,
        annotations,
        actionClass: actionClassOf(annotations),
      });
      // Only what the pin covers reaches the agent (see pinnedMembers).
      const shown = pinnedMembers(tool as unknown as ListedToolDefinition);
      return visible ? [{ ...shown, name: session.namespace.toolName(appId, name) }] : [];
    }),
  );
  return { tools };
}

async function listResources(
  deps: MethodDeps,
  context: RequestContext,
  kind: 'resources' | 'resourceTemplates',
): Promise<Record<string, unknown>> {
  const { session } = context;
  const field = kind === 'resources' ? 'uri' : 'uriTemplate';
  const items = await fanOut(deps, context, kind, (appId, list) =>
    readable(deps, context, appId)
      ? list
          .filter((item) => typeof item[field] === 'string')
          .map((item) => ({ ...item, [field]: session.namespace.resourceUri(appId, item[field] as string) }))
      : [],
  );
  return { [kind]: items };
}

async function listPrompts(deps: MethodDeps, context: RequestContext): Promise<Record<string, unknown>> {
  const { session, caller } = context;
  const prompts = await fanOut(deps, context, 'prompts', (appId, items) =>
    items.flatMap((prompt) => {
      const name = prompt.name as string;
      const visible = deps.enforcement.visible(caller, {
        appId,
        tool: `prompt:${name}`,
        actionClass: 'read',
      });
      return visible ? [{ ...prompt, name: session.namespace.toolName(appId, name) }] : [];
    }),
  );
  return { prompts };
}

/** Whether the caller may read an app's resources (listing, subscribing, completing). */
/** Whether reading this resource would be allowed now (see Enforcement.permits). */
function mayRead(deps: MethodDeps, context: RequestContext, target: { appId: string; uri: string }): boolean {
  return deps.enforcement.permits(context.caller, {
    appId: target.appId,
    tool: 'resources/read',
    actionClass: 'read',
    arguments: { uri: target.uri },
  });
}

function readable(deps: MethodDeps, context: RequestContext, appId: string): boolean {
  return deps.enforcement.visible(context.caller, { appId, tool: 'resources/read', actionClass: 'read' });
}

/**
 * One listing across the session's apps. On the aggregate endpoint an app that fails to answer is
 * left out (and logged) so one broken upstream does not hide every other app; an app's own
 * endpoint reports its failure.
 */
async function fanOut(
  deps: MethodDeps,
  context: RequestContext,
  kind: ListKind,
  shape: (appId: string, items: Record<string, unknown>[]) => Record<string, unknown>[],
): Promise<Record<string, unknown>[]> {
  const { session, apps } = context;
  const lists = await Promise.all(
    apps.map(async (appId) => {
      try {
        const items = await session.withUpstream(appId, (upstream) =>
          deps.catalog.list(appId, kind, upstream, variantOf(session)),
        );
        // Listings reach the model too (descriptions, resource URIs and names): through DLP like any
        // upstream message; an item it cannot inspect is left out.
        return shape(appId, items).flatMap((item) => {
          const safe = redacted(item);
          return safe ? [safe] : [];
        });
      } catch (error) {
        if (session.namespace.scope === 'app') throw upstreamRpcError(appId, error);
        deps.logger.warn({ err: error, appId, kind }, 'app left out of an aggregate listing');
        return [];
      }
    }),
  );
  return lists.flat();
}

const unknown = (what: string, name: unknown) =>
  new RpcError(RpcCode.InvalidParams, `Unknown ${what}: ${String(name).slice(0, 200)}`, {
    code: `unknown_${what}`,
  });

/**
 * Only the progress token of the agent's `_meta` goes upstream with an enforced operation: other
 * params and `_meta` members are not judged by policy or DLP, so they are not forwarded.
 */
function progressMeta(context: RequestContext): { _meta?: { progressToken: string | number } } {
  const token = (params(context)._meta as { progressToken?: unknown } | undefined)?.progressToken;
  if (typeof token === 'number') return { _meta: { progressToken: token } };
  // A token goes upstream as it is: one holding a secret or personal data (or too long to be
  // only a token) is not passed on, and the call runs without progress.
  if (typeof token !== 'string' || token.length > MAX_PROGRESS_TOKEN_CHARS || redacted(token) !== token)
    return {};
  return { _meta: { progressToken: token } };
}

const MAX_PROGRESS_TOKEN_CHARS = 256;

/** What DLP refuses to send upstream outside a tool call's arguments (a URI, a reference). */
function dlpRefused(what: string): RpcError {
  return new RpcError(RpcCode.DlpBlocked, `The ${what} holds data DLP does not let through to the app`, {
    code: 'dlp_blocked',
    retryable: false,
  });
}

function params(context: RequestContext): Record<string, unknown> {
  return context.request.params ?? {};
}

/** Malformed params: every such error carries the same machine-readable code. */
function invalidParams(message: string): RpcError {
  return new RpcError(RpcCode.InvalidParams, message, { code: 'invalid_params' });
}

function objectArgument(value: unknown, field: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw invalidParams(`${field} must be an object`);
  return value as Record<string, unknown>;
}

async function callTool(
  deps: MethodDeps,
  context: RequestContext,
): Promise<Record<string, unknown> | JsonRpcResponse> {
  const { session, caller } = context;
  const { name } = params(context);
  const args = objectArgument(params(context).arguments, 'arguments');
  if (typeof name !== 'string') throw invalidParams('name must be a string');
  const target = session.namespace.resolveName(name);
  if (!target) throw unknown('tool', name);
  if (!context.apps.includes(target.appId)) {
    // A registered app the agent holds no entitlement for: the policy answers (a denial with
    // reasons and how to ask for access), and the upstream is never touched. Its definition is
    // not looked up, so it is what a tool that says nothing about itself is: delete (ADR 0046).
    const refused = await refuseOutsideEntitlements(deps, context, {
      appId: target.appId,
      tool: target.name,
      actionClass: 'delete',
      arguments: args,
    });
    return decisionResult(refused);
  }
  const tool = await session.withUpstream(target.appId, (upstream) =>
    deps.catalog.find(target.appId, 'tools', target.name, upstream, variantOf(session)),
  );
  if (!tool) throw unknown('tool', name);
  try {
    deps.tools.assertUsable(target.appId, tool);
  } catch (blocked) {
    deps.metrics?.toolBlocked(target.appId);
    throw blocked;
  }
  const annotations = tool.annotations as Parameters<typeof actionClassOf>[0];
  const operation: Operation = {
    appId: target.appId,
    tool: target.name,
    annotations,
    actionClass: actionClassOf(annotations),
    arguments: args,
  };
  const cleared = await deps.enforcement.judge(caller, operation);
  if (!('admitted' in cleared)) return decisionResult(cleared);
  // Nothing has gone upstream until forward sends it (forward records its own failures after that).
  return endsOnRecord(cleared.admitted, 'not_executed', async () => {
    // The request event may still be on its way to disk: DLP and the upstream request are prepared
    // meanwhile, and forward sends the request only once the call is admitted.
    const outgoing = deps.guard.arguments(cleared.decision, operation);
    if (!outgoing.pass) {
      blocked(await cleared.admitted, outgoing.error);
      return outgoing.result;
    }
    return forward(
      deps,
      context,
      cleared.admitted,
      target.appId,
      'tools/call',
      { ...progressMeta(context), name: target.name, arguments: outgoing.arguments },
      {
        argumentRedactions: outgoing.redactions,
        outputSchema: tool.outputSchema as object | undefined,
        underRedaction: redactsFields(cleared.decision),
      },
    );
  });
}

async function readResource(
  deps: MethodDeps,
  context: RequestContext,
): Promise<Record<string, unknown> | JsonRpcResponse> {
  const { uri } = params(context);
  if (typeof uri !== 'string') throw invalidParams('uri must be a string');
  const target = context.session.namespace.resolveUri(uri);
  if (!target) throw unknown('resource', uri);
  const operation: Operation = {
    appId: target.appId,
    tool: 'resources/read',
    actionClass: 'read',
    arguments: { uri: target.uri },
  };
  if (!context.apps.includes(target.appId))
    throw (await refuseOutsideEntitlements(deps, context, operation)).error;
  // The URI goes upstream (a template can take anything): it passes DLP as a tool's arguments do.
  return judgedAndForwarded(deps, context, operation, 'resources/read', (args) => ({ uri: args.uri }));
}

async function getPrompt(
  deps: MethodDeps,
  context: RequestContext,
): Promise<Record<string, unknown> | JsonRpcResponse> {
  const { session } = context;
  const { name } = params(context);
  const args = objectArgument(params(context).arguments, 'arguments');
  if (typeof name !== 'string') throw invalidParams('name must be a string');
  const target = session.namespace.resolveName(name);
  if (!target) throw unknown('prompt', name);
  if (!context.apps.includes(target.appId))
    throw (
      await refuseOutsideEntitlements(deps, context, {
        appId: target.appId,
        tool: `prompt:${target.name}`,
        actionClass: 'read',
        arguments: args,
      })
    ).error;
  const prompt = await session.withUpstream(target.appId, (upstream) =>
    deps.catalog.find(target.appId, 'prompts', target.name, upstream, variantOf(session)),
  );
  if (!prompt) throw unknown('prompt', name);
  const operation: Operation = {
    appId: target.appId,
    tool: `prompt:${target.name}`,
    actionClass: 'read',
    arguments: args,
  };
  return judgedAndForwarded(deps, context, operation, 'prompts/get', (args) => ({
    name: target.name,
    arguments: args,
  }));
}

/**
 * A resources/read or prompts/get once resolved: judged by policy, its arguments through DLP, then
 * forwarded; a refusal is a JSON-RPC error (only a tool call answers with a readable result).
 */
async function judgedAndForwarded(
  deps: MethodDeps,
  context: RequestContext,
  operation: Operation,
  method: 'resources/read' | 'prompts/get',
  upstreamParams: (args: Record<string, unknown>) => Record<string, unknown>,
): Promise<Record<string, unknown> | JsonRpcResponse> {
  const cleared = await deps.enforcement.judge(context.caller, operation);
  if (!('admitted' in cleared)) throw cleared.error;
  return endsOnRecord(cleared.admitted, 'not_executed', async () => {
    const outgoing = deps.guard.arguments(cleared.decision, operation);
    if (!outgoing.pass) {
      blocked(await cleared.admitted, outgoing.error);
      throw outgoing.error;
    }
    return forward(
      deps,
      context,
      cleared.admitted,
      operation.appId,
      method,
      { ...progressMeta(context), ...upstreamParams(outgoing.arguments) },
      { argumentRedactions: outgoing.redactions, underRedaction: redactsFields(cleared.decision) },
    );
  });
}

/** A denial or an approval requirement as a tool result the agent can read and act on. */
function decisionResult(refused: RefusedCall): Record<string, unknown> {
  return {
    isError: true,
    content: [{ type: 'text', text: `${refused.error.message} ${JSON.stringify(refused.detail)}` }],
    _meta: { 'portcullis/decision': refused.detail },
  };
}

/**
 * An operation on an app outside the agent's entitlements goes to the policy without touching
 * the upstream. The policy refuses it; should it ever allow, the call is still refused here,
 * since only apps the agent is entitled to are served (recorded as not executed either way).
 */
async function refuseOutsideEntitlements(
  deps: MethodDeps,
  context: RequestContext,
  operation: Operation,
): Promise<RefusedCall> {
  const outcome = await deps.enforcement.admit(context.caller, operation);
  if (!('finish' in outcome)) return outcome;
  outcome.finish('not_executed', {
    error: { code: 'no_entitlement', message: 'the agent holds no entitlement for this app' },
  });
  const detail = {
    decision: 'deny',
    code: 'denied',
    reasons: ['no_entitlement'],
    // No actionClass: the app's tools are not looked up, so what this one would need is not known.
    policyRevision: outcome.decision.policyRevision,
    callId: outcome.callId,
    decisionId: outcome.decision.decisionId,
    howToRequestAccess: ACCESS_REQUEST_HINT,
  };
  return {
    callId: outcome.callId,
    decision: outcome.decision,
    detail,
    error: new RpcError(RpcCode.PolicyDenied, 'Denied: the agent holds no entitlement for this app.', detail),
  };
}

/** Records a call DLP stopped before it went upstream. */
function blocked(admitted: AdmittedCall, error: RpcError): void {
  admitted.finish('not_executed', {
    error: { code: String(error.data?.code ?? 'dlp_blocked'), message: error.message },
  });
}

/**
 * Sends an operation upstream once it is admitted, and brings back its answer through DLP. The
 * request is prepared at once and held until `admission` resolves (UpstreamRequestOptions.gate);
 * if it rejects, nothing was sent and its error is thrown. Messages the upstream sends meanwhile
 * (progress, logs, sampling/elicitation/roots requests) reach the agent on this request's reply
 * channel. The agent's cancellation, or its going away, cancels upstream.
 */
async function forward(
  deps: MethodDeps,
  context: RequestContext,
  admission: Promise<AdmittedCall>,
  appId: string,
  method: string,
  outgoing: Record<string, unknown>,
  extra: {
    argumentRedactions?: Record<string, number> | undefined;
    outputSchema?: object | undefined;
    /** The policy redacts fields of this call's answers: what the app sends meanwhile is withheld. */
    underRedaction?: boolean;
  } = {},
): Promise<Record<string, unknown> | JsonRpcResponse> {
  const { session, request, channel } = context;
  // Whatever the upstream does, the outcome reports what DLP took out of the arguments.
  const argumentRedactions = extra.argumentRedactions ? { argumentRedactions: extra.argumentRedactions } : {};
  const controller = new AbortController();
  session.inflight.set(request.id, controller);
  channel.onAbandoned(() => controller.abort(new Error('the client went away')));
  // A suspension or revocation aborts the calls registered in `inflight`; one that came while this
  // call waited for its admission (the rate limiter) found nothing to abort: checked here, once
  // registered, so that no change can fall between the two.
  if (!context.stillValid()) controller.abort(noLongerAuthorized('credentials_no_longer_valid'));
  if (extra.underRedaction) session.beginRedactedCall(appId);
  // The upstream step starts when the request may go out, not while it waits for the admission.
  let released: number | undefined;
  admission.then(
    () => {
      released = performance.now();
    },
    () => {},
  );
  // How a call that ends without an answer is recorded: not executed while its request was held,
  // failed once it may have gone out (released: sent the moment it was admitted).
  const unanswered = (): 'not_executed' | 'failed' => (released === undefined ? 'not_executed' : 'failed');
  // Whatever throws from here on still ends the call on record.
  return endsOnRecord(admission, unanswered, async () => {
    let response: JsonRpcResponse;
    try {
      response = await session.withUpstream(appId, (upstream: UpstreamSession) =>
        upstream.request(method, outgoing, {
          timeoutMs: deps.callTimeoutMs,
          signal: controller.signal,
          resetTimeoutOnProgress: true,
          maxTimeoutMs: deps.callMaxMs,
          onMessage: (message) => session.relay(appId, upstream, message, channel),
          gate: admission,
        }),
      );
    } catch (error) {
      // Failed while held (the agent went away, the deadline passed, the app could not be reached):
      // the transport sent nothing, so the call did not run.
      const sentAt = released;
      const outcome = unanswered();
      // Not admitted after all (the audit path refused it): nothing was sent, the refusal is thrown.
      const admitted = await admission;
      // Stopped by a suspension or revocation: the agent learns that, not "cancelled".
      const reason: unknown = controller.signal.reason;
      const failure = reason instanceof RpcError ? reason : upstreamRpcError(appId, error);
      if (sentAt !== undefined) deps.metrics?.step('upstream', performance.now() - sentAt);
      admitted.finish(outcome, {
        error: { code: String(failure.data?.code), message: failure.message },
        ...argumentRedactions,
      });
      throw failure;
    } finally {
      session.inflight.delete(request.id);
      if (extra.underRedaction) session.endRedactedCall(appId);
    }
    const admitted = await admission;
    const upstreamMs = performance.now() - (released ?? performance.now());
    deps.metrics?.step('upstream', upstreamMs);
    if ('error' in response) {
      // Upstream errors pass through faithfully, after DLP like any answer.
      const error = deps.guard.error(admitted.decision, response.error);
      admitted.finish('failed', {
        error: { code: `upstream_${response.error.code}`, message: error.message },
        ...argumentRedactions,
      });
      return { jsonrpc: '2.0', id: request.id, error };
    }
    const inspected = deps.guard.result(admitted.decision, response.result, extra.outputSchema);
    const failed = inspected.blocked !== undefined || response.result.isError === true;
    admitted.finish(failed ? 'failed' : 'succeeded', {
      ...(inspected.blocked
        ? { error: inspected.blocked }
        : response.result.isError === true
          ? { error: { code: 'tool_error', message: 'the tool reported an error' } }
          : {}),
      ...(inspected.redactions ? { redactions: inspected.redactions } : {}),
      ...argumentRedactions,
    });
    // Only a tool call answers with a readable result; a withheld resource or prompt is an error.
    if (
      inspected.blocked &&
      method !== 'tools/call' &&
      inspected.blocked.code !== 'dlp_structured_content_withheld'
    )
      throw new RpcError(RpcCode.DlpBlocked, inspected.blocked.message, {
        code: inspected.blocked.code,
        retryable: false,
      });
    deps.logger.debug({ appId, method, upstreamMs }, 'upstream answered');
    return inspected.result;
  });
}

async function subscribe(
  deps: MethodDeps,
  context: RequestContext,
  on: boolean,
): Promise<Record<string, unknown> | JsonRpcResponse> {
  const { session } = context;
  const { uri } = params(context);
  if (typeof uri !== 'string') throw invalidParams('uri must be a string');
  const target = session.namespace.resolveUri(uri);
  if (!target || !context.apps.includes(target.appId) || !readable(deps, context, target.appId))
    throw unknown('resource', uri);
  // Updates of a resource are what reading it would show: allowed exactly when a read of this URI
  // would be now (its window, its argument constraints, no approval pending).
  if (on && !mayRead(deps, context, target)) throw unknown('resource', uri);
  const method = on ? 'resources/subscribe' : 'resources/unsubscribe';
  // Subscribing is not an enforced operation, but its URI goes upstream all the same.
  if (on && redacted(target.uri) !== target.uri) throw dlpRefused('resource URI');
  // The upstream's own URI and nothing else the agent put in the params (the method has no other).
  const upstreamParams = { uri: target.uri };
  if (!on) {
    const response = await relayed(deps, context, target.appId, method, upstreamParams);
    if ('error' in response) return response;
    await deps.store.unsubscribed(session.id, uri);
    session.record = {
      ...session.record,
      subscriptions: session.record.subscriptions.filter((each) => each !== uri),
    };
    return response;
  }
  // Each subscription is replayed to every fresh upstream session: the count must stay bounded.
  // Its place is taken in Redis before the upstream is asked, so that subscribes arriving at once,
  // on any replica, cannot each take the last one; taken back if the upstream does not subscribe.
  const reservation = await deps.store.reserveSubscription(session.id, uri);
  if (reservation === 'gone') throw sessionNotFound();
  if (reservation === 'full')
    throw new RpcError(
      RpcCode.InvalidParams,
      `Too many subscriptions: a session holds at most ${SessionStore.MAX_SUBSCRIPTIONS}; unsubscribe first`,
      { code: 'too_many_subscriptions', limit: SessionStore.MAX_SUBSCRIPTIONS },
    );
  let response: JsonRpcResponse | undefined;
  try {
    response = await relayed(deps, context, target.appId, method, upstreamParams);
  } finally {
    if (reservation === 'added' && (response === undefined || 'error' in response))
      await deps.store.unsubscribed(session.id, uri).catch(() => undefined);
  }
  if ('error' in response) return response;
  session.record = {
    ...session.record,
    subscriptions: [...new Set([...session.record.subscriptions, uri])],
  };
  return response;
}

async function complete(
  deps: MethodDeps,
  context: RequestContext,
): Promise<Record<string, unknown> | JsonRpcResponse> {
  const { session } = context;
  const ref = objectArgument(params(context).ref, 'ref');
  let appId: string | undefined;
  let upstreamRef: Record<string, unknown> | undefined;
  if (ref.type === 'ref/prompt' && typeof ref.name === 'string') {
    const target = session.namespace.resolveName(ref.name);
    // Completing a prompt's arguments is allowed when getting the prompt would be, now.
    if (
      target &&
      deps.enforcement.permits(context.caller, {
        appId: target.appId,
        tool: `prompt:${target.name}`,
        actionClass: 'read',
        arguments: {},
      })
    ) {
      appId = target.appId;
      // Only what names the prompt: nothing else the agent put in the reference goes upstream.
      upstreamRef = { type: 'ref/prompt', name: target.name };
    }
  } else if (ref.type === 'ref/resource' && typeof ref.uri === 'string') {
    const target = session.namespace.resolveUri(ref.uri);
    if (target && mayRead(deps, context, target)) {
      if (redacted(target.uri) !== target.uri) throw dlpRefused('reference');
      appId = target.appId;
      upstreamRef = { type: 'ref/resource', uri: target.uri };
    }
  }
  if (!appId || !upstreamRef || !context.apps.includes(appId))
    throw unknown('reference', JSON.stringify(ref));
  // What the user is typing goes upstream: redacted like every message relayed outside an
  // enforced operation, so a completion cannot carry out what a tool call's DLP would stop. The
  // reference, already resolved against the catalog, goes as it is.
  const outgoing = redacted(params(context));
  if (!outgoing)
    throw new RpcError(RpcCode.DlpBlocked, 'The completion request could not be inspected by DLP', {
      code: 'dlp_uninspectable',
      retryable: false,
    });
  return relayed(deps, context, appId, 'completion/complete', { ...outgoing, ref: upstreamRef });
}

async function setLogLevel(deps: MethodDeps, context: RequestContext): Promise<Record<string, unknown>> {
  const { session } = context;
  const { level } = params(context);
  if (typeof level !== 'string' || !LOG_LEVELS.includes(level))
    throw invalidParams(`level must be one of ${LOG_LEVELS.join(', ')}`);
  await deps.store.setLogLevel(session.id, level);
  session.record = { ...session.record, logLevel: level };
  // Upstream sessions already open (here or, for HTTP, on any replica) learn it now; others when opened.
  const apps = new Set([...session.openApps(), ...Object.keys(session.record.upstreams)]);
  await Promise.all(
    [...apps]
      .filter((appId) => context.apps.includes(appId))
      .map(async (appId) => {
        try {
          await session.withUpstream(appId, async (upstream) => {
            const capabilities = (upstream.initializeResult.capabilities ?? {}) as Record<string, unknown>;
            if (capabilities.logging)
              await upstream.request('logging/setLevel', { level }, { timeoutMs: deps.callTimeoutMs });
          });
        } catch (error) {
          deps.logger.warn({ err: error, appId }, 'log level not passed to an upstream');
        }
      }),
  );
  return {};
}

/** A request relayed to one app as is (apart from names), its answer returned as is. */
async function relayed(
  deps: MethodDeps,
  context: RequestContext,
  appId: string,
  method: string,
  outgoing: Record<string, unknown>,
): Promise<JsonRpcResponse> {
  const { session, request, channel } = context;
  let safe: JsonRpcResponse | undefined;
  try {
    const response = await session.withUpstream(appId, (upstream) =>
      upstream.request(method, outgoing, {
        timeoutMs: deps.callTimeoutMs,
        onMessage: (message) => session.relay(appId, upstream, message, channel),
      }),
    );
    // Not an enforced operation, but what comes back still passes DLP (completion values can
    // carry data): redacted, as are upstream errors everywhere.
    safe = redacted(response);
  } catch (error) {
    throw upstreamRpcError(appId, error);
  }
  if (!safe)
    throw new RpcError(
      RpcCode.DlpBlocked,
      `The answer of app ${appId} could not be inspected (nested too deep or too large) and was withheld`,
      { code: 'dlp_uninspectable', retryable: false },
    );
  return { ...safe, id: request.id } as JsonRpcResponse;
}
