import t from 'tap';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { ControlClient } from '../../src/client/control-client.ts';
import { isStevedoreError } from '../../src/util/errors.ts';
import { FakeAgent, eventually, setup, spec } from './fake-agent.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

async function rejects(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (isStevedoreError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a rejection');
}

void t.test('register: the node is stored online with its inventory, and told the session parameters', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  const reg = await a.register({ gpus: 4, labels: { zone: 'eu-1', spot: 'true' } });
  t.match(reg.registered, { heartbeatIntervalMs: 5000, leaseMs: 30_000, ackedEventId: 0 });
  t.match(reg.registered?.sessionId, /^[0-9a-f-]{36}$/);
  const [node] = await s.client.listNodes();
  t.match(node, { nodeId: 'node-a', hostname: 'node-a', state: 'online', labels: { zone: 'eu-1', spot: 'true' }, agentVersion: '0.1.0-test' });
  t.equal(node?.inventory?.gpus.length, 4);
});

void t.test('a first message other than register gets a SessionError and INVALID_ARGUMENT', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  a.send({ heartbeat: { sentAtMs: 1 } });
  const err = await a.next();
  t.equal(err.error?.error?.code, 'SESSION_PROTOCOL');
  t.match(err.error?.error?.message, /first message .* must be register/);
  const st = await a.status;
  t.equal(st.code, grpc.status.INVALID_ARGUMENT);
});

void t.test('an unsupported protocol version is refused with FAILED_PRECONDITION naming the supported one', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  a.send({ register: { nodeId: 'node-a', protocolVersion: 2 } });
  const st = await a.status;
  t.equal(st.code, grpc.status.FAILED_PRECONDITION);
  t.match(st.details, /protocol version 2 is not supported; this coordinator speaks version 1/);
  t.same(await s.client.listNodes(), [], 'the node is not stored');
});

void t.test('malformed messages get a SessionError and the stream stays open', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register();
  a.send({});
  t.match((await a.next()).error?.error, { code: 'SESSION_PROTOCOL', message: /no field set/ });
  a.send({ event: { eventId: 1, jobId: 'x', attempt: 1 } });
  t.match((await a.next()).error?.error, { code: 'SESSION_PROTOCOL', message: /event 1 has no body/ });
  a.send({ commandAck: { accepted: true } });
  t.match((await a.next()).error?.error, { code: 'SESSION_PROTOCOL', message: /commandId/ });
  a.send({ register: { nodeId: 'node-a', protocolVersion: 1 } });
  t.match((await a.next()).error?.error, { code: 'SESSION_PROTOCOL', message: /only allowed as the first message/ });
  const ack = await a.heartbeat();
  t.equal(ack.heartbeatAck?.receivedAtMs, s.clock.now(), 'heartbeats still answered');
  t.equal((await s.client.listNodes())[0]?.state, 'online');
});

void t.test('placement: best fit, never over-committed, the job that does not fit waits with a reason', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  const b = s.agent('node-b');
  await a.register({ gpus: 2 });
  await b.register({ gpus: 2 });
  const j1 = await s.client.submitJob(spec('train', 2));
  const j2 = await s.client.submitJob(spec('train', 2));
  const j3 = await s.client.submitJob(spec('train', 2));
  t.match(j1.jobId, /^train-[0-9a-f]{6}$/);
  const startA = await a.takeStart();
  const startB = await b.takeStart();
  t.same(new Set([startA.jobId, startB.jobId]), new Set([j1.jobId, j2.jobId]), 'the first two jobs go one per node');
  t.equal(startA.attempt, 1);
  t.same(a.pending(), [], 'node-a got one job only');
  t.same(b.pending(), [], 'node-b got one job only');
  const waiting = await s.client.getJob(j3.jobId);
  t.equal(waiting.state, 'queued');
  t.equal(waiting.message, 'waiting for 2 free GPUs; free now: node-a 0, node-b 0');

  await a.running(startA.jobId, 1, ['GPU-node-a-0', 'GPU-node-a-1']);
  const nodes = await s.client.listNodes();
  t.same(nodes.find((n) => n.nodeId === 'node-a')?.allocatedGpuUuids, ['GPU-node-a-0', 'GPU-node-a-1']);
  t.equal((await s.client.getJob(startA.jobId)).state, 'running');

  await a.exited(startA.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);
  const third = await a.takeStart();
  t.equal(third.jobId, j3.jobId, 'the queued job goes where GPUs were freed');
  t.equal((await s.client.getJob(j3.jobId)).state, 'scheduled');
  t.equal((await s.client.getJob(startA.jobId)).state, 'succeeded');
});

