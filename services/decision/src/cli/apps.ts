import type { AppTransport } from '@portcullis/contracts';
import type { AppSummary, ToolChange } from '../app-connections.ts';
import { callApi } from './api-client.ts';

/** `portcullis directory apps …`: app registration and tool pins, through the decision service's API. */

export const appsUsage = `against the decision service (PORTCULLIS_API_URL, PORTCULLIS_API_TOKEN):
  apps list [--json]        apps with their connection, pinned tools and pending tool changes
  apps register <id> (--url URL | --command CMD [--arg A]... [--env NAME=VALUE]... [--cwd DIR])
                [--name NAME]
                            connect to the upstream, list its tools and pin them all (again);
                            --name creates the app if it does not exist; use --arg=-x for dashes
  apps tool-changes <id> [--all] [--json]
                            tool definitions brokers saw that differ from their pin
  apps approve-tool <id> <tool> <fingerprint>
                            pin a pending definition; brokers unblock the tool`;

export interface AppsOptions {
  json?: boolean | undefined;
  all?: boolean | undefined;
  url?: string | undefined;
  command?: string | undefined;
  arg?: string[] | undefined;
  env?: string[] | undefined;
  cwd?: string | undefined;
  name?: string | undefined;
}

/** Runs one apps subcommand; returns the exit code (2 for a usage error). */
export async function runApps(args: string[], options: AppsOptions): Promise<number> {
  const [subcommand, id, ...rest] = args;
  const fail = (message: string) => {
    console.error(`portcullis directory apps: ${message}\n\n${appsUsage}`);
    return 2;
  };
  switch (subcommand) {
    case 'list': {
      const { apps } = (await callApi('GET', '/v1/apps')) as { apps: AppSummary[] };
      if (options.json) console.log(JSON.stringify(apps, null, 2));
      else for (const app of apps) console.log(describeApp(app));
      return 0;
    }
    case 'register': {
      if (!id) return fail('register needs an app id');
      const transport = transportOf(options);
      if (typeof transport === 'string') return fail(transport);
      const app = (await callApi('PUT', `/v1/apps/${encodeURIComponent(id)}/connection`, {
        transport,
        ...(options.name ? { name: options.name } : {}),
      })) as AppSummary & { rejectedTools: { name: string; reason: string }[] };
      if (options.json) console.log(JSON.stringify(app, null, 2));
      else {
        console.log(describeApp(app));
        for (const [name, pin] of Object.entries(app.tools)) console.log(`  ${name}  ${pin.fingerprint}`);
        for (const tool of app.rejectedTools)
          console.error(`  not pinned (stays blocked): ${tool.name}: ${tool.reason}`);
      }
      return 0;
    }
    case 'tool-changes': {
      if (!id) return fail('tool-changes needs an app id');
      const { changes } = (await callApi(
        'GET',
        `/v1/apps/${encodeURIComponent(id)}/tool-changes${options.all ? '?all=true' : ''}`,
      )) as { changes: ToolChange[] };
      if (options.json) console.log(JSON.stringify(changes, null, 2));
      else if (changes.length === 0) console.log(`app ${id}: no pending tool changes`);
      else
        for (const change of changes)
          console.log(
            `${change.tool}  ${change.status}  pinned=${change.pinnedFingerprint ?? '(none: new tool)'}\n` +
              `  observed=${change.observedFingerprint} by ${change.reportedBy} at ${change.lastSeenAt}\n` +
              `  definition=${JSON.stringify(change.definition)}`,
          );
      return 0;
    }
    case 'approve-tool': {
      const [tool, fingerprint] = rest;
      if (!id || !tool || !fingerprint) return fail('approve-tool needs <id> <tool> <fingerprint>');
      await callApi('POST', `/v1/apps/${encodeURIComponent(id)}/tools/${encodeURIComponent(tool)}/approve`, {
        fingerprint,
      });
      console.log(`app ${id}: tool ${tool} pinned to ${fingerprint}`);
      return 0;
    }
    default:
      return fail(subcommand ? `unknown subcommand ${subcommand}` : 'missing subcommand');
  }
}

/** The transport the flags describe, or what is wrong with them. */
export function transportOf(options: AppsOptions): AppTransport | string {
  if (options.url && options.command) return 'give either --url or --command, not both';
  if (options.url) return { type: 'http', url: options.url };
  if (!options.command) return 'register needs --url or --command';
  const env: Record<string, string> = {};
  for (const pair of options.env ?? []) {
    const at = pair.indexOf('=');
    if (at <= 0) return `--env ${pair}: expected NAME=VALUE`;
    env[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return {
    type: 'stdio',
    command: options.command,
    args: options.arg ?? [],
    env,
    ...(options.cwd ? { cwd: options.cwd } : {}),
  };
}

function describeApp(app: AppSummary): string {
  const transport = app.connection?.transport;
  const where = !transport
    ? 'no connection'
    : transport.type === 'http'
      ? transport.url
      : `stdio: ${[transport.command, ...transport.args].join(' ')}`;
  return `${app.id} (${app.name}): ${where}; ${Object.keys(app.tools).length} tools pinned; ${app.pendingChanges} pending changes`;
}
