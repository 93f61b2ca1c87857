import {
  type AppAuth,
  type AppTransport,
  DirectoryRecordV1,
  PolicyActivatedV1,
  Topics,
  topicName,
} from '@portcullis/contracts';
import { type CompactedReader, type CompactedRecord, startCompactedReader } from '@portcullis/kafka';
import { type DirectoryChange, type PolicyEngine, readBundle } from '@portcullis/policy-engine';
import type { Logger } from '@portcullis/runtime';
import type { Kafka } from 'kafkajs';

/** How long a replica serves without hearing from Kafka before it turns unready (see check()). */
export const DEFAULT_MAX_STALENESS_MS = 5 * 60_000;

export interface Agent {
  id: string;
  name: string;
  owner: string;
  state: 'active' | 'suspended';
  /** The kind of MCP client the agent is; grants may be limited to some client types. */
  clientType?: string;
}

/** What a batch of directory records changed, for listeners such as the gateway's list_changed. */
export interface DirectoryChangeSummary {
  /** Agents whose state, keys, entitlements or delegations changed. */
  agents: Set<string>;
  /** Apps whose settings or connection changed. */
  apps: Set<string>;
  /** True when the change may affect every agent (a policy activation, a delegation). */
  everyone: boolean;
}

/** How to reach an app and what each of its tools is pinned to (an `app_connection` record). */
export interface AppConnectionRecord {
  appId: string;
  transport: AppTransport;
  auth: AppAuth;
  /** tool name → pinned fingerprint (toolFingerprint in @portcullis/contracts). */
  tools: Readonly<Record<string, string>>;
}

interface KeyRecord {
  agentId: string;
  secretSha256: Buffer;
}

/**
 * The broker's copy of the directory and of the active policy bundle, both read from compacted
 * Kafka topics that the decision service publishes. Every replica reads the topics from the
 * beginning at start (bootstrap) and then follows them, so all replicas converge on the same
 * directory revision and bundle within a fetch interval of a change.
 *
 * The policy engine gets the directory as data.directory: one full load when the bootstrap is
 * complete, then each change in place. Key hashes stay here, outside the policy's data, and so do
 * app connections and tool pins (ADR 0042).
 */
