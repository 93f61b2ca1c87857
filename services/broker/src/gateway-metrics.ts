import { ToolCallOutcome } from '@portcullis/contracts';
import { Counter, Gauge, type Registry } from 'prom-client';
import { HotPathHistogram } from './hot-path-histogram.ts';
import type { UpstreamFailure } from './upstream/connection.ts';

/** The steps of an enforced call whose duration is recorded (see docs/operations.md, "Metrics"). */
const CALL_STEPS = ['policy', 'audit', 'upstream'] as const;
export type CallStep = (typeof CALL_STEPS)[number];

/** Why a rate limit refused: over a limit, or the limiter could not decide (fail closed). */
export type RateLimitRefusal =
  | 'agent_limit'
  | 'tool_limit'
  | 'new_sessions'
  | 'limiter_unavailable'
  | 'unknown_class';

/**
 * From tens of microseconds (the in-process policy) to the upstream's seconds: the gateway's own
 * steps take well under a millisecond, so the low end is fine-grained.
 */
/** The histograms' bucket bounds in seconds (the gateway bench reads medians off them). */
export const SECONDS_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
  30,
];

/** What the broker reads its gauges from when Prometheus scrapes. */
export interface GaugeSources {
  /** Events in the audit spool not yet on Kafka, and their bytes. */
  spooledEvents(): number;
  spooledBytes(): number;
  /** True while audit events go to the spool (always in local-first mode; in kafka mode, Kafka away). */
  spooling(): boolean;
  /** MCP sessions this replica holds in memory. */
  localSessions(): number;
}

/**
 * The gateway's Prometheus metrics: what was decided and how calls ended, per app; how long each
 * step of an enforced call took; what DLP redacted; the audit spool; the sessions a replica holds.
 * Labels are bounded sets only: app ids (registered by admins), decision and outcome values, DLP
 * detector types. Never a tool name, an agent or anything else an agent or an upstream chooses.
 */
export class GatewayMetrics {
  readonly #decisions: Counter<'app' | 'decision'>;
  readonly #calls: Counter<'app' | 'outcome'>;
  readonly #callSeconds: HotPathHistogram<ToolCallOutcome>;
  readonly #stepSeconds: HotPathHistogram<CallStep>;
  readonly #auditRefusals: Counter;
  readonly #redactions: Counter<'detector' | 'direction'>;
  readonly #rateLimitRefusals: Counter<'reason'>;
  readonly #toolBlocks: Counter<'app'>;
  readonly #upstreamEnds: Counter<'app' | 'failure'>;
  readonly #upstreamRestarts: Counter<'app'>;
  readonly #upstreamRestartFailures: Counter<'app'>;

