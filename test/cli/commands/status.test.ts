import t from 'tap';
import { ControlClient } from '../../../src/client/control-client.ts';
import type { NodeInfo } from '../../../src/client/control-client.ts';
import { formatNodes } from '../../../src/cli/commands/status.ts';
import { BIN, runCli, startCli, startProcess, startCliScene, startTestCoordinator } from '../../client/run-cli.ts';
import { CHECKPOINT, FakeAgent, eventually, spec } from '../../coordinator/fake-agent.ts';

void t.test('status shows nodes and jobs, human and JSON; status JOB shows the attempts', async (t) => {
  const { env, agent, client } = await startCliScene(t);
  await agent.register({ gpus: 4, labels: { zone: 'eu-1' } });
  const running = await client.submitJob(spec('train', 2));
  const start = await agent.takeStart();
  await agent.running(start.jobId, 1, ['GPU-node-a-0', 'GPU-node-a-1']);
  const waiting = await client.submitJob(spec('big', 4));

  const human = await runCli(['status'], env);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /NODE\s+STATE\s+ZONE\s+GPUS OK\/USED\/TOTAL\s+LABELS\s+LAST SEEN/);
  t.match(human.stdout, /node-a\s+online\s+eu-1\s+-\/2\/4\s+zone=eu-1\s+\d+s ago/, 'GPU health not checked yet: "-" healthy');
  t.match(human.stdout, /JOB\s+NAME\s+STATE\s+NODE\s+ATTEMPT\s+GPUS\s+AGE\s+CHECKPOINT\s+PROGRESS\s+MESSAGE/);
  t.match(human.stdout, new RegExp(`${running.jobId}\\s+train\\s+running\\s+node-a\\s+1\\s+2\\s+\\d+s\\s+-\\s+-\\s+running on node-a`));
  t.match(human.stdout, new RegExp(`${waiting.jobId}\\s+big\\s+queued\\s+-\\s+-\\s+4\\s+\\d+s\\s+-\\s+-\\s+waiting for 4 free GPUs; free now: node-a 2`));
  t.ok(human.stdout.indexOf(waiting.jobId) < human.stdout.indexOf(running.jobId), 'newest job first');

  const json = await runCli(['status', '--json'], env);
  const parsed = JSON.parse(json.stdout) as { nodes: unknown[]; jobs: unknown[] };
  t.match(parsed.nodes, [{ nodeId: 'node-a', state: 'online', allocatedGpuUuids: ['GPU-node-a-0', 'GPU-node-a-1'] }]);
  t.equal(parsed.jobs.length, 2);

  await agent.exited(start.jobId, 1, 'ATTEMPT_STATE_FAILED', 137);
  const one = await runCli(['status', running.jobId], env);
  t.equal(one.code, 0, one.stderr);
  t.match(one.stdout, `job:         ${running.jobId}\nstate:       failed\nmessage:     exited with code 137`);
  t.match(one.stdout, '\ncheckpoints: not managed (the spec has no checkpoint section)\n');
  t.match(one.stdout, '\npreemptions: 0 of max 10; failures: 1 of max 0\n');
  t.match(one.stdout, /ATTEMPT\s+NODE\s+HOST\s+ZONE\s+STATE\s+GPUS\s+EXIT\s+STARTED\s+ENDED\s+RESTORED FROM\s+MESSAGE/);
  t.match(one.stdout, /1\s+node-a\s+node-a\s+eu-1\s+failed\s+GPU-node-a-0,GPU-node-a-1\s+137\s+\d+s ago\s+\d+s ago\s+-\s+exited with code 137/);
  const oneJson = await runCli(['status', waiting.jobId, '--json'], env);
  t.match(JSON.parse(oneJson.stdout), { jobId: waiting.jobId, state: 'scheduled', attempts: [{ attempt: 1, nodeId: 'node-a' }] }, 'placed once GPUs were freed');
});

void t.test('status of an unknown job says how to list jobs', async (t) => {
  const { env } = await startTestCoordinator(t);
  const r = await runCli(['status', 'nope'], env);
  t.equal(r.code, 1);
  t.equal(r.stderr, 'stevedore: no job nope; `stevedore status` lists jobs [JOB_NOT_FOUND]\n');
  const empty = await runCli(['status'], env);
  t.equal(empty.stdout, 'no nodes have registered yet\n\nno jobs yet: submit one with `stevedore submit SPEC.yaml`\n');
});

