import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { OAuthClientId } from '@portcullis/contracts';
import { createPool, migrate } from '@portcullis/db';
import { createLogger } from '@portcullis/runtime';
import { z } from 'zod';
import { appsUsage, runApps } from './cli/apps.ts';
import { DirectorySeed, DirectoryStore } from './directory-store.ts';
import { readCliEnv } from './env.ts';
import { DIRECTORY_SCHEMA, MIGRATIONS_DIR } from './schema.ts';
import { listUpstreamTools } from './upstream-tools.ts';

const usage = `usage: portcullis directory <command>

against the database (DATABASE_URL):
  seed <file.json>          apply a directory seed (apps, agents, entitlements); idempotent; an
                            app with a connection has its tools listed and pinned from here
  issue-key <agent-name>    issue a new agent key and print it once
  revoke-key <agent-name> <key-id>
                            revoke one key (the id is the part after pcak_ and before the next _)
  oauth-clients <agent-name> [client-id …]
                            set the OAuth client ids whose access tokens authenticate as the
                            agent (replaces the list; none given = remove them all)
  suspend <agent-name>      refuse every call of this agent from now on
  activate <agent-name>     lift a suspension

${appsUsage}`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
      all: { type: 'boolean', default: false },
      url: { type: 'string' },
      command: { type: 'string' },
      arg: { type: 'string', multiple: true },
      env: { type: 'string', multiple: true },
      cwd: { type: 'string' },
      name: { type: 'string' },
    },
  });
  const [command, argument] = positionals;
  if (values.help || !command) {
    console.log(usage);
    return command || values.help ? 0 : 2;
  }
  if (command === 'apps') return runApps(positionals.slice(1), values);
  if (!argument) {
    console.error(`portcullis directory ${command}: missing argument\n\n${usage}`);
    return 2;
  }
  const env = readCliEnv();
  const logger = createLogger({ service: 'cli', level: 'warn', destination: process.stderr });
  await migrate({ databaseUrl: env.DATABASE_URL, schema: DIRECTORY_SCHEMA, dir: MIGRATIONS_DIR, logger });
  const pool = createPool({
    connectionString: env.DATABASE_URL,
    applicationName: 'portcullis-cli',
    logger,
    max: 2,
  });
  const store = new DirectoryStore(pool);
  try {
    switch (command) {
      case 'seed': {
        const seed = DirectorySeed.parse(JSON.parse(readFileSync(argument, 'utf8')));
        const agents = await store.applySeed(seed, `cli:${userInfo().username}`, (transport) =>
          listUpstreamTools(transport, { timeoutMs: env.UPSTREAM_LIST_TIMEOUT_MS }),
        );
        for (const agent of agents)
          console.log(`agent ${agent.name} (${agent.id}) owner=${agent.owner} state=${agent.state}`);
        return 0;
      }
      case 'issue-key': {
        const { agent, key, keyId } = await store.issueKey(argument);
        if (values.json) console.log(JSON.stringify({ agent: agent.name, agentId: agent.id, keyId, key }));
        else console.log(`agent key for ${agent.name} (shown once, store it now):\n${key}`);
        return 0;
      }
      case 'revoke-key': {
        const keyId = positionals[2];
        if (!keyId) {
          console.error(`portcullis directory revoke-key: missing key id\n\n${usage}`);
          return 2;
        }
        await store.revokeKey(argument, keyId);
        console.log(`agent ${argument}: key ${keyId} revoked`);
        return 0;
      }
      case 'oauth-clients': {
        const clientIds = positionals.slice(2);
        const invalid = clientIds.find((id) => !OAuthClientId.safeParse(id).success);
        if (invalid !== undefined) {
          console.error(`portcullis directory oauth-clients: not a client id: ${JSON.stringify(invalid)}`);
          return 2;
        }
        await store.setOAuthClients(argument, clientIds);
        console.log(
          `agent ${argument}: OAuth clients ${clientIds.length > 0 ? [...new Set(clientIds)].sort().join(', ') : '(none)'}`,
        );
        return 0;
      }
      case 'suspend':
      case 'activate':
        await store.setAgentState(argument, command === 'suspend' ? 'suspended' : 'active');
        console.log(`agent ${argument}: ${command === 'suspend' ? 'suspended' : 'active'}`);
        return 0;
      default:
        console.error(`portcullis directory: unknown command ${command}\n\n${usage}`);
        return 2;
    }
  } finally {
    await pool.end();
  }
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (error) {
  const message =
    error instanceof z.ZodError ? `invalid seed file:\n${z.prettifyError(error)}` : (error as Error).message;
  console.error(`portcullis directory: ${message}`);
  process.exitCode = 1;
}
