import { readFile, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';

/**
 * One spool directory belongs to one process. Two brokers appending to, compacting and replaying
 * the same files would lose and duplicate audit events (a volume shared by mistake, two local
 * stacks on one directory), so opening a spool takes the directory: a lock file created
 * exclusively, naming the process. A lock whose process is gone — on this host, or a container
 * restarted with the same host name and pid — is taken over; one held by a live process, or by
 * another host (whose processes cannot be checked from here), refuses the open. (A lock naming
 * this very process counts as a previous life of it: the same pid after a container restart.)
 */
export class SpoolLockedError extends Error {
  readonly code = 'spool_locked';
  constructor(message: string) {
    super(message);
    this.name = 'SpoolLockedError';
  }
}

export const LOCK_FILE = 'owner.lock';

interface Owner {
  pid: number;
  host: string;
  since: string;
}

/** Takes the directory for this process; resolves with the function that gives it back. */
export async function takeOwnership(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  const me: Owner = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, JSON.stringify(me), { flag: 'wx', mode: 0o600 });
      return async () => {
        // Only our own lock: one taken over from us (we were thought gone) is not ours to remove.
        const owner = await readOwner(path);
        if (owner && owner.pid === me.pid && owner.host === me.host && owner.since === me.since)
          await rm(path, { force: true });
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const owner = await readOwner(path);
    // Taken over once at most: a second EEXIST means another process won the same race.
    if (attempt === 0 && isStale(owner, me)) {
      await rm(path, { force: true });
      continue;
    }
    throw new SpoolLockedError(
      `spool ${dir} belongs to ${owner ? `pid ${owner.pid} on ${owner.host} (since ${owner.since})` : 'another process'}: ` +
        `one spool directory serves one broker. If that broker is gone for good, delete ${path}.`,
    );
  }
}

async function readOwner(path: string): Promise<Owner | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<Owner>;
    if (typeof parsed.pid !== 'number' || typeof parsed.host !== 'string') return undefined;
    return { pid: parsed.pid, host: parsed.host, since: String(parsed.since ?? '?') };
  } catch {
    return undefined; // gone meanwhile, or torn by a crash while it was written
  }
}

function isStale(owner: Owner | undefined, me: Owner): boolean {
  if (!owner) return true;
  if (owner.host !== me.host) return false;
  // The same pid as ours is a previous life of this process (a restarted container): not held here.
  return owner.pid === me.pid || !isAlive(owner.pid);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
