// docs/BENCHMARKS.md and bench/results.json as a reader and a checking script see them.
import t from 'tap';
import { barPlot, mergeResults, renderMarkdown, type MachineInfo } from '../../bench/report.ts';
import { BENCHMARKS, loadBenchmark, parseBenchArgs } from '../../bench/run.ts';
import { figure, type BenchResult } from '../../bench/types.ts';

const machine: MachineInfo = { cpus: 2, cpuModel: 'Test CPU', memoryGiB: 24, node: '24.0.0', os: 'Linux' };

function result(id: string, wall: number[]): BenchResult {
  return {
    id,
    title: `Benchmark ${id}`,
    command: `npm run bench -- --only ${id}`,
    method: 'How it was measured.',
    cases: [
      {
        name: '1 GiB to the sink',
        subjects: [
          { name: 'stevedore', figures: [figure('wall time', 's', wall, 'lower')] },
          { name: 'rclone', version: '1.60.1-DEV', figures: [figure('wall time', 's', [6, 7, 8], 'lower')] },
        ],
        ratios: [{ figure: 'wall time', peer: 'rclone', ratio: 7 / 3 }],
        targets: [{ text: 'at least 1.5x faster than the fastest peer', met: true, detail: '2.33x' }, { text: 'within 80% of the ceiling', met: false, detail: '50%' }],
      },
    ],
    notes: 'Why the ceiling was missed.',
    plots: ['bench/upload-throughput.svg'],
  };
}

void t.test('the report shows medians with their spread, the ratios, the targets, the command and the plot', (t) => {
  const md = renderMarkdown(mergeResults(undefined, [result('upload', [2, 3, 4])], machine, new Date('2026-01-02T03:04:05Z')));
  t.match(md, /^# Benchmarks/);
  t.match(md, /## Benchmark upload/);
  t.match(md, /Command: `npm run bench -- --only upload`/);
  t.match(md, /\| stevedore \| {2}\| 3\.00 \(2\.00–4\.00\) \|/, 'median (min–max)');
  t.match(md, /\| rclone \| 1\.60\.1-DEV \| 7\.00 \(6\.00–8\.00\) \|/);
  t.match(md, /\| rclone \| 2\.33x \|/, 'the ratio to the peer');
  t.match(md, /MET: at least 1\.5x faster/);
  t.match(md, /MISSED: within 80% of the ceiling: 50%/);
  t.match(md, /\| Benchmark upload \| 1 GiB to the sink \| within 80% of the ceiling \| \*\*missed\*\* \|/, 'the summary lists every target');
  t.match(md, /!\[bench\/upload-throughput\.svg\]\(bench\/upload-throughput\.svg\)/);
  t.match(md, /### Notes\n\nWhy the ceiling was missed\./);
  t.match(md, /### 1 GiB to the sink\n\nMedian over 3 runs \(min–max in brackets\)\./);
  t.end();
});

void t.test('a case whose medians are over samples, not runs, says so', (t) => {
  const sampled = result('footprint', [2, 3, 4]);
  sampled.cases[0]!.mediansOver = 'One run; the median of the samples taken every 100 ms';
  const md = renderMarkdown(mergeResults(undefined, [sampled], machine, new Date('2026-01-02T03:04:05Z')));
  t.match(md, /### 1 GiB to the sink\n\nOne run; the median of the samples taken every 100 ms \(min–max in brackets\)\./);
  t.notMatch(md, /Median over/);
  t.end();
});

void t.test('a run of some benchmarks replaces only their records and keeps the report order', (t) => {
  const first = mergeResults(undefined, [result('restore', [1]), result('upload', [5])], machine, new Date('2026-01-01T00:00:00Z'));
  t.same(first.results.map((r) => r.id), ['upload', 'restore'], 'the issue\'s order');
  const second = mergeResults(first, [result('upload', [2])], machine, new Date('2026-01-02T00:00:00Z'));
  t.same(second.results.map((r) => [r.id, r.measured]), [['upload', '2026-01-02T00:00:00.000Z'], ['restore', '2026-01-01T00:00:00.000Z']]);
  t.equal(second.results[0]?.cases[0]?.subjects[0]?.figures[0]?.median, 2, 'the new figures');
  t.end();
});

void t.test('the report says how long each benchmark and the last run of all of them took', (t) => {
  const full = mergeResults(undefined, [{ ...result('upload', [2]), seconds: 421 }], machine, new Date('2026-01-01T00:00:00Z'), 905.4);
  t.same(full.fullRun, { finished: '2026-01-01T00:00:00.000Z', seconds: 905 });
  const md = renderMarkdown(full);
  t.match(md, /took 15 min 05 s/, 'the whole run');
  t.match(md, /Command: `npm run bench -- --only upload` \(measured 2026-01-01 00:00 UTC, took 7 min 01 s\)/, 'one benchmark');
  const partial = mergeResults(full, [result('restore', [1])], machine, new Date('2026-01-02T00:00:00Z'));
  t.same(partial.fullRun, full.fullRun, 'a run of some benchmarks keeps the last full run\'s duration');
  t.end();
});

void t.test('the bar plot is an SVG with one bar per subject and case', (t) => {
  const svg = barPlot({ title: 'T', unit: 'MiB/s', groups: [{ label: 'a', bars: [{ subject: 'stevedore', value: 100 }, { subject: 'rclone', value: 50 }] }, { label: 'b', bars: [{ subject: 'stevedore', value: 80 }] }] });
  t.match(svg, /^<svg /);
  t.equal((svg.match(/<\/title><\/rect>/g) ?? []).length, 3, 'three bars');
  t.match(svg, /stevedore: 100 MiB\/s/);
  t.end();
});

void t.test('arguments: --only names known benchmarks, --smoke; every listed benchmark loads', async (t) => {
  t.same(parseBenchArgs(['--only', 'upload,restore', '--smoke']), { smoke: true, only: ['upload', 'restore'] });
  t.same(parseBenchArgs([]), { smoke: false, only: undefined });
  t.throws(() => parseBenchArgs(['--only', 'nope']), /unknown benchmark nope/);
  t.throws(() => parseBenchArgs(['--fast']), /unknown argument/);
  for (const entry of BENCHMARKS) t.type(await loadBenchmark(entry), 'function', `bench/${entry.file} exports ${entry.exportName}`);
});
