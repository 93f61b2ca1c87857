import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { createPool } from '@portcullis/db';
import { createLogger } from '@portcullis/runtime';
import type pg from 'pg';
import { keyIdOf, parsePublicKey, parseSigningKey, publicKeyPem, writeCheckpoint } from './checkpoints.ts';
import { readCliEnv } from './env.ts';
import { allRows, DUMP_FILES, databaseSource, exportSource } from './ledger-source.ts';
import { maintainPartitions } from './maintenance.ts';
import { csvLine, queryView, VIEWS } from './query.ts';
import { DEFAULT_RETENTION_DAYS, verifyLedger } from './verify.ts';

const usage = `usage: portcullis ledger <command> [options]

commands:
  verify --public-key <pem> [--public-key <pem> …] [--export <dir>] [--retention-days <n>] [--json]
        recompute every hash chain and check every signed checkpoint (against the given keys,
        several across a key rotation), from the database
        (DATABASE_URL) or from a dump; exit 0 when intact, 1 naming the first broken link.
        A chain whose rows are gone counts as retired only if its day is older than the
        retention (default 400 days, the audit service's RETENTION_DAYS) by the newest checkpoint
  dump --out <dir>
        write a verifiable export: ${DUMP_FILES.rows}, ${DUMP_FILES.checkpoints}, ${DUMP_FILES.partitionLog}
  export --view <view> [--format csv|jsonl] [--agent <id>] [--user <id>] [--since <iso>]
         [--until <iso>] [--cursor <c>] [--limit <rows>] [--page-size <n>] [--out <file>]
        export an auditor view, oldest first, paged by cursor; when --limit stops early the next
        cursor is printed on stderr. views: ${Object.keys(VIEWS).join(', ')}
  keygen --out <dir>
        create an Ed25519 key pair: signing-key.pem (for AUDIT_SIGNING_KEY, mode 0600) and
        public-key.pem (for auditors, kept out of band)
  public-key
        print the public key of AUDIT_SIGNING_KEY (PEM) and its key id on stderr
  checkpoint
        sign a checkpoint of every chain head now (needs AUDIT_SIGNING_KEY)
  maintain [--days-ahead <n>] [--retention-days <n>]
        create partitions ahead and detach those older than the retention (at least 7 days)

environment:
  DATABASE_URL          Postgres connection string of the ledger
  AUDIT_SIGNING_KEY     Ed25519 private key (PKCS#8 PEM or base64 DER), for checkpoint and public-key`;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      json: { type: 'boolean', default: false },
      'public-key': { type: 'string', multiple: true },
      export: { type: 'string' },
      out: { type: 'string' },
      view: { type: 'string' },
      format: { type: 'string', default: 'jsonl' },
      agent: { type: 'string' },
      user: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      cursor: { type: 'string' },
      limit: { type: 'string' },
      'page-size': { type: 'string', default: '1000' },
      'days-ahead': { type: 'string', default: '3' },
      'retention-days': { type: 'string', default: String(DEFAULT_RETENTION_DAYS) },
    },
  });
  const [command] = positionals;
  if (values.help || !command) {
    console.log(usage);
    return command || values.help ? 0 : 2;
  }
  const env = readCliEnv();
  const withPool = async <T>(fn: (pool: pg.Pool) => Promise<T>): Promise<T> => {
    if (!env.DATABASE_URL) throw new UsageError('DATABASE_URL is not set');
    const logger = createLogger({ service: 'cli', level: 'warn', destination: process.stderr });
    const pool = createPool({
      connectionString: env.DATABASE_URL,
      applicationName: 'portcullis-ledger-cli',
      logger,
      max: 2,
    });
    try {
      return await fn(pool);
    } finally {
      await pool.end();
    }
  };
  const required = (name: keyof typeof values): string => {
    const value = values[name];
    if (typeof value !== 'string' || value === '') throw new UsageError(`--${name} is required`);
    return value;
  };
  const count = (name: 'limit' | 'page-size' | 'days-ahead' | 'retention-days'): number => {
    const value = Number(values[name]);
    if (!Number.isInteger(value) || value < 0) throw new UsageError(`--${name} must be a whole number`);
    return value;
  };

  switch (command) {
    case 'verify': {
      const files = values['public-key'] ?? [];
      if (files.length === 0) throw new UsageError('--public-key is required');
      const publicKey = await Promise.all(
        files.map(async (file) => parsePublicKey(await readFile(file, 'utf8'))),
      );
      const options = { retentionDays: count('retention-days') };
      const report = values.export
        ? await verifyLedger(await exportSource(values.export), publicKey, options)
        : await withPool((pool) => verifyLedger(databaseSource(pool), publicKey, options));
      if (values.json) console.log(JSON.stringify(report, null, 2));
      else {
        console.log(
          `${report.ok ? 'OK' : 'BROKEN'}: ${report.rows} rows in ${report.chains} chains, ${report.checkpoints} checkpoints, ` +
            `${report.unsignedRows} rows after the newest checkpoint, ${report.retiredChains} chains retired by retention`,
        );
        if (report.firstProblem) {
          const p = report.firstProblem;
          console.log(
            `first broken link: ${p.kind}${p.chainId ? ` chain=${p.chainId}` : ''}${p.seq !== undefined ? ` seq=${p.seq}` : ''}` +
              `${p.eventId ? ` event=${p.eventId}` : ''}${p.checkpointId !== undefined ? ` checkpoint=${p.checkpointId}` : ''}\n  ${p.detail}`,
          );
          for (const other of report.problems.slice(1))
            console.log(`also: ${other.kind} ${other.chainId ?? ''} ${other.seq ?? ''} — ${other.detail}`);
        }
      }
      return report.ok ? 0 : 1;
    }
    case 'dump': {
      const dir = required('out');
      await mkdir(dir, { recursive: true });
      return withPool(async (pool) => {
        const source = databaseSource(pool);
        // Checkpoints before rows: every row a checkpoint attests was written before it, so the
        // dump holds them all; rows written during the dump only show as not yet signed. Read the
        // other way round, a live ledger would look truncated to `verify --export`.
        const checkpoints = await source.checkpoints();
        let rows = 0;
        await writeLines(join(dir, DUMP_FILES.rows), async (out) => {
          for await (const row of allRows(pool)) {
            rows++;
            await write(out, `${JSON.stringify(row)}\n`);
          }
        });
        await writeFile(
          join(dir, DUMP_FILES.checkpoints),
          checkpoints.map((c) => `${JSON.stringify(c)}\n`).join(''),
        );
        const log = await pool.query<{
          logged_at: Date;
          action: string;
          partition_name: string;
          day: string;
        }>(
          "SELECT logged_at, action, partition_name, to_char(day, 'YYYY-MM-DD') AS day FROM audit.partition_log ORDER BY logged_at, partition_name",
        );
        await writeFile(
          join(dir, DUMP_FILES.partitionLog),
          log.rows.map((r) => `${JSON.stringify(r)}\n`).join(''),
        );
        console.error(`dumped ${rows} rows and ${checkpoints.length} checkpoints to ${dir}`);
        return 0;
      });
    }
    case 'export': {
      const view = required('view');
      if (!(view in VIEWS))
        throw new UsageError(`unknown view ${view}; one of ${Object.keys(VIEWS).join(', ')}`);
      const format = values.format;
      if (format !== 'csv' && format !== 'jsonl') throw new UsageError('--format must be csv or jsonl');
      const limit = values.limit === undefined ? Number.POSITIVE_INFINITY : count('limit');
      const pageSize = Math.max(1, Math.min(10000, count('page-size')));
      return withPool(async (pool) => {
        const run = async (out: Writable) => {
          let cursor = values.cursor;
          let written = 0;
          let header: string[] | undefined;
          for (;;) {
            const page = await queryView(pool, {
              view,
              agent: values.agent,
              user: values.user,
              since: values.since,
              until: values.until,
              cursor,
              limit: Math.min(pageSize, limit - written),
            });
            for (const item of page.items) {
              if (format === 'jsonl') await write(out, `${JSON.stringify(item)}\n`);
              else {
                if (!header) {
                  header = Object.keys(item);
                  await write(out, `${csvLine(header)}\r\n`);
                }
                await write(out, `${csvLine(header.map((k) => item[k]))}\r\n`);
              }
            }
            written += page.items.length;
            cursor = page.nextCursor ?? undefined;
            if (!cursor) return;
            if (written >= limit) {
              console.error(`next-cursor: ${cursor}`);
              return;
            }
          }
        };
        if (values.out) await writeLines(values.out, run);
        else await run(process.stdout);
        return 0;
      });
    }
    case 'keygen': {
      const dir = required('out');
      await mkdir(dir, { recursive: true });
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      await writeFile(join(dir, 'signing-key.pem'), privateKey.export({ format: 'pem', type: 'pkcs8' }), {
        mode: 0o600,
        flag: 'wx',
      });
      await writeFile(join(dir, 'public-key.pem'), publicKey.export({ format: 'pem', type: 'spki' }), {
        flag: 'wx',
      });
      console.error(
        `key ${keyIdOf(publicKey)}: ${join(dir, 'signing-key.pem')} (secret), ${join(dir, 'public-key.pem')}`,
      );
      return 0;
    }
    case 'public-key': {
      if (!env.AUDIT_SIGNING_KEY) throw new UsageError('AUDIT_SIGNING_KEY is not set');
      const key = parseSigningKey(env.AUDIT_SIGNING_KEY);
      process.stdout.write(publicKeyPem(key));
      console.error(`key id ${keyIdOf(key)}`);
      return 0;
    }
    case 'checkpoint': {
      if (!env.AUDIT_SIGNING_KEY) throw new UsageError('AUDIT_SIGNING_KEY is not set');
      const key = parseSigningKey(env.AUDIT_SIGNING_KEY);
      return withPool(async (pool) => {
        const written = await writeCheckpoint(pool, key);
        console.log(
          written
            ? `checkpoint ${written.checkpointId}: ${written.body.heads.length} chains`
            : 'nothing new to sign',
        );
        return 0;
      });
    }
    case 'maintain': {
      const ahead = count('days-ahead');
      const retention = count('retention-days');
      return withPool(async (pool) => {
        for (const row of await maintainPartitions(pool, ahead, retention))
          console.log(`${row.action} ${row.partition_name}`);
        return 0;
      });
    }
    default:
      throw new UsageError(`unknown command ${command}`);
  }
}

async function writeLines(path: string, fn: (out: Writable) => Promise<void>): Promise<void> {
  const out = createWriteStream(path, { encoding: 'utf8' });
  try {
    await fn(out);
  } finally {
    out.end();
    await once(out, 'close');
  }
}

/** Writes with back-pressure, so exporting a large view does not buffer it all in memory. */
async function write(out: Writable, text: string): Promise<void> {
  if (!out.write(text)) await once(out, 'drain');
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    console.error(`portcullis ledger: ${error.message}\n\n${usage}`);
    process.exitCode = 2;
  } else {
    console.error(`portcullis ledger: ${(error as Error).message}`);
    process.exitCode = 3;
  }
}
