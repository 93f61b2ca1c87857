import { readFile } from 'node:fs/promises';
import { Topics, topicName } from '@portcullis/contracts';
import { createKafka, createProducer, ensureTopics } from '@portcullis/kafka';
import { PolicyEngine, readBundle } from '@portcullis/policy-engine';
import { runService } from '@portcullis/runtime';
import { Spool } from '@portcullis/spool';
import { Redis } from 'ioredis';
import { WorkerShipper } from './audit-shipper.ts';
import { createAuthenticator } from './auth/authenticator.ts';
import { oauthOptionsFromEnv } from './auth/oauth-env.ts';
import { createProtectedResourceHandler } from './auth/protected-resource.ts';
import { DirectoryFeed } from './directory.ts';
import { DurableAuditPublisher } from './durable-audit.ts';
import { readEnv } from './env.ts';
import { Catalog } from './gateway/catalog.ts';
import { obligationGuard } from './gateway/content-guard.ts';
import { Enforcement } from './gateway/enforcement.ts';
import { Gateway } from './gateway/gateway.ts';
import { ReplicaBus } from './gateway/replica-bus.ts';
import { admitSession } from './gateway/session-admission.ts';
import { SessionStore } from './gateway/session-store.ts';
import { pinnedToolGate } from './gateway/tool-gate.ts';
import { GatewayMetrics } from './gateway-metrics.ts';
import { hostOriginCheck } from './host-origin.ts';
import { RateLimiter } from './rate-limit.ts';
import { ToolPins } from './tool-pins.ts';
import type { UpstreamTarget } from './upstream/connection.ts';
import { createUpstreamConnector, noUpstreamAuth } from './upstream/connector.ts';

/** How the gateway names itself to agents in the initialize handshake. */
const GATEWAY_INFO = { name: 'portcullis-gateway', version: '0.1.0' };

// Composition root of the broker, the policy enforcement point: builds the clients and wires them.
const env = readEnv();