void t.test('status JOB shows the committed checkpoints and what each attempt was restored from', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const a = new FakeAgent(address, 'node-a');
  const b = new FakeAgent(address, 'node-b');
  const client = new ControlClient({ address });
  t.teardown(() => {
    a.kill();
    b.kill();
    client.close();
  });
  await a.register({ gpus: 2 });
  await b.register({ gpus: 2 });
  const job = await client.submitJob(spec('train', 2, { checkpoint: CHECKPOINT }));
  // node-a finds its GPUs taken: the job is placed again, on node-b, as attempt 2, which resumes.
  await a.takeStart({ accepted: false, code: 'GPUS_UNAVAILABLE', message: 'GPU-node-a-1 is busy' });
  const second = await b.takeStart();
  t.match(second, { attempt: 2, resume: true });
  await b.restored(job.jobId, 2, { checkpointId: 'step-000100', step: 100, bytes: 4096, durationMs: 900, skipped: ['step-000150: model.pt is 10 bytes short'] });
  await b.running(job.jobId, 2, ['GPU-node-b-0', 'GPU-node-b-1']);

  const before = await runCli(['status', job.jobId], env);
  t.equal(before.code, 0, before.stderr);
  t.match(before.stdout, '\ncheckpoints: none committed yet\n');

  await b.committed(job.jobId, 2, 'step-000200', 200, { committedMs: Date.now() - 2 * 60_000 });
  await b.committed(job.jobId, 2, 'step-000300', 300, { committedMs: Date.now() - 60_000 });
  const human = await runCli(['status', job.jobId], env);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, '\ncheckpoints: 2 committed; newest step-000300 (step 300), committed 1m ago\n');
  t.match(human.stdout, /\n1\s+node-a\s+node-a\s+test-a\s+failed\s+-\s+-\s+\d+s ago\s+\d+s ago\s+-\s+GPU-node-a-1 is busy\n/, 'attempt 1 never restored anything');
  t.match(human.stdout, /\n2\s+node-b\s+node-b\s+test-a\s+running\s+GPU-node-b-0,GPU-node-b-1\s+-\s+\d+s ago\s+-\s+step-000100 \(step 100\), 1 newer skipped\s+-\n/);
  t.match(human.stdout, '\nattempt 2 skipped step-000150: model.pt is 10 bytes short\n');

  const json = await runCli(['status', job.jobId, '--json'], env);
  t.match(JSON.parse(json.stdout), {
    jobId: job.jobId,
    checkpoints: { committed: 2, newest: { checkpointId: 'step-000300', step: 300, attempt: 2, nodeId: 'node-b' } },
    attempts: [
      { attempt: 1, resume: false, restoreReported: false },
      { attempt: 2, resume: true, restoreReported: true, restoredCheckpointId: 'step-000100', restoredStep: 100 },
    ],
  });

  const fresh = await client.submitJob(spec('other', 2, { checkpoint: CHECKPOINT }));
  const start = await a.takeStart();
  t.equal(start.jobId, fresh.jobId);
  await a.restored(fresh.jobId, 1, { checkpointId: '', durationMs: 12 });
  const freshStatus = await runCli(['status', fresh.jobId], env);
  t.match(freshStatus.stdout, /\n1\s+node-a\s+node-a\s+test-a\s+accepted\s+-\s+-\s+\d+s ago\s+-\s+fresh\s+-\n/, 'nothing committed: started fresh');
});

