// The coordinator's preemption and restart rules, over real gRPC with fake agents and a fake clock.
import t from 'tap';
import * as grpc from '@grpc/grpc-js';
import { isStevedoreError } from '../../src/util/errors.ts';
import { CHECKPOINT, eventually, setup, spec } from './fake-agent.ts';
import type { FakeAgent, Setup } from './fake-agent.ts';

const RESTART = { maxPreemptions: 10, maxFailures: 0, retryableExitCodes: [] };

async function jobIn(s: Setup, jobId: string, state: string): Promise<Awaited<ReturnType<Setup['client']['getJob']>>> {
  return eventually(async () => {
    const j = await s.client.getJob(jobId);
    return j.state === state ? j : undefined;
  });
}

/** A notice, a drain report and a PREEMPTED exit for the attempt, as an agent's drain sends them. */
async function preempt(s: Setup, agent: FakeAgent, jobId: string, attempt: number, noticeId: string, checkpoint = 'step-000300'): Promise<void> {
  const deadlineMs = s.clock.now() + 120_000;
  await agent.notice({ noticeId, source: 'aws', kind: 'terminate', deadlineMs, receivedMs: s.clock.now() });
  await agent.drainReport(jobId, attempt, {
    noticeId, finalCheckpointId: checkpoint, finalStep: 300, finalCheckpointIsNew: true, committedMs: deadlineMs - 42_000, deadlineMs, marginMs: 42_000,
  });
  await agent.exited(jobId, attempt, 'ATTEMPT_STATE_PREEMPTED', 0);
}

void t.test('a preempted attempt: the node takes no new job, the job resumes in another zone, and the history says why', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  const b = s.agent('node-b');
  const c = s.agent('node-c');
  await a.register({ gpus: 2, labels: { zone: 'us-east-1a', region: 'us-east-1' } });
  await b.register({ gpus: 2, labels: { zone: 'us-east-1a', region: 'us-east-1' } });
  await c.register({ gpus: 4, labels: { zone: 'us-east-1b', region: 'us-east-1' } });
  const job = await s.client.submitJob(spec('train', 2, { checkpoint: CHECKPOINT }));
  const first = await a.takeStart();
  t.match(first, { jobId: job.jobId, attempt: 1, resume: false });
  await a.running(job.jobId, 1, ['GPU-node-a-0', 'GPU-node-a-1']);

  const deadlineMs = s.clock.now() + 120_000;
  await a.notice({ noticeId: 'aws-1', source: 'aws', kind: 'terminate', deadlineMs, receivedMs: s.clock.now() });
  await a.notice({ noticeId: 'aws-1', source: 'aws', kind: 'terminate', deadlineMs: deadlineMs + 5000, receivedMs: s.clock.now() });
  const nodes = await s.client.listNodes();
  t.equal(nodes.find((n) => n.nodeId === 'node-a')?.state, 'preempting');
  t.match((await s.client.getJob(job.jobId)).message, /^node node-a is going away \(aws terminate, deadline .*\): attempt 1 makes a final checkpoint/);

  // While node-a drains, a new job that would fit it best goes elsewhere.
  const other = await s.client.submitJob(spec('other', 2));
  const otherStart = await b.takeStart();
  t.equal(otherStart.jobId, other.jobId, 'not placed on the preempting node');
  await b.running(other.jobId, 1, ['GPU-node-b-0', 'GPU-node-b-1']);
  await b.exited(other.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);

  await a.drainReport(job.jobId, 1, {
    noticeId: 'aws-1', finalCheckpointId: 'step-000300', finalStep: 300, finalCheckpointIsNew: true, committedMs: deadlineMs - 42_000, deadlineMs, marginMs: 42_000,
  });
  await a.exited(job.jobId, 1, 'ATTEMPT_STATE_PREEMPTED', 0);
  const second = await c.takeStart();
  t.match(second, { jobId: job.jobId, attempt: 2, resume: true }, 'resumed in the other zone, though node-b would fit better');
  t.same(a.pending().filter((m) => m.command?.body === 'startJob'), [], 'never back on the node that is going away');

  const view = await s.client.getJob(job.jobId);
  t.equal(view.state, 'scheduled');
  t.equal(view.preemptions, 1);
  t.match(view.attempts, [
    {
      attempt: 1, nodeId: 'node-a', hostname: 'node-a', zone: 'us-east-1a', region: 'us-east-1', state: 'ATTEMPT_STATE_PREEMPTED',
      preemptionNoticeId: 'aws-1', preemptionSource: 'aws', preemptionKind: 'terminate', preemptionDeadlineMs: deadlineMs,
      drainReported: true, finalCheckpointId: 'step-000300', finalStep: 300, finalCheckpointIsNew: true, finalCommittedMs: deadlineMs - 42_000, drainMarginMs: 42_000,
    },
    { attempt: 2, nodeId: 'node-c', zone: 'us-east-1b', resume: true, drainReported: false, preemptionSource: '' },
  ]);
});