export class DirectoryFeed {
  readonly #engine: PolicyEngine;
  readonly #logger: Logger;
  readonly #directoryTopic: string;
  readonly #policyTopic: string;
  readonly #agents = new Map<string, Agent>();
  readonly #keys = new Map<string, KeyRecord>();
  readonly #keysOfAgent = new Map<string, string[]>();
  /** OAuth client id → agent id, and the reverse, for authenticating access tokens. */
  readonly #oauthClients = new Map<string, string>();
  readonly #oauthClientsOfAgent = new Map<string, string[]>();
  readonly #appConnections = new Map<string, AppConnectionRecord>();
  readonly #appsListeners = new Set<(appIds: string[]) => void>();
  /** data.directory while bootstrapping; handed to the engine in one piece once caught up. */
  #pending: Record<string, Record<string, unknown>> | undefined = {
    agents: {},
    apps: {},
    entitlements: {},
    delegations: {},
  };
  #reader: CompactedReader | undefined;
  readonly #maxStalenessMs: number;
  /**
   * Directory records of a publication still in progress. A publication is sent in several
   * batches (directory-publisher.ts) that a fetch may split further; applied as they came, an
   * agent's reactivation could take effect before the removal of grants in the same change. So
   * once bootstrapped, records wait here for their publication's `revision:current` marker and
   * are applied together with it.
   */
  #held: CompactedRecord[] = [];
  readonly #listeners: ((change: DirectoryChangeSummary) => void)[] = [];
  #revision = -1;
  #policyRevision: string | undefined;

  /**
   * `maxStalenessMs`: how long the replica may go without hearing from Kafka before it turns
   * unready. Meanwhile it serves with the directory and policy it has (calls keep working through a
   * short Kafka outage, as the audit spool lets them), but a suspension or revocation made
   * meanwhile cannot reach it: past the bound, it stops taking traffic rather than enforce
   * permissions of unknown age.
   */
  constructor(
    engine: PolicyEngine,
    prefix: string,
    logger: Logger,
    maxStalenessMs = DEFAULT_MAX_STALENESS_MS,
  ) {
    this.#engine = engine;
    this.#logger = logger;
    this.#maxStalenessMs = maxStalenessMs;
    this.#directoryTopic = topicName(prefix, Topics.directory);
    this.#policyTopic = topicName(prefix, Topics.policy);
  }

  /** The directory revision applied last (-1 before the first marker). */
  get revision(): number {
    return this.#revision;
  }

  /** Reads both topics up to their end, installs the snapshot, then keeps following them. */
  async start(kafka: Kafka): Promise<void> {
    this.#reader = await startCompactedReader({
      kafka,
      topics: [this.#directoryTopic, this.#policyTopic],
      groupPrefix: 'broker-directory',
      logger: this.#logger,
      apply: (records) => this.#apply(records),
    });
    await this.#reader.caughtUp;
    const snapshot = this.#pending ?? {};
    this.#pending = undefined;
    this.#engine.setDirectory(snapshot);
    this.#logger.info(
      { revision: this.#revision, agents: this.#agents.size, policyRevision: this.#engine.revision },
      'directory bootstrapped from kafka',
    );
  }

  async stop(): Promise<void> {
    await this.#reader?.stop();
  }

  /** Throws until the bootstrap is complete, and while Kafka has been out of reach too long; readiness. */
  check(): void {
    if (this.#pending) throw new Error('directory bootstrap from kafka not complete');
    const silentMs = this.#reader?.sinceLastFetchMs() ?? 0;
    if (silentMs > this.#maxStalenessMs)
      throw new Error(
        `directory and policy not refreshed from kafka for ${Math.round(silentMs / 1000)} s (bound ${this.#maxStalenessMs / 1000} s)`,
      );
  }

  key(keyId: string): KeyRecord | undefined {
    return this.#keys.get(keyId);
  }

  agent(agentId: string): Agent | undefined {
    return this.#agents.get(agentId);
  }

  /** Calls `listener` after each applied batch of changes (not during the bootstrap). */
  onChange(listener: (change: DirectoryChangeSummary) => void): void {
    this.#listeners.push(listener);
  }

  /** The agent an OAuth client id is registered on. */
  agentByOAuthClient(clientId: string): Agent | undefined {
    const agentId = this.#oauthClients.get(clientId);
    return agentId === undefined ? undefined : this.#agents.get(agentId);
  }

  /** The app's connection and tool pins, or undefined when it has none (unknown app: refuse). */
  appConnection(appId: string): AppConnectionRecord | undefined {
    return this.#appConnections.get(appId);
  }

  /** Every app that has a connection. */
  appConnections(): AppConnectionRecord[] {
    return [...this.#appConnections.values()];
  }

  /**
   * Calls `listener` with the ids of the apps whose connection or pins changed (added, replaced or
   * removed), after each batch of directory records; also during the bootstrap. Returns a detach.
   */
  onAppsChanged(listener: (appIds: string[]) => void): () => void {
    this.#appsListeners.add(listener);
    return () => this.#appsListeners.delete(listener);
  }

  async #apply(incoming: CompactedRecord[]): Promise<void> {
    const records = this.#pending ? incoming : this.#complete(incoming);
    const changes: DirectoryChange[] = [];
    const after: (() => void)[] = [];
    const summary: DirectoryChangeSummary = { agents: new Set(), apps: new Set(), everyone: false };
    const appsChanged = new Set<string>();
    for (const record of records) {
      if (record.topic === this.#policyTopic) {
        await this.#activate(record);
        summary.everyone = true;
        continue;
      }
      if (record.key.startsWith('app_connection:')) this.#appConnectionRecord(record, appsChanged);
      else this.#directoryRecord(record, changes, after);
      summarize(record.key, summary);
    }
    if (!this.#pending) after.push(() => this.#notify(summary));
    // Engine first: a key that authenticates must never meet a policy that has not seen its agent.
    if (this.#pending) for (const change of changes) setPath(this.#pending, change);
    else if (changes.length > 0) this.#engine.applyDirectoryChanges(changes);
    for (const step of after) step();
    if (appsChanged.size > 0) {
      const appIds = [...appsChanged];
      for (const listener of this.#appsListeners) {
        try {
          listener(appIds);
        } catch (error) {
          this.#logger.error({ err: error }, 'apps-changed listener failed');
        }
      }
    }
  }

  /**
   * The records that may be applied now: policy records at once, directory records up to and
   * including the last marker seen; the rest are held for the next batch (see #held).
   */
  #complete(incoming: CompactedRecord[]): CompactedRecord[] {
    const ready: CompactedRecord[] = [];
    for (const record of incoming) {
      if (record.topic !== this.#directoryTopic) {
        ready.push(record);
        continue;
      }
      this.#held.push(record);
      if (record.key === 'revision:current') {
        ready.push(...this.#held);
        this.#held = [];
      }
    }
    return ready;
  }

  /** Keeps app connections beside the engine: they are not policy data. A tombstone removes one. */
  #appConnectionRecord(record: CompactedRecord, appsChanged: Set<string>): void {
    const appId = record.key.slice('app_connection:'.length);
    if (record.value === null) {
      if (this.#appConnections.delete(appId)) appsChanged.add(appId);
      return;
    }
    let parsed: DirectoryRecordV1;
    try {
      parsed = DirectoryRecordV1.parse(JSON.parse(record.value.toString('utf8')));
    } catch (error) {
      // Fail closed: an unreadable connection record removes the app's connection (and so its pins)
      // rather than keeping pins an admin may have replaced.
      this.#logger.error(
        { err: error, key: record.key },
        'unreadable app connection record; app unavailable',
      );
      if (this.#appConnections.delete(appId)) appsChanged.add(appId);
      return;
    }
    if (parsed.kind !== 'app_connection' || parsed.id !== appId) return;
    this.#appConnections.set(appId, {
      appId,
      transport: parsed.data.transport,
      auth: parsed.data.auth,
      tools: Object.freeze({ ...parsed.data.tools }),
    });
    appsChanged.add(appId);
  }

  #directoryRecord(record: CompactedRecord, changes: DirectoryChange[], after: (() => void)[]): void {
    const [kind, ...rest] = record.key.split(':');
    const id = rest.join(':');
    const section = {
      agent: 'agents',
      app: 'apps',
      entitlements: 'entitlements',
      delegations: 'delegations',
    }[kind ?? ''];
    // A tombstone removes the entity; so does a record this version cannot read: keeping the
    // entity's last state would fail open (the agent still active, its old grants in force).
    const remove = () => {
      if (!section) return;
      changes.push({ path: [section, id] });
      if (kind === 'agent') after.push(() => this.#setAgent(id, undefined, [], []));
    };
    if (record.value === null) {
      remove();
      return;
    }
    let parsed: DirectoryRecordV1;
    try {
      parsed = DirectoryRecordV1.parse(JSON.parse(record.value.toString('utf8')));
    } catch (error) {
      this.#logger.error(
        { err: error, key: record.key },
        'unreadable directory record: its entity is removed until a readable record replaces it',
      );
      remove();
      return;
    }
    switch (parsed.kind) {
      case 'revision':
        after.push(() => {
          this.#revision = parsed.data.revision;
        });
        return;
      case 'agent': {
        changes.push({ path: ['agents', parsed.id], value: parsed.data });
        const agent: Agent = {
          id: parsed.id,
          name: parsed.name,
          owner: parsed.data.owner,
          state: parsed.data.state,
          ...(parsed.data.client_type ? { clientType: parsed.data.client_type } : {}),
        };
        after.push(() => this.#setAgent(parsed.id, agent, parsed.keys, parsed.oauthClients));
        return;
      }
      default:
        changes.push({
          path: [`${parsed.kind === 'app' ? 'apps' : parsed.kind}`, parsed.id],
          value: parsed.data,
        });
    }
  }

  #notify(summary: DirectoryChangeSummary): void {
    for (const listener of this.#listeners) {
      try {
        listener(summary);
      } catch (error) {
        this.#logger.error({ err: error }, 'directory change listener failed');
      }
    }
  }

  /** Ids of the apps an agent holds entitlements for (the aggregate endpoint's apps). */
  entitledApps(agentId: string): string[] {
    const entitlements = (
      this.#engine.directory?.entitlements as Record<string, Record<string, unknown>> | undefined
    )?.[agentId];
    return entitlements ? Object.keys(entitlements) : [];
  }

  #setAgent(
    id: string,
    agent: Agent | undefined,
    keys: { keyId: string; secretSha256: string }[],
    oauthClients: string[],
  ): void {
    for (const keyId of this.#keysOfAgent.get(id) ?? []) this.#keys.delete(keyId);
    // Only this agent's own entries: a client id moved to another agent may already point there.
    for (const clientId of this.#oauthClientsOfAgent.get(id) ?? [])
      if (this.#oauthClients.get(clientId) === id) this.#oauthClients.delete(clientId);
    if (!agent) {
      this.#agents.delete(id);
      this.#keysOfAgent.delete(id);
      this.#oauthClientsOfAgent.delete(id);
      return;
    }
    for (const clientId of oauthClients) this.#oauthClients.set(clientId, id);
    this.#oauthClientsOfAgent.set(id, oauthClients);
    this.#agents.set(id, agent);
    for (const key of keys)
      this.#keys.set(key.keyId, { agentId: id, secretSha256: Buffer.from(key.secretSha256, 'hex') });
    this.#keysOfAgent.set(
      id,
      keys.map((key) => key.keyId),
    );
  }

  async #activate(record: CompactedRecord): Promise<void> {
    if (record.value === null) return; // the active bundle is never removed, only replaced
    try {
      const activation = PolicyActivatedV1.parse(JSON.parse(record.value.toString('utf8')));
      if (activation.revision === this.#policyRevision && this.#engine.revision === activation.revision)
        return;
      const bundle = await readBundle(Buffer.from(activation.bundleBase64, 'base64'));
      if (bundle.digest !== activation.digest) throw new Error('bundle digest does not match the activation');
      await this.#engine.loadBundle(bundle);
      this.#policyRevision = activation.revision;
      this.#logger.info(
        { revision: activation.revision, bundleId: activation.bundleId },
        'policy bundle activated',
      );
    } catch (error) {
      // The active bundle stays: a broken activation never leaves the broker without a policy.
      this.#logger.error({ err: error }, 'policy activation rejected; keeping the active bundle');
    }
  }
}

function summarize(key: string, summary: DirectoryChangeSummary): void {
  const at = key.indexOf(':');
  const kind = key.slice(0, at);
  const id = key.slice(at + 1);
  if (kind === 'agent' || kind === 'entitlements') summary.agents.add(id);
  else if (kind === 'delegations') summary.everyone = true;
  else if (kind === 'app' || kind.startsWith('app_')) {
    summary.apps.add(id);
    summary.everyone = true;
  }
}

function setPath(root: Record<string, Record<string, unknown>>, change: DirectoryChange): void {
  const [section, id] = change.path as [string, string];
  const target = root[section] ?? {};
  root[section] = target;
  if (change.value === undefined) delete target[id];
  else target[id] = change.value;
}
