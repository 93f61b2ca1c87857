import assert from 'node:assert/strict';
import { test } from 'node:test';
import { csvLine } from './query.ts';

test('csvLine quotes per RFC 4180 and writes objects as JSON', () => {
  assert.equal(
    csvLine(['a', 'b,c', 'say "hi"', null, 3, ['x', 'y']]),
    'a,"b,c","say ""hi""",,3,"[""x"",""y""]"',
  );
  assert.equal(csvLine(['line\nbreak']), '"line\nbreak"');
});

test('csvLine defuses cells a spreadsheet would run as formulas', () => {
  assert.equal(
    csvLine(['=HYPERLINK("http://x")', '+1', '-2', '@SUM(A1)']),
    `"'=HYPERLINK(""http://x"")",'+1,'-2,'@SUM(A1)`,
  );
  // Numbers stay numbers.
  assert.equal(csvLine([-2]), '-2');
});