void t.test('without a node elsewhere, the job resumes in the same zone; the preempting node stays out until it is back after its deadline', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  const b = s.agent('node-b');
  await a.register({ gpus: 1, labels: { zone: 'z1' } });
  await b.register({ gpus: 1, labels: { zone: 'z1' } });
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  await preempt(s, a, job.jobId, 1, 'gcp-1');
  t.match(await b.takeStart(), { jobId: job.jobId, attempt: 2, resume: true });
  await b.exited(job.jobId, 2, 'ATTEMPT_STATE_SUCCEEDED', 0);
  t.equal((await s.client.getJob(job.jobId)).state, 'succeeded');

  // node-a reconnects before its deadline: still going away, so it gets nothing.
  a.kill();
  const again = s.agent('node-a');
  await again.register({ gpus: 1, labels: { zone: 'z1' } });
  t.equal((await s.client.listNodes()).find((n) => n.nodeId === 'node-a')?.state, 'preempting');
  const next = await s.client.submitJob(spec('next', 1));
  t.match(await b.takeStart(), { jobId: next.jobId }, 'placed on node-b, not on the preempting node');
  await b.exited(next.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);

  // Back after the deadline: it survived (or is a new machine) and takes jobs again.
  s.clock.advance(121_000);
  again.kill();
  const back = s.agent('node-a');
  await back.register({ gpus: 1, labels: { zone: 'z1' } });
  t.equal((await s.client.listNodes()).find((n) => n.nodeId === 'node-a')?.state, 'online');
  const third = await s.client.submitJob(spec('third', 1));
  t.match(await back.takeStart(), { jobId: third.jobId });
});

void t.test('a rebalance recommendation is recorded but the node stays eligible', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 1 });
  await a.notice({ noticeId: 'rebalance-1', source: 'aws-rebalance', kind: 'rebalance', deadlineMs: s.clock.now() + 600_000, receivedMs: s.clock.now() });
  t.equal((await s.client.listNodes())[0]?.state, 'online');
  const job = await s.client.submitJob(spec('train', 1));
  t.equal((await a.takeStart()).jobId, job.jobId);
});

void t.test('max preemptions: the preemption beyond restart.maxPreemptions fails the job and says so', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  const b = s.agent('node-b');
  await a.register({ gpus: 1, labels: { zone: 'z1' } });
  await b.register({ gpus: 1, labels: { zone: 'z2' } });
  const job = await s.client.submitJob(spec('train', 1, { restart: { ...RESTART, maxPreemptions: 1 } }));
  await a.takeStart();
  await preempt(s, a, job.jobId, 1, 'n-1');
  t.match(await b.takeStart(), { attempt: 2, resume: true });
  await preempt(s, b, job.jobId, 2, 'n-2');
  const failed = await jobIn(s, job.jobId, 'failed');
  t.match(failed.message, /^preempted: stopped after its final checkpoint because its node is going away on node-b; that is preemption 2 and the restart policy allows 1 \(restart.maxPreemptions\)/);
  t.equal(failed.preemptions, 2);
  t.same(failed.attempts.map((x) => x.state), ['ATTEMPT_STATE_PREEMPTED', 'ATTEMPT_STATE_PREEMPTED']);
});