  constructor(registry: Registry, sources: GaugeSources) {
    const registers = [registry];
    this.#decisions = new Counter({
      name: 'portcullis_gateway_decisions_total',
      help: 'Policy decisions on tools/call, resources/read and prompts/get, by app and decision',
      labelNames: ['app', 'decision'],
      registers,
    });
    this.#calls = new Counter({
      name: 'portcullis_gateway_calls_total',
      help: 'Enforced calls by app and outcome (succeeded, failed, not_executed), as recorded in the ledger',
      labelNames: ['app', 'outcome'],
      registers,
    });
    // Observed on every call: histograms of our own (hot-path-histogram.ts), not prom-client's.
    this.#callSeconds = new HotPathHistogram({
      name: 'portcullis_gateway_call_duration_seconds',
      help: 'Enforced calls from just before the policy decision to the outcome, by outcome (the ledger durationMs)',
      labelName: 'outcome',
      labelValues: ToolCallOutcome.options,
      buckets: SECONDS_BUCKETS,
      registry,
    });
    this.#stepSeconds = new HotPathHistogram({
      name: 'portcullis_gateway_step_duration_seconds',
      help: 'Steps of an enforced call: policy (in-process decision), audit (request event built and accepted by Kafka or the spool), upstream (request to answer)',
      labelName: 'step',
      labelValues: CALL_STEPS,
      buckets: SECONDS_BUCKETS,
      registry,
    });
    this.#auditRefusals = new Counter({
      name: 'portcullis_gateway_audit_refusals_total',
      help: 'Calls refused because their request event could not be recorded (Kafka away and the spool full)',
      registers,
    });
    this.#redactions = new Counter({
      name: 'portcullis_dlp_redactions_total',
      help: 'Findings DLP acted on (redacted, or in a result it withheld), by detector and direction (arguments on the way up, results on the way back)',
      labelNames: ['detector', 'direction'],
      registers,
    });
    this.#rateLimitRefusals = new Counter({
      name: 'portcullis_gateway_rate_limit_refusals_total',
      help: 'Calls and new sessions refused by a rate limit, by reason (agent_limit, tool_limit, new_sessions, limiter_unavailable, unknown_class)',
      labelNames: ['reason'],
      registers,
    });
    this.#toolBlocks = new Counter({
      name: 'portcullis_gateway_tool_blocks_total',
      help: 'Calls refused because the tool definition changed upstream and awaits approval, by app',
      labelNames: ['app'],
      registers,
    });
    this.#upstreamEnds = new Counter({
      name: 'portcullis_upstream_sessions_ended_total',
      help: "Upstream sessions that ended under an agent's session, by app and cause (closed: a stdio child exited or an HTTP upstream ended the session; protocol: the upstream broke the protocol)",
      labelNames: ['app', 'failure'],
      registers,
    });
    this.#upstreamRestarts = new Counter({
      name: 'portcullis_upstream_restarts_total',
      help: 'stdio upstream children started again after theirs ended, by app',
      labelNames: ['app'],
      registers,
    });
    this.#upstreamRestartFailures = new Counter({
      name: 'portcullis_upstream_restart_failures_total',
      help: 'Attempts to start an ended stdio upstream child again that failed (it exited or did not complete initialize), by app; attempts back off from 100 ms to 10 s',
      labelNames: ['app'],
      registers,
    });
    // Read when Prometheus scrapes, from the broker's own state.
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    gauge('portcullis_audit_spool_events', "Audit events in this replica's spool, not yet on Kafka", () =>
      sources.spooledEvents(),
    );
    gauge(
      'portcullis_audit_spool_bytes',
      "Bytes of audit events in this replica's spool, not yet on Kafka",
      () => sources.spooledBytes(),
    );
    gauge(
      'portcullis_audit_spooling',
      '1 while audit events go to the spool (always in local-first mode; in kafka mode, while Kafka is away)',
      () => (sources.spooling() ? 1 : 0),
    );
    gauge('portcullis_gateway_sessions', 'MCP sessions this replica holds in memory', () =>
      sources.localSessions(),
    );
  }

  /** An upstream session ended under an agent's session (closed, or protocol: it broke the protocol). */
  upstreamEnded(appId: string, failure: UpstreamFailure): void {
    this.#upstreamEnds.inc({ app: appId, failure });
  }

  /** A stdio upstream child was started again after its predecessor ended. */
  upstreamRestarted(appId: string): void {
    this.#upstreamRestarts.inc({ app: appId });
  }

  /** An attempt to start an ended stdio upstream child again failed (another follows). */
  upstreamRestartFailed(appId: string): void {
    this.#upstreamRestartFailures.inc({ app: appId });
  }

  decided(appId: string, decision: string): void {
    this.#decisions.inc({ app: appId, decision });
  }

  /** One step's duration, in milliseconds (as performance.now() differences come). */
  step(step: CallStep, ms: number): void {
    this.#stepSeconds.observe(step, ms / 1000);
  }

  completed(appId: string, outcome: ToolCallOutcome, durationMs: number): void {
    this.#calls.inc({ app: appId, outcome });
    this.#callSeconds.observe(outcome, durationMs / 1000);
  }

  rateLimited(reason: RateLimitRefusal): void {
    this.#rateLimitRefusals.inc({ reason });
  }

  toolBlocked(appId: string): void {
    this.#toolBlocks.inc({ app: appId });
  }

  auditRefused(): void {
    this.#auditRefusals.inc();
  }

  redacted(direction: 'arguments' | 'result', counts: Record<string, number> | undefined): void {
    if (!counts) return;
    for (const [detector, count] of Object.entries(counts))
      if (count > 0) this.#redactions.inc({ detector, direction }, count);
  }
}
