/**
 * How names the agent sees map to (app, upstream name). On the aggregate endpoint tools and prompts
 * are `<app>__<name>` and resource URIs get the app as a scheme prefix, `<app>+<uri>` (e.g.
 * `files+file:///etc/motd`): still a valid URI, reversible because app ids never contain `+` or
 * `__`, and templates keep working since only the scheme changes. On an app's own endpoint names
 * pass unchanged.
 *
 * Invariant: `resolve*` return undefined for anything that does not map to exactly one entitled
 * app and one well-formed upstream name, so a crafted name (path tricks, extra separators, control
 * characters, another app's prefix) can only ever miss, never reach a different app.
 */
export interface Namespace {
  readonly scope: 'aggregate' | 'app';
  /** Apps this namespace can reach (the aggregate: those the agent is entitled to). */
  toolName(appId: string, name: string): string;
  resolveName(exposed: string): { appId: string; name: string } | undefined;
  resourceUri(appId: string, uri: string): string;
  resolveUri(exposed: string): { appId: string; uri: string } | undefined;
}

const SEPARATOR = '__';
const APP_ID = /^[a-z][a-z0-9-]{0,62}$/;
/** Upstream tool and prompt names: printable, no whitespace or control characters, bounded. */
const UPSTREAM_NAME = /^[\x21-\x7e]{1,128}$/;
/** A URI scheme per RFC 3986, then anything but whitespace and control characters. */
const URI = /^[a-z][a-z0-9+.-]*:[^\s\p{Cc}]*$/iu;

export function aggregateNamespace(isApp: (appId: string) => boolean): Namespace {
  return {
    scope: 'aggregate',
    toolName: (appId, name) => `${appId}${SEPARATOR}${name}`,
    resolveName(exposed) {
      const at = exposed.indexOf(SEPARATOR);
      if (at <= 0) return undefined;
      const appId = exposed.slice(0, at);
      const name = exposed.slice(at + SEPARATOR.length);
      if (!APP_ID.test(appId) || !UPSTREAM_NAME.test(name) || !isApp(appId)) return undefined;
      return { appId, name };
    },
    resourceUri: (appId, uri) => `${appId}+${uri}`,
    resolveUri(exposed) {
      if (exposed.length > 4096) return undefined;
      const at = exposed.indexOf('+');
      if (at <= 0) return undefined;
      const appId = exposed.slice(0, at);
      const uri = exposed.slice(at + 1);
      if (!APP_ID.test(appId) || !URI.test(uri) || !isApp(appId)) return undefined;
      return { appId, uri };
    },
  };
}

export function appNamespace(appId: string): Namespace {
  return {
    scope: 'app',
    toolName: (_appId, name) => name,
    resolveName: (exposed) => (UPSTREAM_NAME.test(exposed) ? { appId, name: exposed } : undefined),
    resourceUri: (_appId, uri) => uri,
    resolveUri: (exposed) =>
      exposed.length <= 4096 && URI.test(exposed) ? { appId, uri: exposed } : undefined,
  };
}