void t.test('a lost node: after the lease its job resumes elsewhere; when the node comes back with the old attempt, it is told to stop it', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  const b = s.agent('node-b');
  await a.register({ gpus: 1, labels: { zone: 'z1' } });
  const job = await s.client.submitJob(spec('train', 1, { checkpoint: CHECKPOINT }));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  await b.register({ gpus: 1, labels: { zone: 'z2' } });
  a.kill();
  await eventually(async () => (await s.client.listNodes()).find((n) => n.nodeId === 'node-a')?.state === 'offline');
  s.clock.advance(20_000);
  await b.heartbeat();
  t.equal((await s.client.getJob(job.jobId)).state, 'running', 'nothing happens before the lease ends');
  s.clock.advance(11_000);
  await b.heartbeat();
  const second = await b.takeStart();
  t.match(second, { jobId: job.jobId, attempt: 2, resume: true });
  await b.running(job.jobId, 2, ['GPU-node-b-0']);
  const view = await s.client.getJob(job.jobId);
  t.match(view, { state: 'running', preemptions: 1 });
  t.match(view.attempts[0], { state: 'ATTEMPT_STATE_LOST', message: /^node node-a was lost with attempt 1: nothing heard from it for 31 s$/, drainReported: false, preemptionSource: '' });

  const returned = s.agent('node-a');
  await returned.register({ gpus: 1, labels: { zone: 'z1' }, attempts: [{ jobId: job.jobId, attempt: 1, state: 'ATTEMPT_STATE_RUNNING', gpuUuids: ['GPU-node-a-0'] }] });
  const stop = await returned.next((m) => m.command?.body === 'stopJob');
  t.match(stop.command?.stopJob, { jobId: job.jobId, attempt: 1, reason: 'superseded by attempt 2' });
  t.same(returned.pending().filter((m) => m.command?.body === 'startJob'), [], 'no second copy started');
  await returned.exited(job.jobId, 1, 'ATTEMPT_STATE_CANCELLED', 143);
  const after = await s.client.getJob(job.jobId);
  t.equal(after.state, 'running');
  t.equal(after.attempts[0]?.state, 'ATTEMPT_STATE_LOST', 'the late exit of the lost attempt changes nothing');
});

void t.test('a lost node that comes back while its job still waits: the old attempt is stopped before the job is placed on it again', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 1 });
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  a.kill();
  await eventually(async () => (await s.client.listNodes())[0]?.state === 'offline');
  s.clock.advance(31_000);
  t.equal((await s.client.getJob(job.jobId)).state, 'queued');

  const returned = s.agent('node-a');
  await returned.register({ gpus: 1, attempts: [{ jobId: job.jobId, attempt: 1, state: 'ATTEMPT_STATE_RUNNING', gpuUuids: ['GPU-node-a-0'] }] });
  const commands = await eventually(() => {
    const got = returned.received.filter((m) => m.command).map((m) => m.command);
    return got.length >= 2 ? got : undefined;
  });
  t.match(commands, [
    { stopJob: { jobId: job.jobId, attempt: 1, reason: 'the coordinator already gave this attempt up as lost' } },
    { startJob: { jobId: job.jobId, attempt: 2, resume: true } },
  ], 'stop the old copy first, then start the new attempt');
});

void t.test('failures: a retryable exit code is retried while failures are left; another exit code fails the job at once', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 2 });
  const job = await s.client.submitJob(spec('train', 1, { restart: { ...RESTART, maxFailures: 1, retryableExitCodes: [75, -1] } }));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  await a.exited(job.jobId, 1, 'ATTEMPT_STATE_FAILED', 75);
  const retry = await a.takeStart();
  t.match(retry, { jobId: job.jobId, attempt: 2, resume: true });
  const queuedMessage = (await s.client.getJob(job.jobId)).attempts[0]?.message;
  t.equal(queuedMessage, 'exited with code 75');
  await a.running(job.jobId, 2, ['GPU-node-a-0']);
  await a.exited(job.jobId, 2, 'ATTEMPT_STATE_FAILED', 75);
  const failed = await jobIn(s, job.jobId, 'failed');
  t.equal(failed.message, 'exited with code 75; that is failure 2 and the restart policy allows 1 (restart.maxFailures)');
  t.match(failed, { failures: 2, preemptions: 0 });
  t.equal(failed.attempts.length, 2);

  const other = await s.client.submitJob(spec('other', 1, { restart: { ...RESTART, maxFailures: 5, retryableExitCodes: [75] } }));
  await a.takeStart();
  await a.exited(other.jobId, 1, 'ATTEMPT_STATE_FAILED', 1);
  const fatal = await jobIn(s, other.jobId, 'failed');
  t.equal(fatal.message, 'exited with code 1', 'exit code 1 is not retryable');
  t.equal(fatal.failures, 1);

  const plain = await s.client.submitJob(spec('plain', 1));
  await a.takeStart();
  await a.exited(plain.jobId, 1, 'ATTEMPT_STATE_FAILED', 75);
  t.equal((await jobIn(s, plain.jobId, 'failed')).message, 'exited with code 75', 'the default policy retries nothing');
});