void t.test('placement packs jobs on the fullest node that fits', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  const b = s.agent('node-b');
  await a.register({ gpus: 4 });
  await b.register({ gpus: 4 });
  await s.client.submitJob(spec('small', 2));
  await s.client.submitJob(spec('small', 2));
  await s.client.submitJob(spec('big', 4));
  const first = await a.takeStart();
  const second = await a.takeStart();
  const big = await b.takeStart();
  t.match(first.jobId, /^small-/);
  t.match(second.jobId, /^small-/);
  t.match(big.jobId, /^big-/, 'the 4-GPU job still finds a whole node');
});

void t.test('events: duplicates after a reconnect are acked and dropped, never applied twice', async (t) => {
  const s = await setup(t);
  let a = s.agent('node-a');
  await a.register();
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  t.equal(await a.running(job.jobId, 1, ['GPU-node-a-0']), 1);
  t.equal(await a.logs(job.jobId, 1, [{ text: 'epoch 1' }, { stream: 'stderr', text: 'warning' }]), 2);
  await a.close();
  await eventually(async () => (await s.client.listNodes())[0]?.state === 'offline');

  a = s.agent('node-a');
  const reg = await a.register({ attempts: [{ jobId: job.jobId, attempt: 1, state: 'ATTEMPT_STATE_RUNNING', gpuUuids: ['GPU-node-a-0'] }] });
  t.equal(reg.registered?.ackedEventId, 2, 'the agent learns what was stored');
  // The agent did not see the ack of event 2 and sends it again.
  t.equal(await a.logs(job.jobId, 1, [{ text: 'epoch 1' }, { stream: 'stderr', text: 'warning' }], 2), 2);
  t.equal(s.coordinator.duplicateEvents, 1);
  t.equal(await a.exited(job.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0), 3);
  t.equal(await a.exited(job.jobId, 1, 'ATTEMPT_STATE_FAILED', 1), 4, 'a second exit is stored and acked');
  const done = await s.client.getJob(job.jobId);
  t.equal(done.state, 'succeeded', 'the second exit does not change the outcome');
  t.match(done.attempts[0], { state: 'ATTEMPT_STATE_SUCCEEDED', exitCode: 0, hasExitCode: true });
  const lines = [];
  for await (const l of s.client.streamLogs(job.jobId)) lines.push(l.line?.text);
  t.same(lines, ['epoch 1', 'warning'], 'the duplicate log lines were not stored twice');
  t.same(a.pending().filter((m) => m.command), [], 'nothing to reconcile: the agent held the right attempt');
});

void t.test('an event for an unknown job is stored and acked without harm', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register();
  t.equal(await a.exited('ghost-000000', 1, 'ATTEMPT_STATE_FAILED', 1), 1);
  t.equal((await a.heartbeat()).msg, 'heartbeatAck');
  t.same(await s.client.listJobs(), []);
});

