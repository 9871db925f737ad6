import t from 'tap';
import { ControlClient } from '../../../src/client/control-client.ts';
import { runCli, startCliScene, startTestCoordinator } from '../../client/run-cli.ts';
import { spec } from '../../coordinator/fake-agent.ts';

void t.test('cancel stops a running job on its node, and refuses a job that already ended', async (t) => {
  const { env, agent, client } = await startCliScene(t);
  await agent.register({ gpus: 1 });
  const job = await client.submitJob(spec('train', 1));
  await agent.takeStart();
  await agent.running(job.jobId, 1, ['GPU-node-a-0']);

  const r = await runCli(['cancel', job.jobId], env);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `${job.jobId}: cancelling (cancelling: asked node-a to stop attempt 1)\n`);
  const stop = await agent.next((m) => m.command?.body === 'stopJob');
  t.match(stop.command?.stopJob, { jobId: job.jobId, attempt: 1 });
  await agent.exited(job.jobId, 1, 'ATTEMPT_STATE_CANCELLED', 143);

  const again = await runCli(['cancel', job.jobId, '--json'], env);
  t.equal(again.code, 1);
  t.equal(again.stderr, `stevedore: job ${job.jobId} already ended (cancelled) [JOB_NOT_CANCELLABLE]\n`);
});

void t.test('cancel --json prints the job; a queued job is cancelled at once', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const client = new ControlClient({ address });
  t.teardown(() => client.close());
  const job = await client.submitJob(spec('train', 1));
  const r = await runCli(['cancel', job.jobId, '--json'], env);
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), { jobId: job.jobId, state: 'cancelled', message: 'cancelled before it was placed' });
});
