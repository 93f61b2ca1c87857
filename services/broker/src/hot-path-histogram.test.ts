import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { HotPathHistogram } from './hot-path-histogram.ts';

const buckets = [0.0001, 0.001, 0.01, 0.1, 1];
const observations: [string, number][] = [
  ['policy', 0.00005],
  ['policy', 0.0001], // on a bound: counted in that bucket (le is "less or equal")
  ['audit', 0.0004],
  ['audit', 0.02],
  ['audit', 3], // beyond the last bound: +Inf only
  ['policy', 0.5],
];

/** The series lines of one registry's text export, sorted (label order aside, the same format). */
async function series(registry: Registry): Promise<string[]> {
  const text = await registry.metrics();
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const [, name, labels, value] = /^(\w+)\{(.*)\} (\S+)$/.exec(line) ?? [];
      return `${name}{${(labels ?? '').split(',').sort().join(',')}} ${value}`;
    })
    .sort();
}

test("exports the same series as prom-client's Histogram for the same observations", async () => {
  const ours = new Registry();
  ours.setDefaultLabels({ service: 'broker' });
  const histogram = new HotPathHistogram({
    name: 'steps_seconds',
    help: 'steps',
    labelName: 'step',
    labelValues: ['policy', 'audit', 'upstream'],
    buckets,
    registry: ours,
  });
  const reference = new Registry();
  reference.setDefaultLabels({ service: 'broker' });
  const theirs = new Histogram({
    name: 'steps_seconds',
    help: 'steps',
    labelNames: ['step'],
    buckets,
    registers: [reference],
  });
  for (const [step, seconds] of observations) {
    histogram.observe(step as 'policy' | 'audit', seconds);
    theirs.observe({ step }, seconds);
  }
  theirs.zero({ step: 'upstream' }); // prom-client shows a label value only once used or zeroed
  assert.deepEqual(await series(ours), await series(reference));
  assert.ok((await series(ours)).includes('steps_seconds_count{service="broker",step="audit"} 3'));
});

test('an unknown label value or a non-finite duration is ignored, never thrown on the hot path', async () => {
  const registry = new Registry();
  const histogram = new HotPathHistogram({
    name: 'x_seconds',
    help: 'x',
    labelName: 'step',
    labelValues: ['policy'],
    buckets,
    registry,
  });
  histogram.observe('other' as 'policy', 1);
  histogram.observe('policy', Number.NaN);
  assert.ok((await series(registry)).includes('x_seconds_count{step="policy"} 0'));
});