void t.test('reconciliation at register', (t) => {
  void t.test('an attempt the coordinator does not want is stopped', async (t) => {
    const s = await setup(t);
    const a = s.agent('node-a');
    await a.register();
    const job = await s.client.submitJob(spec('train', 1));
    await a.takeStart();
    await a.running(job.jobId, 1, ['GPU-node-a-0']);
    a.kill();
    await eventually(async () => (await s.client.listNodes())[0]?.state === 'offline');
    const cancelling = await s.client.cancelJob(job.jobId);
    t.equal(cancelling.state, 'cancelling');
    t.match(cancelling.message, /node-a is not connected; it is told to stop attempt 1 when it reconnects/);

    const b = s.agent('node-a');
    await b.register({
      attempts: [
        { jobId: job.jobId, attempt: 1, state: 'ATTEMPT_STATE_RUNNING' },
        { jobId: 'stray-abcdef', attempt: 3, state: 'ATTEMPT_STATE_RUNNING' },
      ],
    });
    const stops = [await b.next((m) => m.command?.body === 'stopJob'), await b.next((m) => m.command?.body === 'stopJob')].map((m) => m.command?.stopJob);
    t.match(stops, [
      { jobId: job.jobId, attempt: 1, reason: 'the job was cancelled' },
      { jobId: 'stray-abcdef', attempt: 3, reason: 'the coordinator does not know this attempt' },
    ]);
    await b.event(job.jobId, 1, { exited: { state: 'ATTEMPT_STATE_CANCELLED', exitCode: 143 } });
    t.equal((await s.client.getJob(job.jobId)).state, 'cancelled');
  });

  void t.test('a start that was never acknowledged is sent again', async (t) => {
    const s = await setup(t);
    const a = s.agent('node-a');
    await a.register();
    const job = await s.client.submitJob(spec('train', 1));
    const first = await a.takeStart(null);
    a.kill();
    await eventually(async () => (await s.client.listNodes())[0]?.state === 'offline');
    const b = s.agent('node-a');
    await b.register();
    const again = await b.takeStart();
    t.equal(again.jobId, job.jobId);
    t.equal(again.attempt, 1, 'the same attempt, not a new one');
    t.not(again.commandId, first.commandId);
    await eventually(async () => (await s.client.getJob(job.jobId)).attempts[0]?.state === 'ATTEMPT_STATE_ACCEPTED');
    t.equal((await s.client.getJob(job.jobId)).attempts.length, 1);
  });

  void t.test('an accepted attempt the agent no longer holds is lost; the job counts a preemption and resumes', async (t) => {
    const s = await setup(t);
    const a = s.agent('node-a');
    await a.register();
    const job = await s.client.submitJob(spec('train', 1));
    await a.takeStart();
    await a.running(job.jobId, 1, ['GPU-node-a-0']);
    a.kill();
    await eventually(async () => (await s.client.listNodes())[0]?.state === 'offline');
    const b = s.agent('node-a');
    await b.register({ attempts: [] });
    const again = await b.takeStart();
    t.match(again, { jobId: job.jobId, attempt: 2, resume: true }, 'placed again, on the same healthy node, resuming');
    const view = await s.client.getJob(job.jobId);
    t.match(view.attempts[0], { state: 'ATTEMPT_STATE_LOST', message: /node node-a lost attempt 1: it reconnected without it/ });
    t.equal(view.preemptions, 1);
    t.same(b.pending().filter((m) => m.command?.body === 'stopJob'), [], 'nothing to stop: the node no longer had it');
  });
  t.end();
});

void t.test('a refusal for lack of GPUs puts the job back in the queue; other refusals fail it', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 2 });
  const job = await s.client.submitJob(spec('train', 2));
  await a.takeStart({ accepted: false, code: 'GPUS_UNAVAILABLE', message: 'GPU-node-a-1 is busy' });
  const queued = await eventually(async () => {
    const j = await s.client.getJob(job.jobId);
    return j.state === 'queued' ? j : undefined;
  });
  t.match(queued.attempts[0], { attempt: 1, state: 'ATTEMPT_STATE_FAILED', message: 'GPU-node-a-1 is busy' });
  s.clock.advance(6000);
  const retry = await a.takeStart();
  t.equal(retry.jobId, job.jobId);
  t.equal(retry.attempt, 2, 'placed again as a new attempt');

  const bad = await s.client.submitJob(spec('other', 0));
  await a.takeStart({ accepted: false, code: 'MOUNT_OUTSIDE_JOB_DIR', message: 'mount data escapes the job directory' });
  const failed = await eventually(async () => {
    const j = await s.client.getJob(bad.jobId);
    return j.state === 'failed' ? j : undefined;
  });
  t.match(failed.message, /node-a refused attempt 1 \(MOUNT_OUTSIDE_JOB_DIR\): mount data escapes the job directory/);
});

void t.test('leases: an offline node is lost after the lease, and its jobs say so', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register();
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  a.kill();
  await eventually(async () => (await s.client.listNodes())[0]?.state === 'offline');
  s.clock.advance(29_000);
  t.equal((await s.client.listNodes())[0]?.state, 'offline', 'not lost before the lease ends');
  s.clock.advance(2_000);
  t.equal((await s.client.listNodes())[0]?.state, 'lost');
  const view = await s.client.getJob(job.jobId);
  t.equal(view.state, 'queued', 'no node left to resume on: it waits');
  t.equal(view.message, 'waiting for 1 free GPU; no node is online (to resume: attempt 1 was lost on node-a)');
  t.match(view.attempts[0], { state: 'ATTEMPT_STATE_LOST', message: 'node node-a was lost with attempt 1: nothing heard from it for 31 s' });
  t.equal(view.preemptions, 1, 'a lost node counts as a preemption');
});

