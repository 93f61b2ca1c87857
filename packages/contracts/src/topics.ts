/**
 * Every Kafka topic, with the partitions and configs it is created with. Services create the topics
 * they produce to at start-up (auto-creation is off in our brokers), so these values are the truth.
 */
export interface TopicDefinition {
  /** Name without the deployment prefix. */
  readonly name: string;
  readonly partitions: number;
  readonly configs: Readonly<Record<string, string>>;
  readonly description: string;
}

export const Topics = {
  audit: {
    name: 'portcullis.audit.v1',
    partitions: 6,
    configs: {
      'cleanup.policy': 'delete',
      'retention.ms': String(7 * 24 * 3600 * 1000),
      'min.insync.replicas': '1',
    },
    description: 'Audit events of every tool call, keyed by callId. The ledger is built from it.',
  },
  auditDeadLetter: {
    name: 'portcullis.audit.dead-letter.v1',
    partitions: 1,
    configs: { 'cleanup.policy': 'delete', 'retention.ms': String(30 * 24 * 3600 * 1000) },
    description: 'Audit messages the audit service could not parse or place, with the reason in headers.',
  },
  directory: {
    name: 'portcullis.directory.v1',
    // One partition: a broker replays it in order, and a snapshot's revision marker comes last.
    partitions: 1,
    configs: { 'cleanup.policy': 'compact', 'min.compaction.lag.ms': '60000', 'min.insync.replicas': '1' },
    description:
      'Directory state (agents with key hashes, apps, app connections with tool pins, entitlements, delegations) keyed by entity.',
  },
  policy: {
    name: 'portcullis.policy.v1',
    partitions: 1,
    configs: { 'cleanup.policy': 'compact', 'max.message.bytes': String(8 * 1024 * 1024) },
    description: 'The active policy bundle (key "active"), with its revision and digest.',
  },
  decisionLog: {
    name: 'portcullis.decision-log.v1',
    partitions: 3,
    configs: { 'cleanup.policy': 'delete', 'retention.ms': String(7 * 24 * 3600 * 1000) },
    description:
      "Decisions of the Data API in OPA's decision-log shape, inputs masked; keyed by decision_id.",
  },
  toolDefinitions: {
    name: 'portcullis.tool-definitions.v1',
    partitions: 1,
    configs: { 'cleanup.policy': 'delete', 'retention.ms': String(30 * 24 * 3600 * 1000) },
    description:
      'Tool definitions brokers saw that do not match their pin (ToolDefinitionChangedV1), keyed <appId>/<tool>.',
  },
} as const satisfies Record<string, TopicDefinition>;

/** The deployed name of a topic: a prefix lets tests and side-by-side stacks share one cluster. */
export function topicName(prefix: string, topic: TopicDefinition): string {
  return prefix ? `${prefix}.${topic.name}` : topic.name;
}

/** The deployed name of a consumer group, prefixed like topics. */
export function consumerGroupName(prefix: string, group: string): string {
  return prefix ? `${prefix}.${group}` : group;
}
