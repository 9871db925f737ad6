import t from 'tap';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ControlClient } from '../../../src/client/control-client.ts';
import { runCli, startCli, startTestCoordinator } from '../../client/run-cli.ts';
import { FakeAgent, eventually } from '../../coordinator/fake-agent.ts';

const SPEC = 'name: demo\nimage: trainer:1\ncommand: ["python", "train.py"]\nresources:\n  gpus: 1\n';

function specFile(t: { testdir: () => string }, text = SPEC): string {
  const file = path.join(t.testdir(), 'job.yaml');
  writeFileSync(file, text);
  return file;
}

void t.test('submit prints the job id; --json prints the job', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const file = specFile(t);
  const plain = await runCli(['submit', file], env);
  t.equal(plain.code, 0, plain.stderr);
  t.match(plain.stdout, /^demo-[0-9a-f]{6}\n$/);
  const json = await runCli(['submit', file, '--json', '--coordinator', address], {});
  t.equal(json.code, 0, json.stderr);
  const job = JSON.parse(json.stdout) as { jobId: string; state: string; message: string };
  t.match(job, { state: 'queued', message: 'waiting for 1 free GPU; no node is online' });
  const client = new ControlClient({ address });
  t.teardown(() => client.close());
  t.same((await client.listJobs()).map((j) => j.jobId).sort(), [plain.stdout.trim(), job.jobId].sort());
});

void t.test('an invalid spec is refused before anything is sent', async (t) => {
  const { env } = await startTestCoordinator(t);
  const file = specFile(t, 'name: demo\nimage: trainer:1\nresources:\n  gpu: 1\n');
  const r = await runCli(['submit', file], env);
  t.equal(r.code, 1);
  t.match(r.stderr, `invalid job spec in ${file}`);
  t.match(r.stderr, /unknown field "gpu"/);
  t.match(r.stderr, /\[SPEC_INVALID\]/);
});

void t.test('a job larger than any node is refused by the coordinator', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const agent = new FakeAgent(address, 'node-a');
  t.teardown(() => agent.kill());
  await agent.register({ gpus: 4 });
  const r = await runCli(['submit', specFile(t, SPEC.replace('gpus: 1', 'gpus: 8'))], env);
  t.equal(r.code, 1);
  t.match(r.stderr, 'stevedore: job asks for 8 GPUs; the largest node has 4');
});

void t.test('submit --follow prints the output and exits 0 when the job succeeds', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const agent = new FakeAgent(address, 'node-a');
  t.teardown(() => agent.kill());
  await agent.register({ gpus: 2 });
  const cli = startCli(['submit', specFile(t), '--follow', '--poll-seconds', '0.1'], env);
  const start = await agent.takeStart();
  await agent.running(start.jobId, 1, ['GPU-node-a-0']);
  await agent.logs(start.jobId, 1, [{ text: 'epoch 1 loss 0.9' }, { stream: 'stderr', text: 'cuda warming up' }]);
  await agent.exited(start.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);
  const r = await cli.result;
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, `${start.jobId}\nepoch 1 loss 0.9\n[stderr] cuda warming up\n${start.jobId} succeeded: succeeded (exit code 0)\n`);
});

void t.test('submit --wait exits 1 when the job fails; --json prints the ended job', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const agent = new FakeAgent(address, 'node-a');
  t.teardown(() => agent.kill());
  await agent.register({ gpus: 2 });
  const cli = startCli(['submit', specFile(t), '--wait', '--json', '--poll-seconds', '0.1'], env);
  const start = await agent.takeStart();
  await agent.exited(start.jobId, 1, 'ATTEMPT_STATE_FAILED', 3);
  const r = await cli.result;
  t.equal(r.code, 1);
  t.match(JSON.parse(r.stdout), { jobId: start.jobId, state: 'failed', message: 'exited with code 3', attempts: [{ exitCode: 3, hasExitCode: true }] });
});

void t.test('an unreachable coordinator is named in the error', async (t) => {
  const r = await runCli(['submit', specFile(t), '--coordinator', '127.0.0.1:1']);
  t.equal(r.code, 1);
  t.match(r.stderr, 'stevedore: cannot reach the coordinator at 127.0.0.1:1: is `stevedore coordinator` running?');
  t.match(r.stderr, '[COORDINATOR_UNREACHABLE]');
});

void t.test('submit --wait shows the progress of the long operations (plain lines when not a terminal), then the end', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const agent = new FakeAgent(address, 'node-a');
  t.teardown(() => agent.kill());
  await agent.register({ gpus: 2 });
  const cli = startCli(['submit', specFile(t), '--wait', '--poll-seconds', '0.1'], env);
  const start = await agent.takeStart();
  const MiB = 1024 * 1024;
  const pull = (done: number, finished: boolean): { progress: { phase: string; doneBytes: number; totalBytes: number; detail: string; updatedMs: number; finished: boolean } } =>
    ({ progress: { phase: 'pull', doneBytes: done * MiB, totalBytes: 8 * MiB, detail: 'trainer:1', updatedMs: Date.now(), finished } });
  await agent.event(start.jobId, 1, pull(2, false));
  await eventually(() => cli.stdout().includes('2.0/8.0 MiB'), 30_000);
  await agent.event(start.jobId, 1, pull(8, true));
  await eventually(() => cli.stdout().includes('pulled'), 10_000);
  await agent.exited(start.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);
  const r = await cli.result;
  t.equal(r.code, 0, r.stderr);
  t.equal(
    r.stdout,
    `${start.jobId}\n` +
      'pulling trainer:1  [###.........]   25%  2.0/8.0 MiB\n' +
      'pulled trainer:1  [############]  100%  8.0/8.0 MiB\n' +
      `${start.jobId} succeeded: succeeded (exit code 0)\n`,
  );
});