void t.test('leases: a connected node that stops sending heartbeats is lost and its stream ended', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register();
  s.clock.advance(20_000);
  await a.heartbeat();
  s.clock.advance(20_000);
  t.equal((await s.client.listNodes())[0]?.state, 'online', 'the heartbeat renewed the lease');
  s.clock.advance(12_000);
  const st = await a.status;
  t.equal(st.code, grpc.status.UNAVAILABLE);
  t.match(st.details, /no heartbeat from node-a/);
  t.equal((await s.client.listNodes())[0]?.state, 'lost');
});

void t.test('the newest session for a node wins', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register();
  const b = s.agent('node-a');
  await b.register();
  const st = await a.status;
  t.equal(st.code, grpc.status.ABORTED);
  t.match(st.details, /newer session/);
  await b.heartbeat();
  t.equal((await s.client.listNodes())[0]?.state, 'online', 'ending the older stream did not mark the node offline');
});

void t.test('a restarted coordinator keeps jobs, attempts, logs, checkpoints, restores and event ids; nodes start offline', async (t) => {
  const dbPath = path.join(t.testdir(), 'state', 'coordinator.db');
  const clock = new FakeClock();
  const first = new Coordinator({ listen: '127.0.0.1:0', dbPath, clock });
  const { address } = await first.start();
  const a = new FakeAgent(address, 'node-a');
  await a.register();
  const c1 = new ControlClient({ address, retries: 0 });
  const job = await c1.submitJob(spec('train', 1));
  const queued = await c1.submitJob(spec('wait', 4));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  await a.logs(job.jobId, 1, [{ text: 'before restart' }]);
  await a.restored(job.jobId, 1, { checkpointId: 'step-000010', step: 10, bytes: 100, durationMs: 5 });
  await a.committed(job.jobId, 1, 'step-000020', 20);
  c1.close();
  await first.close();
  await first.close();
  a.kill();

  const s = await setup(t, { dbPath, clock });
  const nodes = await s.client.listNodes();
  t.match(nodes, [{ nodeId: 'node-a', state: 'offline', allocatedGpuUuids: ['GPU-node-a-0'] }]);
  const j = await s.client.getJob(job.jobId);
  t.match(j, { state: 'running', attempts: [{ attempt: 1, nodeId: 'node-a', state: 'ATTEMPT_STATE_RUNNING', gpuUuids: ['GPU-node-a-0'] }] });
  t.equal((await s.client.getJob(queued.jobId)).state, 'queued');
  const lines = [];
  for await (const l of s.client.streamLogs(job.jobId)) lines.push(l.line?.text);
  t.same(lines, ['before restart']);
  t.same((await s.client.listCheckpoints(job.jobId)).map((c) => c.checkpointId), ['step-000020'], 'checkpoints kept');
  t.match((await s.client.getJob(job.jobId)).attempts[0], { restoredCheckpointId: 'step-000010', restoredStep: 10 }, 'the restore kept');

  const b = s.agent('node-a');
  const reg = await b.register({ attempts: [{ jobId: job.jobId, attempt: 1, state: 'ATTEMPT_STATE_RUNNING' }] });
  t.equal(reg.registered?.ackedEventId, 4);
  t.equal(await b.exited(job.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0), 5);
  t.equal((await s.client.getJob(job.jobId)).state, 'succeeded');
  t.equal((await b.takeStart()).jobId, queued.jobId, 'the queued job is placed once GPUs are free');
});

void t.test('after a restart the lease of a node that never comes back counts from the restart', async (t) => {
  const dbPath = path.join(t.testdir(), 'coordinator.db');
  const clock = new FakeClock();
  const first = new Coordinator({ listen: '127.0.0.1:0', dbPath, clock });
  const { address } = await first.start();
  const a = new FakeAgent(address, 'node-a');
  await a.register();
  a.kill();
  await first.close();
  clock.advance(60_000);
  const s = await setup(t, { dbPath, clock });
  t.equal((await s.client.listNodes())[0]?.state, 'offline');
  s.clock.advance(31_000);
  t.equal((await s.client.listNodes())[0]?.state, 'lost');
});

void t.test('submit: validation errors are precise', async (t) => {
  const s = await setup(t);
  const badImage = await rejects(s.client.submitJob({ ...spec('x', 0), image: 'Not An Image' }));
  t.equal(badImage.code, 'SPEC_INVALID');
  t.match(badImage.message, /^invalid job spec:\n {2}image: is not a valid image reference/);
  const badName = await rejects(s.client.submitJob({ ...spec('x', 0), name: '' }));
  t.match(badName.message, /name: must be 1-63 characters/);

  const a = s.agent('node-a');
  await a.register({ gpus: 4 });
  const tooBig = await rejects(s.client.submitJob(spec('huge', 8)));
  t.equal(tooBig.code, 'GPUS_UNSATISFIABLE');
  t.match(tooBig.message, /^job asks for 8 GPUs; the largest node has 4/);
  t.same(await s.client.listJobs(), [], 'nothing was stored');
});