void t.test('status JOB shows the history: hosts, zones, preempted and lost attempts with the notice and the final checkpoint, and the restart counts', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const a = new FakeAgent(address, 'node-a');
  const b = new FakeAgent(address, 'node-b');
  const client = new ControlClient({ address });
  t.teardown(() => {
    a.kill();
    b.kill();
    client.close();
  });
  await a.register({ gpus: 1, labels: { zone: 'us-east-1a', region: 'us-east-1' } });
  await b.register({ gpus: 1, labels: { region: 'eu-west-1' } });
  const job = await client.submitJob(spec('train', 1, { checkpoint: CHECKPOINT, restart: { maxPreemptions: 3, maxFailures: 2, retryableExitCodes: [75] } }));
  t.match(await a.takeStart(), { jobId: job.jobId, attempt: 1 });
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  const deadlineMs = Date.now() + 120_000;
  await a.notice({ noticeId: 'i-0abc:terminate', source: 'aws', kind: 'terminate', deadlineMs, receivedMs: Date.now() });
  await a.drainReport(job.jobId, 1, {
    noticeId: 'i-0abc:terminate', finalCheckpointId: 'step-000300', finalStep: 300, finalCheckpointIsNew: true,
    committedMs: deadlineMs - 42_000, deadlineMs, marginMs: 42_000,
  });
  await a.exited(job.jobId, 1, 'ATTEMPT_STATE_PREEMPTED', 0);
  t.match(await b.takeStart(), { jobId: job.jobId, attempt: 2, resume: true });
  await b.restored(job.jobId, 2, { checkpointId: 'step-000300', step: 300, bytes: 4096, durationMs: 900 });
  await b.running(job.jobId, 2, ['GPU-node-b-0']);
  // node-b comes back without attempt 2: lost, placed again (node-a is still going away).
  b.kill();
  const b2 = new FakeAgent(address, 'node-b');
  t.teardown(() => b2.kill());
  await b2.register({ gpus: 1, labels: { region: 'eu-west-1' } });
  t.match(await b2.takeStart(), { jobId: job.jobId, attempt: 3, resume: true });

  const human = await runCli(['status', job.jobId], env);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, '\npreemptions: 2 of max 3; failures: 0 of max 2\n');
  t.match(human.stdout, /\n1\s+node-a\s+node-a\s+us-east-1a\s+preempted\s+GPU-node-a-0\s+0\s+\d+s ago\s+\d+s ago\s+-\s+preempted: stopped after its final checkpoint/);
  t.match(human.stdout, /\n2\s+node-b\s+node-b\s+eu-west-1\s+lost\s+GPU-node-b-0\s+-\s+\d+s ago\s+\d+s ago\s+step-000300 \(step 300\)\s+node node-b lost attempt 2/);
  t.match(human.stdout, /\n3\s+node-b\s+node-b\s+eu-west-1\s+accepted\s+/);
  t.match(human.stdout, `\nattempt 1 preempted: aws notice terminate, deadline ${new Date(deadlineMs).toISOString()}; final checkpoint step-000300 (step 300) committed during the drain, 42 s before the deadline\n`);
  t.match(human.stdout, '\nattempt 2 lost: no notice, node-b stopped answering or lost it; counted as a preemption\n');

  const overview = await runCli(['status'], env);
  t.match(overview.stdout, /\nnode-a\s+preempting\s+us-east-1a\s+-\/0\/1\s+zone=us-east-1a,region=us-east-1/);
  t.match(overview.stdout, new RegExp(`\\n${job.jobId}\\s+train\\s+\\w+\\s+node-b\\s+3\\s+1\\s+\\d+s\\s+none\\s+-\\s+`), 'a job with a checkpoint section and none committed');

  const json = await runCli(['status', job.jobId, '--json'], env);
  t.match(JSON.parse(json.stdout), {
    preemptions: 2,
    failures: 0,
    attempts: [
      { attempt: 1, hostname: 'node-a', zone: 'us-east-1a', state: 'ATTEMPT_STATE_PREEMPTED', preemptionSource: 'aws', preemptionNoticeId: 'i-0abc:terminate', drainReported: true, finalCheckpointId: 'step-000300', drainMarginMs: 42_000 },
      { attempt: 2, zone: '', region: 'eu-west-1', state: 'ATTEMPT_STATE_LOST', restoredCheckpointId: 'step-000300' },
      { attempt: 3, resume: true },
    ],
  });
});

const MiB = 1024 * 1024;

