// The smoke version of the drain benchmark: one GCP drill with a small checkpoint; sane figures (never speed).
import t from 'tap';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { drain, drainSteps } from '../../bench/drain.ts';

void t.test("the agent's drain steps are read from its log", (t) => {
  const log = [
    '{"level":40,"msg":"drain: 1/5 notice reported to the coordinator","elapsedMs":2}',
    'not json "drain: x"',
    '{"level":30,"msg":"job accepted"}',
    '{"level":40,"msg":"drain: 4/5 containers stopped; making the final checkpoints durable","elapsedMs":3100}',
  ].join('\n');
  t.same(drainSteps(log), [
    { what: '1/5 notice reported to the coordinator', elapsedMs: 2 },
    { what: '4/5 containers stopped; making the final checkpoints durable', elapsedMs: 3100 },
  ]);
  t.end();
});

void t.test('a notice during a checkpoint: the final checkpoint is committed before the deadline and no step is lost', async (t) => {
  const dir = t.testdir({});
  const result = await drain({ smoke: true, workDir: path.join(dir, 'work'), plotDir: path.join(dir, 'bench'), log: (line) => t.comment(line) });
  const figures = new Map((result.cases[0]?.subjects[0]?.figures ?? []).map((f) => [f.name, f]));
  const margin = figures.get('margin before the deadline');
  t.ok(margin && margin.median > 0 && margin.median < 30, `a positive margin within the 30 s window (${margin?.median} s)`);
  t.equal(figures.get('steps lost')?.max, 0, 'no step lost');
  t.ok((figures.get('notice to final commit')?.median ?? 0) > 0);
  t.equal(result.plots?.length, 1);
  t.ok(existsSync(path.join(dir, result.plots?.[0] ?? 'none')), 'the timeline is written');
});