void t.test('submit with no node known queues the job and says why', async (t) => {
  const s = await setup(t);
  const job = await s.client.submitJob(spec('train', 2));
  t.equal(job.state, 'queued');
  t.equal(job.message, 'waiting for 2 free GPUs; no node is online');
});

void t.test('cancel', async (t) => {
  const s = await setup(t);
  const missing = await rejects(s.client.cancelJob('nope'));
  t.same(missing, { code: 'JOB_NOT_FOUND', message: 'no job nope; `stevedore status` lists jobs' });

  const queued = await s.client.submitJob(spec('q', 1));
  t.equal((await s.client.cancelJob(queued.jobId)).state, 'cancelled', 'a queued job is cancelled at once');
  const again = await rejects(s.client.cancelJob(queued.jobId));
  t.same(again, { code: 'JOB_NOT_CANCELLABLE', message: `job ${queued.jobId} already ended (cancelled)` });

  const a = s.agent('node-a');
  await a.register();
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  const cancelling = await s.client.cancelJob(job.jobId);
  t.equal(cancelling.state, 'cancelling');
  const stop = await a.next((m) => m.command?.body === 'stopJob');
  t.match(stop.command?.stopJob, { jobId: job.jobId, attempt: 1, reason: 'cancelled by the operator' });
  await a.exited(job.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);
  t.equal((await s.client.getJob(job.jobId)).state, 'cancelled', 'a cancelling job ends cancelled whatever its exit');
  t.equal((await s.client.listJobs())[0]?.jobId, job.jobId, 'newest first');
});

void t.test('logs: stored lines, then followed until the job ends', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register();
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  await a.logs(job.jobId, 1, [{ text: 'one' }]);
  const got: string[] = [];
  const followed = (async () => {
    for await (const l of s.client.streamLogs(job.jobId, { follow: true })) got.push(`${l.attempt}:${l.line?.stream}:${l.line?.text}`);
  })();
  await eventually(() => got.length === 1);
  await a.logs(job.jobId, 1, [{ text: 'two' }, { stream: 'stderr', text: 'three' }]);
  await eventually(() => got.length === 3);
  await a.exited(job.jobId, 1, 'ATTEMPT_STATE_FAILED', 2);
  await followed;
  t.same(got, ['1:stdout:one', '1:stdout:two', '1:stderr:three']);
  t.match((await s.client.getJob(job.jobId)).message, 'exited with code 2');
  const unknown = await rejects((async () => { for await (const _ of s.client.streamLogs('nope')) void _; })());
  t.equal(unknown.code, 'JOB_NOT_FOUND');
});

