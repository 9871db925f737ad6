import t from 'tap';
import { ControlClient } from '../../../src/client/control-client.ts';
import { runCli, startCliScene, startTestCoordinator } from '../../client/run-cli.ts';
import { CHECKPOINT, spec } from '../../coordinator/fake-agent.ts';

const MIB = 1024 ** 2;

void t.test('checkpoints lists committed checkpoints newest first with the newest manifest, and --json for scripts', async (t) => {
  const { env, agent, client } = await startCliScene(t);
  await agent.register({ gpus: 1 });
  const job = await client.submitJob(spec('train', 1, { checkpoint: CHECKPOINT }));
  await agent.takeStart();
  await agent.running(job.jobId, 1, ['GPU-node-a-0']);

  const none = await runCli(['checkpoints', job.jobId], env);
  t.equal(none.code, 0, none.stderr);
  t.equal(none.stdout, `no committed checkpoints for job ${job.jobId} yet\n`);

  const now = Date.now();
  await agent.committed(job.jobId, 1, 'step-000100', 100, {
    totalBytes: 1536 * MIB, uploadedBytes: 1536 * MIB, files: 4, committedMs: now - 10 * 60_000, timeToCommitMs: 850,
  });
  await agent.committed(job.jobId, 1, 'step-000200', 200, {
    totalBytes: 1536 * MIB, uploadedBytes: 512 * MIB, files: 4, committedMs: now - 5 * 60_000, timeToCommitMs: 2500,
    manifestKey: 's3://ckpt-bucket/runs/step-000200/_stevedore/manifest.json',
  });

  const human = await runCli(['checkpoints', job.jobId], env);
  t.equal(human.code, 0, human.stderr);
  const lines = human.stdout.split('\n');
  t.match(lines[0], /^CHECKPOINT\s+STEP\s+SIZE\s+FILES\s+UPLOADED\s+TIME TO COMMIT\s+COMMITTED\s+ATTEMPT\s+NODE$/);
  t.match(lines[1], /^step-000200\s+200\s+1\.5 GiB\s+4\s+512\.0 MiB\s+2\.5s\s+5m ago\s+1\s+node-a$/, 'newest first');
  t.match(lines[2], /^step-000100\s+100\s+1\.5 GiB\s+4\s+1\.5 GiB\s+850ms\s+10m ago\s+1\s+node-a$/);
  t.equal(lines[3], '');
  t.equal(lines[4], 'newest manifest: s3://ckpt-bucket/runs/step-000200/_stevedore/manifest.json');

  const json = await runCli(['checkpoints', job.jobId, '--json'], env);
  t.equal(json.code, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as { checkpoints: unknown[] };
  t.match(parsed.checkpoints, [
    { jobId: job.jobId, attempt: 1, nodeId: 'node-a', checkpointId: 'step-000200', step: 200, totalBytes: 1536 * MIB, uploadedBytes: 512 * MIB, files: 4, timeToCommitMs: 2500 },
    { checkpointId: 'step-000100', step: 100 },
  ]);
  t.equal(parsed.checkpoints.length, 2);
});

void t.test('checkpoints of a job without a checkpoint section says so; of an unknown job fails clearly', async (t) => {
  const { env, address } = await startTestCoordinator(t);
  const client = new ControlClient({ address });
  t.teardown(() => client.close());
  const job = await client.submitJob(spec('plain', 1));
  const r = await runCli(['checkpoints', job.jobId], env);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, `job ${job.jobId} has no checkpoint section: the agent does not manage its checkpoints`);

  const unknown = await runCli(['checkpoints', 'nope'], env);
  t.equal(unknown.code, 1);
  t.equal(unknown.stderr, 'stevedore: no job nope; `stevedore status` lists jobs [JOB_NOT_FOUND]\n');
  const json = await runCli(['checkpoints', 'nope', '--json'], env);
  t.equal(json.code, 1);
  t.equal(json.stdout, '');
});
