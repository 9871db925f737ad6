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
  const phases = [
    'heartbeat round trip, heartbeats only', 'heartbeat round trip while placing', 'SubmitJob', 'SubmitJob to StartJob at the agent',
    'GetJob while placing', 'GetJob while jobs report', 'ListJobs (20 jobs) while jobs report', 'GetJob, heartbeats only', 'ListJobs (20 jobs), heartbeats only',
  ];
  for (const what of phases) {
    const p99 = figures.get(`${what} p99`);
    t.ok(p99 && p99.runs > 0 && p99.median >= 0 && p99.median >= (figures.get(`${what} p50`)?.median ?? Infinity), `${what}: p99 at or above p50 over ${p99?.runs} calls`);
  }
  t.equal(figures.get('SubmitJob p99')?.runs, 20, 'every job was submitted once');
  t.ok((figures.get('coordinator CPU, heartbeats only')?.median ?? -1) >= 0);
  // The light agents' and the callers' own event-loop delay is measured, so that it is not mistaken for the coordinator's latency.
  for (const name of ["light agents' event-loop delay p99, heartbeats only", "light agents' event-loop delay p99 while placing", "callers' event-loop delay p99 while placing"]) {
    const f = figures.get(name);
    t.ok(f !== undefined && Number.isFinite(f.median) && f.median >= 0, `${name}: ${f?.median} ms`);
  }
  t.ok((figures.get("light agents' CPU while placing")?.median ?? 0) > 0, 'the light agents used some CPU while placing');
  t.equal(c?.targets.length, 2);
  for (const plot of result.plots ?? []) t.ok(existsSync(path.join(dir, plot)), `${plot} written`);
});