void t.test('checkpoints: stored once across a reconnect, listed newest first, the first report of a checkpoint stands', async (t) => {
  const s = await setup(t);
  let a = s.agent('node-a');
  await a.register();
  const job = await s.client.submitJob(spec('train', 1));
  const start = await a.takeStart();
  t.equal(start.resume, false, 'the first attempt does not resume');
  t.equal(await a.restored(job.jobId, 1, { checkpointId: '', step: 0, bytes: 0, durationMs: 3 }), 1);
  await a.running(job.jobId, 1, ['GPU-node-a-0']);
  await a.committed(job.jobId, 1, 'step-000100', 100);
  await a.committed(job.jobId, 1, 'step-000300', 300, { totalBytes: 5000, uploadedBytes: 1200, files: 7, lastWriteMs: 1000, committedMs: 3500, timeToCommitMs: 2500 });
  t.equal(await a.committed(job.jobId, 1, 'step-000200', 200), 5);
  await a.close();
  await eventually(async () => (await s.client.listNodes())[0]?.state === 'offline');

  a = s.agent('node-a');
  const reg = await a.register({ attempts: [{ jobId: job.jobId, attempt: 1, state: 'ATTEMPT_STATE_RUNNING', gpuUuids: ['GPU-node-a-0'] }] });
  t.equal(reg.registered?.ackedEventId, 5);
  // The ack of event 5 was lost: the agent sends it again with the same id.
  t.equal(await a.committed(job.jobId, 1, 'step-000200', 200, {}, 5), 5);
  t.equal(s.coordinator.duplicateEvents, 1);
  // An agent that crashed between its commit and its journal reports the commit again, with a new id.
  t.equal(await a.committed(job.jobId, 1, 'step-000300', 300, { totalBytes: 1, committedMs: 9_999_999 }), 6);

  const list = await s.client.listCheckpoints(job.jobId);
  t.same(list.map((c) => c.checkpointId), ['step-000300', 'step-000200', 'step-000100'], 'each checkpoint once, newest step first');
  t.same(list[0], {
    jobId: job.jobId, attempt: 1, nodeId: 'node-a', checkpointId: 'step-000300', name: 'step-000300', step: 300,
    totalBytes: 5000, uploadedBytes: 1200, files: 7, lastWriteMs: 1000, committedMs: 3500, timeToCommitMs: 2500,
    manifestKey: `s3://ckpt-bucket/runs/${job.jobId}/step-000300/_stevedore/manifest.json`,
  }, 'every field as first reported');

  const attempt = (await s.client.getJob(job.jobId)).attempts[0];
  t.match(attempt, { attempt: 1, resume: false, restoreReported: true, restoredCheckpointId: '', restoredStep: -1 }, 'attempt 1 started fresh');

  // After the attempt ended, a late commit is still recorded: the checkpoint exists in S3.
  await a.exited(job.jobId, 1, 'ATTEMPT_STATE_FAILED', 1);
  await a.committed(job.jobId, 1, 'step-000400', 400);
  t.equal((await s.client.listCheckpoints(job.jobId))[0]?.checkpointId, 'step-000400');

  // A node that does not run the attempt cannot add checkpoints to the job.
  const b = s.agent('node-b');
  await b.register();
  await b.committed(job.jobId, 1, 'step-999999', 999_999);
  t.equal((await s.client.listCheckpoints(job.jobId)).length, 4);
});

void t.test('checkpoints: without a step, newest commit first; none yet is an empty list; an unknown job is NOT_FOUND', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register();
  const job = await s.client.submitJob(spec('train', 1));
  await a.takeStart();
  t.same(await s.client.listCheckpoints(job.jobId), []);
  await a.committed(job.jobId, 1, 'last.ckpt', -1, { committedMs: 2000 });
  await a.committed(job.jobId, 1, 'last.ckpt.r2', -1, { committedMs: 3000 });
  t.same((await s.client.listCheckpoints(job.jobId)).map((c) => [c.checkpointId, c.step]), [['last.ckpt.r2', -1], ['last.ckpt', -1]]);

  let caught: unknown;
  try {
    await s.client.listCheckpoints('nope');
  } catch (err) {
    caught = err;
  }
  t.ok(isStevedoreError(caught, 'JOB_NOT_FOUND'), 'JOB_NOT_FOUND');
  t.match(caught, { message: 'no job nope; `stevedore status` lists jobs', cause: { code: grpc.status.NOT_FOUND } });
});

void t.test('resume: attempt 1 starts fresh; the attempt placed again after a GPUS_UNAVAILABLE refusal resumes, and its restore is in the history', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 2 });
  const job = await s.client.submitJob(spec('train', 2));
  const first = await a.takeStart({ accepted: false, code: 'GPUS_UNAVAILABLE', message: 'GPU-node-a-1 is busy' });
  t.equal(first.attempt, 1);
  t.equal(first.resume, false, 'attempt 1: no resume');
  await eventually(async () => (await s.client.getJob(job.jobId)).state === 'queued');
  s.clock.advance(6000);
  const second = await a.takeStart();
  t.equal(second.attempt, 2);
  t.equal(second.resume, true, 'attempt 2 resumes from the newest committed checkpoint');
  await a.restored(job.jobId, 2, {
    checkpointId: 'step-000300', step: 300, bytes: 4096, durationMs: 850,
    skipped: ['step-000400: model.pt has sha256 0f0f..., the manifest says 1a1a...'],
  });
  await a.running(job.jobId, 2, ['GPU-node-a-0', 'GPU-node-a-1']);
  const view = await s.client.getJob(job.jobId);
  t.match(view.attempts, [
    { attempt: 1, resume: false, restoreReported: false, restoredCheckpointId: '' },
    {
      attempt: 2, resume: true, restoreReported: true, restoredCheckpointId: 'step-000300', restoredStep: 300,
      restoredBytes: 4096, restoreDurationMs: 850, restoreSkipped: ['step-000400: model.pt has sha256 0f0f..., the manifest says 1a1a...'],
    },
  ]);
});
