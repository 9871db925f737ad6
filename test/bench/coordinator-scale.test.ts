// The smoke version of the coordinator scale benchmark: 50 light agents, 20 jobs; sane figures (never speed).
import t from 'tap';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { coordinatorScale } from '../../bench/coordinator-scale.ts';

void t.test('light agents register, every job reaches an agent, and each phase has its figures', async (t) => {
  const dir = t.testdir({});
  const result = await coordinatorScale({ smoke: true, workDir: path.join(dir, 'work'), plotDir: path.join(dir, 'bench'), log: (line) => t.comment(line) });
  const c = result.cases[0];
  t.equal(c?.name, '50 agents, 20 jobs');
  const figures = new Map((c?.subjects[0]?.figures ?? []).map((f) => [f.name, f]));
  t.ok((figures.get('time to register 50 agents')?.median ?? 0) > 0, 'registration took some time');
  t.ok((figures.get('time to submit and place 20 jobs')?.median ?? 0) > 0, 'placement took some time');
  for (const what of ['heartbeat round trip', 'SubmitJob', 'SubmitJob to StartJob at the agent', 'GetJob', 'ListJobs (20 jobs)']) {
    const p99 = figures.get(`${what} p99`);
    t.ok(p99 && p99.runs > 0 && p99.median >= 0 && p99.median >= (figures.get(`${what} p50`)?.median ?? Infinity), `${what}: p99 at or above p50 over ${p99?.runs} calls`);
  }
  t.equal(figures.get('SubmitJob p99')?.runs, 20, 'every job was submitted once');
  t.ok((figures.get('coordinator CPU, heartbeats only')?.median ?? -1) >= 0);
  t.equal(c?.targets.length, 2);
  for (const plot of result.plots ?? []) t.ok(existsSync(path.join(dir, plot)), `${plot} written`);
});
