import type { Metric, Registry } from 'prom-client';

/** One exported series, as prom-client's registry reads it from a metric's get(). */
interface ExportedValue {
  metricName: string;
  labels: Record<string, string | number>;
  value: number;
}

export interface HotPathHistogramOptions<Value extends string> {
  name: string;
  help: string;
  /** The one label, and every value it can take: fixed up front, so nothing is looked up by name. */
  labelName: string;
  labelValues: readonly Value[];
  /** Upper bounds, ascending (seconds); +Inf is implied. */
  buckets: readonly number[];
  registry: Registry;
}

/**
 * A Prometheus histogram for observations on the broker's hot path, with one label whose values
 * are known up front. prom-client's Histogram hashes the labels and keys its bucket counts by the
 * bound's string form on every observation: in the broker, three observations a call took ≈ 17 µs
 * of main thread (1.2 % of it, `--cpu-prof` at 500 calls/s). Here an observation is a search over
 * the bounds and three additions in typed arrays. The registry exports it like its own metrics
 * (same `get()` shape: `_bucket` with `le`, `_sum`, `_count`).
 */
export class HotPathHistogram<Value extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram' as const;
  readonly aggregator = 'sum' as const;
  readonly #labelName: string;
  readonly #labelValues: readonly Value[];
  readonly #bounds: Float64Array;
  /** Per label value: the count of each bucket (not cumulative), the last one for +Inf. */
  readonly #counts: Float64Array[];
  readonly #sums: Float64Array;
  readonly #index: Map<Value, number>;

  constructor(options: HotPathHistogramOptions<Value>) {
    this.name = options.name;
    this.help = options.help;
    this.#labelName = options.labelName;
    this.#labelValues = options.labelValues;
    this.#bounds = Float64Array.from(options.buckets);
    this.#counts = options.labelValues.map(() => new Float64Array(options.buckets.length + 1));
    this.#sums = new Float64Array(options.labelValues.length);
    this.#index = new Map(options.labelValues.map((value, i) => [value, i]));
    // The registry only reads name, help, type and get(): a plain object is enough. Cast because
    // its type names prom-client's own classes.
    options.registry.registerMetric(this as unknown as Metric);
  }

  observe(labelValue: Value, seconds: number): void {
    const at = this.#index.get(labelValue);
    if (at === undefined || !Number.isFinite(seconds)) return;
    const bounds = this.#bounds;
    let bucket = 0;
    while (bucket < bounds.length && seconds > (bounds[bucket] as number)) bucket++;
    (this.#counts[at] as Float64Array)[bucket]! += 1;
    this.#sums[at]! += seconds;
  }

  async get(): Promise<{
    name: string;
    help: string;
    type: 'histogram';
    values: ExportedValue[];
    aggregator: 'sum';
  }> {
    const values: ExportedValue[] = [];
    this.#labelValues.forEach((labelValue, at) => {
      const counts = this.#counts[at] as Float64Array;
      const labels = { [this.#labelName]: labelValue };
      let cumulative = 0;
      for (let bucket = 0; bucket < counts.length; bucket++) {
        cumulative += counts[bucket] as number;
        const le = bucket < this.#bounds.length ? (this.#bounds[bucket] as number) : '+Inf';
        values.push({ metricName: `${this.name}_bucket`, labels: { le, ...labels }, value: cumulative });
      }
      values.push({ metricName: `${this.name}_sum`, labels, value: this.#sums[at] as number });
      values.push({ metricName: `${this.name}_count`, labels, value: cumulative });
    });
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    for (const counts of this.#counts) counts.fill(0);
    this.#sums.fill(0);
  }
}
