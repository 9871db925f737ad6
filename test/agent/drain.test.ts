// The drain on a preemption notice, whatever its source: the job is asked for
// a final checkpoint, that checkpoint is committed before the deadline, the
// container is stopped, and the coordinator hears each step.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listCommitted } from '../../src/checkpoint/committed.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { setupAgent, trainerSpec } from '../helpers/agent-harness.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { waitUntil } from '../helpers/cluster.ts';
import { listenForNotify } from '../helpers/notify-socket.ts';

void t.test('a notice drains the node: final checkpoint committed before the deadline, attempt PREEMPTED', async (t) => {
  const s3 = await startS3Server({ buckets: ['drain'] });
  t.teardown(() => s3.close());
  const { coordinator, agent } = await setupAgent(t, 2, { s3: { endpoints: { default: s3.config } } });
  const spec = trainerSpec(
    'drained',
    { stopSignal: 'SIGTERM', checkpoint: { path: '/ckpt', destination: 's3://drain/jobs/drained', rule: 'dcp', signal: 'SIGUSR1', keep: 5 }, mounts: [] },
    { TRAIN_STEPS: '400', TRAIN_STEP_SECONDS: '0.1', TRAIN_CKPT_EVERY: '10', TRAIN_CKPT_BYTES: String(3 * 1024 * 1024), TRAIN_SIGNAL: 'USR1' },
  );
  await coordinator.command({ startJob: { jobId: 'drained', attempt: 1, spec } });
  await coordinator.waitFor((m) => m.event?.jobId === 'drained' && m.event.body === 'checkpointCommitted', 30000);

  // As under systemd: the drain must keep extending the stop timeout.
  const notifyDir = mkdtempSync(path.join(os.tmpdir(), 'stv-notify-'));
  t.teardown(() => {
    delete process.env.NOTIFY_SOCKET;
    rmSync(notifyDir, { recursive: true, force: true });
  });
  const { messages } = await listenForNotify(path.join(notifyDir, 'notify.sock'), 4);
  process.env.NOTIFY_SOCKET = path.join(notifyDir, 'notify.sock');
  const received = Date.now();
  const notice = { id: 'gcp-preempted-1', source: 'gcp' as const, kind: 'preempted', deadlineMs: received + 30_000, receivedMs: received, advisory: false };
  await Promise.all([agent.onNotice(notice), agent.onNotice({ ...notice, receivedMs: received + 5 })]);
  await coordinator.waitFor((m) => m.event?.jobId === 'drained' && m.event.body === 'exited', 10000);

  delete process.env.NOTIFY_SOCKET;
  t.ok((await messages).some((m) => /EXTEND_TIMEOUT_USEC=/.test(m)), 'systemd was asked to extend the stop timeout during the drain');

  const notices = coordinator.events('').filter((e) => e.body === 'preemptionNotice');
  t.equal(notices.length, 1, 'a notice seen twice is one notice');
  t.match(notices[0]?.preemptionNotice, { noticeId: 'gcp-preempted-1', source: 'gcp', deadlineMs: notice.deadlineMs });

  const events = coordinator.events('drained');
  const exited = events.find((e) => e.body === 'exited');
  t.equal(exited?.exited?.state, 'ATTEMPT_STATE_PREEMPTED');
  const report = events.find((e) => e.body === 'drainReport')?.drainReport;
  // The final checkpoint is the one at the step where the job stopped: written on the signal
  // (or, when the signal came right after a regular checkpoint, that one: the job skips a step it already saved).
  if (report?.finalCheckpointIsNew) t.ok(report.marginMs >= 10_000, `committed ${report.marginMs} ms before the deadline, more than the safety margin`);
  else t.ok((report?.committedMs ?? Infinity) <= received, 'already durable when the notice came');
  t.ok(events.findIndex((e) => e.body === 'drainReport') < events.findIndex((e) => e.body === 'exited'), 'the report comes before the end');

  // The checkpoint the job wrote on the signal is the newest committed one, at the step it says.
  const lines = events.flatMap((e) => e.logs?.lines ?? []).map((l) => l.text);
  const signalled = lines.map((l) => /received SIG\w+ at step (\d+)/.exec(l)?.[1]).find(Boolean);
  t.ok(signalled, 'the job received its checkpoint signal');
  const store = new S3ObjectStore({ bucket: 'drain', config: s3.config });
  const committed = await listCommitted(store, 'jobs/drained');
  t.equal(committed[0]?.manifest.step, Number(signalled), 'the newest committed checkpoint is the final one');
  t.equal(report?.finalStep, Number(signalled));

  const refused = await coordinator.command({ startJob: { jobId: 'late', attempt: 1, spec: trainerSpec('late') } });
  t.equal(refused.error?.code, 'NODE_DRAINING', 'a draining node takes no new job');
});

void t.test('a notice while a large checkpoint is still uploading: the drain finishes it first', async (t) => {
  const s3 = await startS3Server({ buckets: ['drain'] });
  // Every request held back 300 ms: a 40 MiB checkpoint takes seconds to upload.
  const proxy = await startFaultProxy({ target: s3.endpoint, failureRate: 1, faults: ['stall'], stallMs: 300, seed: 3 });
  t.teardown(async () => {
    await proxy.close();
    await s3.close();
  });
  const { coordinator, agent } = await setupAgent(t, 1, { s3: { endpoints: { default: { ...s3.config, endpoint: proxy.endpoint } } }, checkpoints: { partSizeMiB: 5, maxInFlightMiB: 10, rescanSeconds: 1 } });
  // The job ignores the checkpoint signal (SIGHUP, unhandled by PID 1) and is killed at the stop: the
  // checkpoint in flight when the notice comes is the final one.
  const spec = trainerSpec(
    'large',
    { stopSignal: 'SIGKILL', checkpoint: { path: '/ckpt', destination: 's3://drain/jobs/large', rule: 'dcp', signal: 'SIGHUP', keep: 5 }, mounts: [] },
    { TRAIN_STEPS: '1000', TRAIN_STEP_SECONDS: '3', TRAIN_CKPT_EVERY: '5', TRAIN_CKPT_BYTES: String(40 * 1024 * 1024) },
  );
  await coordinator.command({ startJob: { jobId: 'large', attempt: 1, spec } });
  const store = new S3ObjectStore({ bucket: 'drain', config: s3.config });
  await waitUntil(async () => (await store.listMultipartUploads('jobs/large/')).length > 0, 30000, () => 'the upload never started');
  t.same(await listCommitted(store, 'jobs/large'), [], 'not committed yet when the notice arrives');

  const received = Date.now();
  await agent.onNotice({ id: 'azure-evt-1', source: 'azure', kind: 'Preempt', deadlineMs: received + 60_000, receivedMs: received, advisory: false });
  await coordinator.waitFor((m) => m.event?.jobId === 'large' && m.event.body === 'exited', 10000);
  const report = coordinator.events('large').find((e) => e.body === 'drainReport')?.drainReport;
  t.equal(report?.finalCheckpointId, 'step-000005', 'the checkpoint that was uploading is the final one');
  t.ok(report?.finalCheckpointIsNew);
  t.ok((report?.marginMs ?? 0) >= 10_000, `committed ${report?.marginMs} ms before the deadline`);
  const committed = await listCommitted(store, 'jobs/large');
  t.equal(committed[0]?.manifest.name, 'step-000005');
  t.equal(committed[0]?.manifest.totalBytes, 40 * 1024 * 1024 + (committed[0]?.manifest.files.find((f) => f.path === '.metadata')?.size ?? 0));
  t.equal((await store.listMultipartUploads('jobs/large/')).length, 0, 'nothing left open');
});
