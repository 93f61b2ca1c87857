import { collectDefaultMetrics, Registry } from 'prom-client';

/** A per-service Prometheus registry with Node's default metrics, labelled with the service name. */
export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: 'portcullis_' });
  return registry;
}
