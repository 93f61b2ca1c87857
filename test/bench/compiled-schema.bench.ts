import { randomUUID } from 'node:crypto';
import { compileSchema } from '@portcullis/compiled-schema';
import { AuditEvent } from '@portcullis/contracts';
import { PolicyResult } from '@portcullis/policy-engine';

// Compiled-schema benchmark: what one check costs on the broker's per-call path — its two audit
// events (durable-audit.ts `publish`) and the policy's result (engine.ts `decide`) — through the
// compiled validator (@portcullis/compiled-schema, ADR 0044) beside its anchor, zod's own parse of
// the same value, in µs per call. The rows marked `refused` are malformed values: the compiled
// path then runs zod after its own check, so it costs slightly more than zod alone.
// Run: pnpm bench:compiled-schema

const print = (...cells: string[]) => process.stdout.write(`${cells.join(' ')}\n`);
const ROUNDS = 7;
const ITERATIONS = 50_000;

const envelope = () => ({
  version: 1 as const,
  eventId: randomUUID(),
  occurredAt: new Date().toISOString(),
  callId: randomUUID(),
  source: { service: 'broker', instanceId: 'broker-7f9c' },
});
const dlp = () => ({
  arguments: { secrets: 'redact', personal: 'allow' },
  results: { secrets: 'block', personal: 'redact' },
});
// As the gateway builds them (services/broker/src/gateway/enforcement.ts), each call its own.
const requested = () => ({
  type: 'tool_call.requested',
  ...envelope(),
  agent: { id: 'agt_01HZY', name: 'billing-agent', owner: 'alice@example.com' },
  app: { id: 'demo' },
  tool: { name: 'read_record' },
  actionClass: 'read',
  argumentsDigest: randomUUID().replaceAll('-', '').repeat(2),
  decision: {
    decisionId: randomUUID(),
    outcome: 'allow',
    reasons: ['allowed'],
    policyRevision: '9f86d081884c7d65',
    obligations: { rateLimitClass: 'standard', redact: [], dlp: dlp() },
  },
});
const completed = () => ({
  type: 'tool_call.completed',
  ...envelope(),
  outcome: 'succeeded',
  durationMs: Math.random(),
  redactions: { email: 1 },
});
// As the bundle's decision entrypoint returns it (rego/portcullis/authz), fresh from opa-wasm.
const policyResult = () => ({
  outcome: 'allow',
  allow: true,
  reasons: ['allowed'],
  approvers: [],
  action_class: 'read',
  visible: true,
  obligations: { rate_limit_class: 'standard', redact: [], dlp: dlp() },
});

const auditEvents = compileSchema(AuditEvent);
const policyResults = compileSchema(PolicyResult, { strip: 'in-place' });

/** Distinct values, few enough to stay in cache, as the event the broker just built is. */
const POOL = 64;

/**
 * Median µs per check over ROUNDS rounds of ITERATIONS checks (after a warm-up round), cycling
 * through POOL distinct values made by `make` (new ids and times, as the broker's are).
 */
function microseconds(make: () => unknown, check: (value: unknown) => unknown): number {
  const values = Array.from({ length: POOL }, make);
  const rounds: number[] = [];
  for (let round = 0; round <= ROUNDS; round++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < ITERATIONS; i++) sink = check(values[i % POOL]);
    const elapsed = Number(process.hrtime.bigint() - start) / 1000 / ITERATIONS;
    if (round > 0) rounds.push(elapsed);
  }
  rounds.sort((a, b) => a - b);
  return rounds[Math.floor(rounds.length / 2)]!;
}
/** Keeps results alive so the optimizer cannot drop the work. */
let sink: unknown;
process.on('exit', () => sink === Symbol.for('never') && print(''));

const refusing = (check: (value: unknown) => unknown) => (value: unknown) => {
  try {
    return check(value);
  } catch (error) {
    return error; // refused, as expected
  }
};

const badRequested = () => ({ ...requested(), argumentsDigest: 'x' });
const badResult = () => ({ ...policyResult(), reasons: [] });
const every = (make: () => unknown, accepts: (value: unknown) => boolean) =>
  Array.from({ length: 100 }, make).every(accepts);

const rows: [string, () => unknown, boolean, (value: unknown) => unknown, (value: unknown) => unknown][] = [
  [
    'audit tool_call.requested',
    requested,
    every(requested, auditEvents.accepts),
    (v) => AuditEvent.parse(v),
    (v) => auditEvents.parse(v),
  ],
  [
    'audit tool_call.completed',
    completed,
    every(completed, auditEvents.accepts),
    (v) => AuditEvent.parse(v),
    (v) => auditEvents.parse(v),
  ],
  [
    'policy result',
    policyResult,
    every(policyResult, policyResults.accepts),
    (v) => PolicyResult.safeParse(v),
    (v) => policyResults.safeParse(v),
  ],
  [
    'audit requested, refused',
    badRequested,
    false,
    refusing((v) => AuditEvent.parse(v)),
    refusing((v) => auditEvents.parse(v)),
  ],
  [
    'policy result, refused',
    badResult,
    false,
    (v) => PolicyResult.safeParse(v),
    (v) => policyResults.safeParse(v),
  ],
];

print(
  'value'.padEnd(28),
  'fast path',
  'zod µs'.padStart(8),
  'compiled µs'.padStart(12),
  'zod/compiled'.padStart(13),
);
for (const [name, make, fast, zod, compiled] of rows) {
  const zodUs = microseconds(make, zod);
  const compiledUs = microseconds(make, compiled);
  print(
    name.padEnd(28),
    (fast ? 'yes' : 'no').padEnd(9),
    zodUs.toFixed(2).padStart(8),
    compiledUs.toFixed(2).padStart(12),
    `${(zodUs / compiledUs).toFixed(1)}×`.padStart(13),
  );
}
