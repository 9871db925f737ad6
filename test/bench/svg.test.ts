import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { cdfPlot, escapeXml, niceTicks, timelinePlot, writePlot } from '../../bench/svg.ts';

void t.test('niceTicks gives round steps that cover the range', (t) => {
  t.same(niceTicks(0, 10, 5), [0, 2, 4, 6, 8, 10]);
  t.same(niceTicks(0, 1, 4), [0, 0.5, 1]);
  const ticks = niceTicks(3, 97, 5);
  t.ok(ticks[0]! >= 3 && ticks.at(-1)! <= 97 + 1e-9, `ticks ${ticks.join(',')} inside the range`);
  t.ok(ticks.every((v, i) => i === 0 || Math.abs(v - ticks[i - 1]! - (ticks[1]! - ticks[0]!)) < 1e-9), 'evenly spaced');
  t.same(niceTicks(5, 5), [5], 'an empty range is one tick');
  t.end();
});

void t.test('a CDF plot has one curve per series and one dot per value, names escaped', (t) => {
  const svg = cdfPlot({ title: 'Time <to> durable', xLabel: 'seconds', series: [{ name: 'a & b', values: [0.2, 0.5, 0.4] }, { name: 'c', values: [5, 7] }], logX: true });
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.match(svg, /<\/svg>\n$/);
  t.equal((svg.match(/<path /g) ?? []).length, 2, 'two curves');
  t.equal((svg.match(/<circle /g) ?? []).length, 5, 'five runs');
  t.match(svg, /Time &lt;to&gt; durable/);
  t.match(svg, /a &amp; b \(3 runs\)/);
  t.notMatch(svg, /NaN|Infinity/, 'every coordinate is a number');
  t.end();
});

void t.test('a timeline draws every span on its row, the markers and the band', (t) => {
  const svg = timelinePlot({
    title: 'drain',
    xLabel: 'seconds after the notice',
    spans: [
      { row: 'write', start: 0, end: 3, label: '1 GiB' },
      { row: 'upload', start: 0, end: 5 },
      { row: 'write', start: 6, end: 7 },
    ],
    markers: [{ at: 0, label: 'notice' }, { at: 30, label: 'deadline', dashed: true }],
    band: { from: 20, to: 30, label: 'safety margin' },
  });
  t.equal((svg.match(/<rect [^>]*rx="2"/g) ?? []).length, 3, 'three bars');
  t.equal((svg.match(/>write</g) ?? []).length, 1, 'one row label per row');
  t.match(svg, />notice</);
  t.match(svg, />deadline</);
  t.match(svg, /stroke-dasharray="5 3"/);
  t.match(svg, />safety margin</);
  t.notMatch(svg, /NaN|Infinity/);
  t.end();
});

void t.test('writePlot writes the file and names it relative to the plot folder\'s parent', (t) => {
  const dir = path.join(t.testdir({}), 'bench');
  const rel = writePlot(dir, 'x.svg', '<svg/>');
  t.equal(rel, 'bench/x.svg');
  t.ok(existsSync(path.join(dir, 'x.svg')));
  t.equal(readFileSync(path.join(dir, 'x.svg'), 'utf8'), '<svg/>');
  t.equal(escapeXml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;');
  t.end();
});