void t.test('an attempt the node refused as forbidden or invalid fails the job, even when its exit code is retryable', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 2 });
  for (const code of ['SPEC_FORBIDDEN', 'SPEC_INVALID']) {
    const job = await s.client.submitJob(spec(`refused-${code.toLowerCase().replace("_", "-")}`, 1, { restart: { ...RESTART, maxFailures: 5, retryableExitCodes: [-1] } }));
    await a.takeStart();
    await a.event(job.jobId, 1, { exited: { state: 'ATTEMPT_STATE_FAILED', exitCode: -1, error: { code, message: 'capabilities: SYS_ADMIN is not allowed on this node' } } });
    const failed = await jobIn(s, job.jobId, 'failed');
    t.match(failed.message, `placing it again cannot help (${code})`, `${code} is not retried`);
    t.equal(failed.attempts.length, 1);
  }
});

void t.test('a job being cancelled whose attempt is preempted ends cancelled, not re-queued', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 1 });
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  await s.client.cancelJob(job.jobId);
  await preempt(s, a, job.jobId, 1, 'n-1');
  const done = await jobIn(s, job.jobId, 'cancelled');
  t.equal(done.preemptions, 0);
});

void t.test('DrainNode sends drain with a deadline, marks the node draining and keeps jobs off it', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 2 });
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  const node = await s.client.drainNode('node-a', { reason: 'kernel upgrade', deadlineSeconds: 60 });
  t.match(node, { nodeId: 'node-a', state: 'draining' });
  const drain = await a.next((m) => m.command?.body === 'drain');
  t.same(drain.command?.drain, { reason: 'kernel upgrade', deadlineMs: s.clock.now() + 60_000 });
  t.match((await s.client.getJob(job.jobId)).message, /^node node-a is draining \(kernel upgrade\): attempt 1 makes a final checkpoint and stops within 60 s/);
  await s.client.submitJob(spec('later', 1));
  await new Promise((r) => setTimeout(r, 100));
  t.same(a.pending().filter((m) => m.command?.body === 'startJob'), [], 'a draining node gets no new job');

  const b = s.agent('node-b');
  await b.register({ gpus: 2 });
  await b.takeStart();
  await b.heartbeat();
  const defaults = await s.client.drainNode('node-b');
  t.equal(defaults.state, 'draining');
  const drainB = await b.next((m) => m.command?.body === 'drain');
  t.same(drainB.command?.drain, { reason: 'drained by the operator', deadlineMs: s.clock.now() + 120_000 }, 'default: 120 s');
});

void t.test('DrainNode: an unknown node is NOT_FOUND, a node without a session FAILED_PRECONDITION', async (t) => {
  const s = await setup(t);
  const errorOf = async (p: Promise<unknown>): Promise<unknown> => p.then(() => undefined, (err: unknown) => err);
  const unknown = await errorOf(s.client.drainNode('nope'));
  t.ok(isStevedoreError(unknown, 'NODE_NOT_FOUND'));
  t.match(unknown, { message: 'no node nope; `stevedore status` lists nodes', cause: { code: grpc.status.NOT_FOUND } });

  const a = s.agent('node-a');
  await a.register();
  a.kill();
  await eventually(async () => (await s.client.listNodes())[0]?.state === 'offline');
  const offline = await errorOf(s.client.drainNode('node-a'));
  t.ok(isStevedoreError(offline, 'NODE_NOT_CONNECTED'));
  t.match(offline, { message: /^node node-a is not connected \(offline\), so it cannot be told to drain/, cause: { code: grpc.status.FAILED_PRECONDITION } });
});
