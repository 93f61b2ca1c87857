import { fakes } from './fixtures.ts';
import { scanJson } from './scan.ts';

// DLP micro-benchmark: ns per KB of JSON for a redact scan, beside its anchor, JSON.stringify of
// the same value (work the gateway already does for every result). Run: pnpm bench:dlp

const print = (...cells: string[]) => process.stdout.write(`${cells.join(' ')}\n`);

const words = 'the quick brown fox jumps over the lazy dog while the gateway audits every call'.split(' ');
function prose(bytes: number, seed: number): string {
  let out = '';
  let i = seed;
  while (out.length < bytes) out += `${words[i++ % words.length]} `;
  return out;
}

function toolResult(kb: number, withFindings: boolean): unknown {
  const records = Array.from({ length: Math.max(1, Math.round(kb * 4)) }, (_, i) => ({
    id: `rec-${i}`,
    updated: '2026-11-28T13:23:46Z',
    digest: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    note: prose(120, i),
    ...(withFindings && i % 16 === 0 ? { contact: fakes.email, key: fakes.awsAccessKey } : {}),
  }));
  return { content: [{ type: 'text', text: JSON.stringify(records) }], structuredContent: { records } };
}

function base64Blob(kb: number): unknown {
  const bytes = Buffer.alloc(kb * 768);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 2654435761) >>> 24;
  return { content: [{ type: 'text', text: bytes.toString('base64') }] };
}

function measure(fn: () => void, minMs = 400): number {
  for (let i = 0; i < 20; i++) fn(); // warm up the JIT
  let iterations = 0;
  const started = process.hrtime.bigint();
  let elapsed = 0n;
  while (elapsed < BigInt(minMs) * 1_000_000n) {
    for (let i = 0; i < 10; i++) fn();
    iterations += 10;
    elapsed = process.hrtime.bigint() - started;
  }
  return Number(elapsed) / iterations;
}

/** Typical tool-call arguments: a few short fields, one free-text body. */
function toolArguments(bodyBytes: number, withSecret: boolean): unknown {
  return {
    repository: 'acme/api',
    path: 'src/index.ts',
    branch: 'main',
    labels: ['bug', 'triage'],
    body: prose(bodyBytes, 3) + (withSecret ? ` token ${fakes.githubToken}` : ''),
  };
}

// The gateway's argument inspection with the default write modes (secrets block, personal allow):
// a report-only scan for secrets, which stops at the decision and never copies.
const secretsOnly = { kinds: new Set(['secret'] as const) };

const workloads: [string, unknown, 'redact' | 'block'][] = [
  ['1 KB tool result, clean', toolResult(1, false), 'redact'],
  ['16 KB tool result, clean', toolResult(16, false), 'redact'],
  ['16 KB tool result, 1 finding pair per 16 records', toolResult(16, true), 'redact'],
  ['64 KB base64 blob (adversarial)', base64Blob(64), 'redact'],
  ['arguments, 0.2 KB, clean (secrets, block)', toolArguments(80, false), 'block'],
  ['arguments, 4 KB, one token (secrets, block)', toolArguments(4000, true), 'block'],
];

print(
  'workload'.padEnd(50),
  'KB'.padStart(6),
  'dlp µs'.padStart(8),
  'dlp ns/KB'.padStart(12),
  'stringify ns/KB'.padStart(16),
  'ratio'.padStart(7),
);
for (const [name, value, mode] of workloads) {
  const kb = Buffer.byteLength(JSON.stringify(value)) / 1024;
  const dlp = measure(() => scanJson(value, mode, mode === 'block' ? secretsOnly : {}));
  const anchor = measure(() => JSON.stringify(value));
  print(
    name.padEnd(50),
    kb.toFixed(1).padStart(6),
    (dlp / 1000).toFixed(1).padStart(8),
    (dlp / kb).toFixed(0).padStart(12),
    (anchor / kb).toFixed(0).padStart(16),
    `${(dlp / anchor).toFixed(1)}x`.padStart(7),
  );
}