await runService(
  {
    service: 'broker',
    logLevel: env.LOG_LEVEL,
    instanceId: env.INSTANCE_ID,
    httpHost: env.HTTP_HOST,
    httpPort: env.HTTP_PORT,
    drainDelayMs: env.SHUTDOWN_DRAIN_MS,
    shutdownTimeoutMs: env.SHUTDOWN_TIMEOUT_MS,
  },
  async ({ logger, health, shutdown, metrics: registry, rawHandlers }) => {
    const engine = new PolicyEngine();
    if (env.POLICY_BUNDLE_PATH) {
      // A local bundle serves only until the decision service's activation is read from Kafka.
      await engine.loadBundle(await readBundle(await readFile(env.POLICY_BUNDLE_PATH)));
      logger.info({ revision: engine.revision }, 'local policy bundle loaded');
    }

    const redis = new Redis(env.REDIS_URL, {
      // Commands fail fast while Redis is away instead of queueing without bound.
      maxRetriesPerRequest: 2,
      enableOfflineQueue: false,
      connectTimeout: 3000,
      // A Redis that stops answering (connection open, no reply) fails commands instead of
      // hanging every call that needs it.
      commandTimeout: env.REDIS_COMMAND_TIMEOUT_MS,
      lazyConnect: true,
    });
    // Without an error listener ioredis would crash the process on a dropped connection.
    redis.on('error', (error) => logger.warn({ err: error }, 'redis connection error'));
    await redis.connect();
    shutdown.add('close', 'redis', async () => void (await redis.quit()));
    health.addCheck('redis', async () => void (await redis.ping()));

    const kafkaClient = { clientId: `broker-${env.INSTANCE_ID}`, brokers: env.KAFKA_BROKERS };
    const kafka = createKafka({ ...kafkaClient, logger });
    await ensureTopics(kafka, env.KAFKA_TOPIC_PREFIX, [
      Topics.audit,
      Topics.directory,
      Topics.policy,
      Topics.toolDefinitions,
    ]);
    // The directory and the active bundle come from compacted topics; readiness waits for both.
    const directory = new DirectoryFeed(
      engine,
      env.KAFKA_TOPIC_PREFIX,
      logger,
      env.DIRECTORY_MAX_STALENESS_MS,
    );
    await directory.start(kafka);
    shutdown.add('close', 'directory feed', () => directory.stop());
    health.addCheck('directory', async () => directory.check());
    health.addCheck('policy', async () => {
      if (!engine.ready) throw new Error('no policy bundle or directory loaded');
    });
    const producer = createProducer(kafka);
    await producer.connect();
    // Outcome events get a producer of their own: see DurableAuditOptions.outcomeProducer.
    const outcomeProducer = createProducer(kafka);
    await outcomeProducer.connect();
    // The audit path: Kafka, or this replica's spool while Kafka is away (replayed in order).
    const { spool, recovery } = await Spool.open({
      dir: env.AUDIT_SPOOL_DIR,
      maxBytes: env.AUDIT_SPOOL_MAX_BYTES,
      maxRecords: env.AUDIT_SPOOL_MAX_EVENTS,
      // In local-first mode the spool is the normal way in and drains after nearly every shipment:
      // reclaim its file only once traffic pauses (not a new segment file each time), and write
      // the shipped position a few times a second (not after every shipment). A crash then re-ships
      // at most the last 200 ms of events: duplicates by event id, which the ledger ignores.
      ...(env.AUDIT_ACCEPTANCE === 'local-first'
        ? { drainedCompactionDelayMs: 1000, positionSyncDelayMs: 200 }
        : {}),
    });
    if (recovery.pendingRecords > 0 || recovery.truncatedBytes > 0)
      logger.warn(recovery, 'audit spool holds events from a previous run; replaying them first');
    // What the spool holds goes to Kafka from a worker thread with a producer of its own (same
    // client settings), so shipping never holds up calls on this thread.
    const shipper = new WorkerShipper({
      config: { ...kafkaClient, topic: topicName(env.KAFKA_TOPIC_PREFIX, Topics.audit) },
      logger,
    });
    const audit = new DurableAuditPublisher({
      producer,
      outcomeProducer,
      shipper,
      acceptance: env.AUDIT_ACCEPTANCE,
      topicPrefix: env.KAFKA_TOPIC_PREFIX,
      spool,
      sendTimeoutMs: env.AUDIT_SEND_TIMEOUT_MS,
      retryIntervalMs: env.AUDIT_REPLAY_INTERVAL_MS,
      agentShare: env.AUDIT_SPOOL_AGENT_SHARE,
      logger,
    });
    shutdown.add('flush', 'audit spool', async () => {
      await audit.flush(Math.floor(env.SHUTDOWN_TIMEOUT_MS / 3));
      // Kafka still away: a shipment in flight could wait out kafkajs's retries past the shutdown
      // deadline (and the spool would then close without writing its position); what it carried
      // stays in the spool for the next start.
      if (audit.spooled > 0) await shipper.abandon();
      await audit.stop();
      await shipper.close();
      await spool.close();
    });
    // Flushed after intake stopped and in-flight calls finished, so their outcome events get out.
    shutdown.add('flush', 'kafka producers', async () => {
      await Promise.all([producer.disconnect(), outcomeProducer.disconnect()]);
    });
    // Ready while the audit path takes calls: Kafka up, or Kafka away with room in the spool.
    health.addCheck('audit', async () => audit.check());
    health.addCheck('audit shipper', async () => shipper.check());

    // The upstream apps: registered in the directory, plus an optional static one for development.
    const staticApp: UpstreamTarget | undefined =
      env.UPSTREAM_URL && env.UPSTREAM_APP_ID
        ? { appId: env.UPSTREAM_APP_ID, transport: { type: 'http', url: env.UPSTREAM_URL } }
        : undefined;
    if (staticApp)
      logger.warn(
        { appId: staticApp.appId },
        'static app from UPSTREAM_URL: development only, its tools are not pinned',
      );
    // A registered connection always wins: the static app stands in only for an app the directory
    // has no connection for, so it can never replace (or unpin) a registered one.
    const staticFor = (appId: string) =>
      staticApp?.appId === appId && !directory.appConnection(appId) ? staticApp : undefined;
    const target = (appId: string): UpstreamTarget | undefined => {
      const connection = directory.appConnection(appId);
      return connection ? { appId, transport: connection.transport } : staticFor(appId);
    };
    const pins = new ToolPins({
      source: directory,
      producer,
      topicPrefix: env.KAFKA_TOPIC_PREFIX,
      instanceId: env.INSTANCE_ID,
      logger,
    });
    const oauth = oauthOptionsFromEnv(env);
    if (oauth)
      // RFC 9728 metadata, so MCP clients find the authorization server from a 401 challenge.
      rawHandlers.push(
        createProtectedResourceHandler({
          resource: oauth.audience,
          issuer: oauth.issuer,
          scopes: oauth.requiredScopes,
          resourceName: env.OAUTH_RESOURCE_NAME,
        }),
      );
    const connector = createUpstreamConnector({
      credentials: noUpstreamAuth,
      logger,
      maxStdioSessions: env.MAX_STDIO_SESSIONS,
      maxStdioSessionsPerAgent: env.MAX_STDIO_SESSIONS_PER_AGENT,
    });
    shutdown.add('close', 'upstream connections', () => connector.close());
    const catalog = new Catalog({ ttlMs: 60_000, missRefreshMs: 5_000, timeoutMs: env.UPSTREAM_TIMEOUT_MS });
    const store = new SessionStore(
      redis,
      env.REDIS_KEY_PREFIX,
      env.SESSION_TTL_SECONDS,
      env.MAX_SESSIONS_PER_AGENT,
    );
    const limiter = new RateLimiter(redis, env.REDIS_KEY_PREFIX, env.RATE_LIMIT_CLASSES);
    // Gauges are read at scrape time, once the HTTP server listens: the gateway exists by then.
    const metrics = new GatewayMetrics(registry, {
      spooledEvents: () => audit.spooled,
      spooledBytes: () => spool.pendingBytes,
      spooling: () => audit.spooling,
      localSessions: () => gateway.localSessions,
    });
    const enforcement = new Enforcement({
      engine,
      audit,
      logger,
      instanceId: env.INSTANCE_ID,
      limiter,
      metrics,
    });
    const gateway = new Gateway({
      sessionDeps: {
        store,
        connector,
        catalog,
        target,
        logger,
        instanceId: env.INSTANCE_ID,
        upstreamTimeoutMs: env.UPSTREAM_TIMEOUT_MS,
        clientResponseTimeoutMs: env.CLIENT_RESPONSE_TIMEOUT_MS,
        metrics,
      },
      methodDeps: {
        metrics,
        enforcement,
        catalog,
        store,
        guard: obligationGuard,
        tools: pinnedToolGate(pins, logger, (appId) => staticFor(appId) !== undefined),
        logger,
        callTimeoutMs: env.UPSTREAM_TIMEOUT_MS,
        callMaxMs: env.UPSTREAM_MAX_CALL_MS,
      },
      // Agent keys always; OAuth 2.1 access tokens when an issuer is configured.
      authenticator: createAuthenticator({ directory, oauth }),
      // Host and Origin first: a DNS-rebinding request is refused before it can touch anything.
      checkHostOrigin: hostOriginCheck({
        allowedHosts: env.MCP_ALLOWED_HOSTS,
        allowedOrigins: env.MCP_ALLOWED_ORIGINS,
      }),
      bus: new ReplicaBus(redis, { prefix: env.REDIS_KEY_PREFIX, instanceId: env.INSTANCE_ID, logger }),
      limits: { maxBytes: env.MAX_REQUEST_BYTES, maxDepth: env.MAX_JSON_DEPTH },
      appsOf: (agentId) => directory.entitledApps(agentId).filter((appId) => target(appId) !== undefined),
      appExists: (appId) => target(appId) !== undefined,
      agentActive: (agentId) => directory.agent(agentId)?.state === 'active',
      serverInfo: GATEWAY_INFO,
      // New sessions are rate-limited per agent (the standard class): an agent cannot flood Redis.
      admitSession: (agentId) => admitSession(limiter, agentId),
      keepAliveMs: env.SSE_KEEPALIVE_MS,
      localIdleMs: 10 * 60_000,
      localRecheckMs: 5_000,
      // A third of the idle timeout, at most a minute: a listening client never sees it expire.
      streamKeepAliveMs: Math.min(60_000, (env.SESSION_TTL_SECONDS * 1000) / 3),
    });
    await gateway.start();
    directory.onChange((change) => gateway.directoryChanged(change));
    rawHandlers.push(gateway.handle);
    // The HTTP server's close (stop-intake) waits for in-flight requests; then this replica lets go
    // of its sessions, which live on in Redis for the other replicas.
    shutdown.add('drain', 'mcp sessions', async () => {
      if (gateway.inFlight > 0)
        logger.warn({ inFlight: gateway.inFlight }, 'letting go of sessions with requests in flight');
      await gateway.close();
      await enforcement.settled();
    });
  },
);
