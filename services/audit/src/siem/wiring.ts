import { readFile } from 'node:fs/promises';
import type { Logger } from '@portcullis/runtime';
import type pg from 'pg';
import type { AuditEnv } from '../env.ts';
import { type SiemDestination, SiemExporter } from './exporter.ts';
import { SplunkHecDestination } from './splunk-hec.ts';
import { SyslogDestination } from './syslog.ts';

/** Starts one exporter per configured SIEM destination; none configured is fine. */
export async function startSiemExport(
  env: AuditEnv,
  pool: pg.Pool,
  logger: Logger,
): Promise<{ stop: () => Promise<void> }> {
  const destinations: SiemDestination[] = [];
  if (env.SIEM_HEC_URL && env.SIEM_HEC_TOKEN) {
    if (env.SIEM_HEC_URL.startsWith('http:'))
      logger.warn('SIEM_HEC_URL is http://: the HEC token and every event cross the network in clear text');
    destinations.push(
      new SplunkHecDestination({
        url: env.SIEM_HEC_URL,
        token: env.SIEM_HEC_TOKEN,
        index: env.SIEM_HEC_INDEX,
      }),
    );
  }
  if (env.SIEM_SYSLOG_URL) {
    const url = new URL(env.SIEM_SYSLOG_URL);
    const tls =
      url.protocol === 'tls:'
        ? { ca: env.SIEM_SYSLOG_CA_FILE ? await readFile(env.SIEM_SYSLOG_CA_FILE, 'utf8') : undefined }
        : undefined;
    destinations.push(new SyslogDestination({ host: url.hostname, port: Number(url.port || 6514), tls }));
  }
  const exporters = destinations.map(
    (destination) => new SiemExporter({ pool, destination, logger, intervalMs: env.SIEM_EXPORT_INTERVAL_MS }),
  );
  for (const exporter of exporters) exporter.start();
  if (exporters.length > 0)
    logger.info({ destinations: destinations.map((d) => d.name) }, 'SIEM export started');
  return { stop: async () => void (await Promise.all(exporters.map((e) => e.stop()))) };
}
