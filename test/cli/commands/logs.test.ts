import t from 'tap';
import { runCli, startCli, startCliScene, startTestCoordinator } from '../../client/run-cli.ts';
import { eventually, spec } from '../../coordinator/fake-agent.ts';

void t.test('logs prints stored lines with stderr marked, JSON lines with --json, and follows with -f', async (t) => {
  const { env, agent, client } = await startCliScene(t);
  await agent.register({ gpus: 1 });
  const job = await client.submitJob(spec('train', 1));
  await agent.takeStart();
  await agent.running(job.jobId, 1, ['GPU-node-a-0']);
  await agent.logs(job.jobId, 1, [{ text: 'step 1' }, { stream: 'stderr', text: 'oops' }]);

  const plain = await runCli(['logs', job.jobId], env);
  t.equal(plain.code, 0, plain.stderr);
  t.equal(plain.stdout, 'step 1\n[stderr] oops\n');

  const json = await runCli(['logs', job.jobId, '--json'], env);
  const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as unknown);
  t.match(lines, [{ attempt: 1, stream: 'stdout', text: 'step 1' }, { attempt: 1, stream: 'stderr', text: 'oops' }]);

  const follow = startCli(['logs', '-f', job.jobId], env);
  await eventually(() => follow.stdout().includes('[stderr] oops'), 10_000);
  await agent.logs(job.jobId, 1, [{ text: 'step 2' }]);
  await eventually(() => follow.stdout().includes('step 2'), 10_000);
  t.equal(follow.child.exitCode, null, 'still following while the job runs');
  await agent.exited(job.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);
  const r = await follow.result;
  t.equal(r.code, 0);
  t.equal(r.stdout, 'step 1\n[stderr] oops\nstep 2\n');
});

void t.test('logs of an unknown job fails clearly', async (t) => {
  const { env } = await startTestCoordinator(t);
  const r = await runCli(['logs', 'nope'], env);
  t.equal(r.code, 1);
  t.match(r.stderr, 'no job nope; `stevedore status` lists jobs');
});