function pull(doneMiB: number, finished = false): { progress: { phase: string; doneBytes: number; totalBytes: number; detail: string; updatedMs: number; finished: boolean } } {
  return { progress: { phase: 'pull', doneBytes: doneMiB * MiB, totalBytes: 290 * MiB, detail: 'trainer:1', updatedMs: Date.now(), finished } };
}

void t.test('status shows the progress of a long operation; --watch follows it in plain lines and JSON lines, and exits with the job', async (t) => {
  const { env, agent, client } = await startCliScene(t);
  await agent.register({ gpus: 1 });
  const job = await client.submitJob(spec('train', 1, { checkpoint: CHECKPOINT }));
  await agent.takeStart();
  await agent.committed(job.jobId, 1, 'step-000100', 100);
  await agent.event(job.jobId, 1, pull(100));

  const overview = await runCli(['status'], env);
  t.match(overview.stdout, new RegExp(`\\n${job.jobId}\\s+train\\s+scheduled\\s+node-a\\s+1\\s+1\\s+\\d+s\\s+step 100\\s+pull 34%\\s+`), 'the last checkpoint step and the progress');
  const one = await runCli(['status', job.jobId], env);
  t.match(one.stdout, /\nprogress: {4}pulling trainer:1 {2}\[####\.{8}\] {3}34% {2}100\/290 MiB {2}\(\d+s ago\)\n/);
  const oneJson = JSON.parse((await runCli(['status', job.jobId, '--json'], env)).stdout) as { attempts: { progress: unknown }[] };
  t.match(oneJson.attempts[0]?.progress, { phase: 'pull', doneBytes: 100 * MiB, totalBytes: 290 * MiB, detail: 'trainer:1', finished: false });

  const plain = startCli(['status', job.jobId, '--watch', '--poll-seconds', '0.1'], env);
  const json = startCli(['status', job.jobId, '--watch', '--json', '--poll-seconds', '0.1'], env);
  const jsonLines = (): { state: string; progress: { doneBytes: number; finished: boolean } | null }[] =>
    json.stdout().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { state: string; progress: { doneBytes: number; finished: boolean } | null });
  // Each update is sent once both watchers have seen the one before.
  await eventually(() => plain.stdout().includes('100/290 MiB') && jsonLines().some((l) => l.progress?.doneBytes === 100 * MiB), 30_000);
  await agent.event(job.jobId, 1, pull(200));
  await eventually(() => jsonLines().some((l) => l.progress?.doneBytes === 200 * MiB), 10_000);
  await agent.event(job.jobId, 1, pull(290, true));
  await eventually(() => plain.stdout().includes('pulled') && jsonLines().some((l) => l.progress?.finished), 10_000);
  await agent.exited(job.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);

  const p = await plain.result;
  t.equal(p.code, 0, p.stderr);
  t.equal(
    p.stdout,
    'pulling trainer:1  [####........]   34%  100/290 MiB\n' +
      // The update at 200 MiB came within 5 s of the first line: plain output shows the end instead.
      'pulled trainer:1  [############]  100%  290/290 MiB\n' +
      `${job.jobId} succeeded: succeeded (exit code 0)\n`,
  );
  const j = await json.result;
  t.equal(j.code, 0, j.stderr);
  const lines = jsonLines();
  t.same([...new Set(lines.filter((l) => l.progress).map((l) => `${l.progress?.doneBytes}:${l.progress?.finished}`))], [`${100 * MiB}:false`, `${200 * MiB}:false`, `${290 * MiB}:true`], 'the bytes moved to the total, then finished');
  t.equal(lines.at(-1)?.state, 'succeeded');
});

void t.test('status JOB --watch on a terminal redraws the line in place; NO_COLOR leaves the colour out', async (t) => {
  const { env, agent, client } = await startCliScene(t);
  await agent.register({ gpus: 1 });
  const job = await client.submitJob(spec('train', 1));
  await agent.takeStart();
  await agent.event(job.jobId, 1, pull(100));
  // `script` gives the CLI a pseudo-terminal and copies what it wrote.
  const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} status ${job.jobId} --watch --poll-seconds 0.1`;
  const tty = startProcess('script', ['-qec', command, '/dev/null'], { ...env, TERM: 'xterm', NO_COLOR: '1' });
  await eventually(() => tty.stdout().includes('100/290 MiB'), 30_000);
  await agent.event(job.jobId, 1, pull(290, true));
  await eventually(() => tty.stdout().includes('pulled'), 10_000);
  await agent.exited(job.jobId, 1, 'ATTEMPT_STATE_FAILED', 3);
  const r = await tty.result;
  t.equal(r.code, 1, 'the job failed: exit 1');
  t.equal(
    r.stdout.replaceAll('\r\n', '\n'),
    '\r\x1b[2Kpulling trainer:1  [####........]   34%  100/290 MiB' +
      '\r\x1b[2Kpulled trainer:1  [############]  100%  290/290 MiB\n' +
      `${job.jobId} failed: exited with code 3\n`,
  );
});

void t.test('--nodes -v shows the GPUs that are not healthy and why; without -v a hint', (t) => {
  const gpu = (index: number, health: unknown): unknown => ({ index, uuid: `GPU-${index}`, name: 'H100', memoryMib: 81920, driverVersion: '', pciBusId: '', health });
  const healthy = { uuid: '', healthy: true, problems: [], temperatureC: 40, eccUncorrectedVolatile: 0, xids: [], checkedMs: 1 };
  const node = {
    nodeId: 'node-a', hostname: 'node-a', state: 'online', labels: { zone: 'eu-1' }, lastSeenMs: 0, agentVersion: '', allocatedGpuUuids: ['GPU-0'],
    inventory: { gpus: [gpu(0, healthy), gpu(1, { ...healthy, healthy: false, temperatureC: 91, problems: ['XID 79: the GPU fell off the bus', '3 uncorrected ECC errors'] }), gpu(2, null)] },
  } as unknown as NodeInfo;
  const unchecked = { ...node, nodeId: 'node-b', inventory: { gpus: [gpu(0, null)] }, allocatedGpuUuids: [], labels: {} } as unknown as NodeInfo;
  const brief = formatNodes([node, unchecked], [], 0);
  t.equal(
    brief,
    'NODE    STATE   ZONE  GPUS OK/USED/TOTAL  LABELS     LAST SEEN\n' +
      'node-a  online  eu-1  2/1/3               zone=eu-1  -\n' +
      'node-b  online  -     -/0/1               -          -\n' +
      '\n' +
      '1 GPU is not healthy (on node-a) and gets no new jobs: `stevedore status --nodes -v` shows why',
  );
  const verbose = formatNodes([node, unchecked], [], 0, { verbose: true });
  t.match(verbose, '\nGPUs not healthy (they get no new jobs):\nNODE    GPU  UUID   TEMP  PROBLEMS\nnode-a  1    GPU-1  91 C  XID 79: the GPU fell off the bus; 3 uncorrected ECC errors');
  t.end();
});

void t.test('usage errors exit 2 and say what to write', async (t) => {
  const watch = await runCli(['status', '--watch']);
  t.equal(watch.code, 2);
  t.equal(watch.stderr, 'stevedore: --watch follows one job: give its id, as in `stevedore status JOB --watch`\n');
  const poll = await runCli(['status', 'job-1', '--watch', '--poll-seconds', 'soon']);
  t.equal(poll.code, 2);
  t.match(poll.stderr, '--poll-seconds must be a number of seconds');
  const unknown = await runCli(['status', '--bogus']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, "unknown option '--bogus'");
  const missing = await runCli(['cancel']);
  t.equal(missing.code, 2);
  t.match(missing.stderr, "missing required argument 'job'");
  const help = await runCli(['status', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, '--watch');
});

void t.test('an unreachable coordinator: exit 1, its address and how to set it', async (t) => {
  const r = await runCli(['status', '--json'], { STEVEDORE_COORDINATOR: '127.0.0.1:1' });
  t.equal(r.code, 1);
  t.equal(r.stdout, '', 'nothing a script could take for an answer');
  t.match(r.stderr, 'stevedore: cannot reach the coordinator at 127.0.0.1:1: is `stevedore coordinator` running?');
  t.match(r.stderr, 'give its address with --coordinator HOST:PORT or $STEVEDORE_COORDINATOR (default 127.0.0.1:7443) [COORDINATOR_UNREACHABLE]');
});
