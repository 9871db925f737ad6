// Spot drills: two agents; the job runs on the first; its cloud (a stand-in
// metadata server on loopback, faithful to the documented formats) announces
// a preemption. The final checkpoint is committed before the deadline, the
// job resumes on the other agent from exactly that checkpoint and runs to the
// end, with no step lost after it and none run twice before it.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import type { JobInfo } from '../../src/client/control-client.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { listCommitted } from '../../src/checkpoint/committed.ts';
import { validateJobSpec, type JobSpec } from '../../src/spec/job-spec.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { Cluster, waitUntil } from '../helpers/cluster.ts';
import { testEngineEnv } from '../helpers/engine.ts';
import { startFakeAzureEvents } from '../helpers/fake-azure-events.ts';
import { startFakeGcpMetadata } from '../helpers/fake-gcp-metadata.ts';
import { startFakeImds } from '../helpers/fake-imds.ts';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.ts';

const env = testEngineEnv();
const STEPS = 60;

function job(prefix: string): JobSpec {
  return validateJobSpec({
    name: 'spot',
    image: env.trainerImage,
    command: ['/stevedore/train.sh'],
    env: { TRAIN_STEPS: String(STEPS), TRAIN_STEP_SECONDS: '0.25', TRAIN_CKPT_EVERY: '8', TRAIN_CKPT_DIR: '/ckpt', TRAIN_CKPT_BYTES: String(2 * 1024 * 1024), TRAIN_SIGNAL: 'USR1' },
    resources: { gpus: 1 },
    pullPolicy: 'never',
    stopSignal: 'SIGTERM',
    stopGraceSeconds: 10,
    checkpoint: { path: '/ckpt', destination: `s3://spot/${prefix}`, rule: 'dcp', signal: 'SIGUSR1', keep: 5 },
  });
}

interface Drill {
  cluster: Cluster;
  s3: S3TestServer;
}

async function drill(t: Test, name: string, preemption: Record<string, unknown>): Promise<Drill> {
  const s3 = await startS3Server({ buckets: ['spot'] });
  const dir = mkdtempSync(path.join(os.tmpdir(), `stv-${name}-`));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost });
  t.teardown(async () => {
    await cluster.close();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const s3Config = { s3: { endpoints: { default: s3.config } }, checkpoints: { partSizeMiB: 5, maxInFlightMiB: 32, rescanSeconds: 1 } };
  await cluster.addAgent('spot-a', 1, { ...s3Config, labels: { zone: 'zone-a' }, preemption: { ...preemption, safetyMarginSeconds: 10 } });
  return { cluster, s3 };
}

/** Waits until the job has made some progress on its first node, then adds the second node. */
async function runUntilCheckpointed(d: Drill, spec: JobSpec): Promise<JobInfo> {
  const submitted = await d.cluster.client.submitJob(spec);
  await d.cluster.waitForJob(submitted.jobId, ['running']);
  await waitUntil(async () => (await d.cluster.client.listCheckpoints(submitted.jobId)).length > 0, 60000, () => 'no checkpoint committed');
  await d.cluster.addAgent('spot-b', 1, { s3: { endpoints: { default: d.s3.config } }, checkpoints: { partSizeMiB: 5, maxInFlightMiB: 32, rescanSeconds: 1 }, labels: { zone: 'zone-b' } });
  return submitted;
}

async function verifyResume(t: Test, d: Drill, jobId: string, deadlineMs: number): Promise<number> {
  const done = await d.cluster.waitForJob(jobId, ['succeeded', 'failed'], 120000);
  t.equal(done.state, 'succeeded', 'the job ran to the end');
  t.equal(done.attempts.length, 2, 'two attempts');
  const [first, second] = done.attempts;
  t.equal(first?.state, 'ATTEMPT_STATE_PREEMPTED');
  t.not(second?.nodeId, first?.nodeId, 'resumed on the other node');

  const byAttempt = new Map<number, string[]>();
  for await (const l of d.cluster.client.streamLogs(jobId)) {
    const list = byAttempt.get(l.attempt) ?? [];
    list.push(l.line?.text ?? '');
    byAttempt.set(l.attempt, list);
  }
  const steps = (lines: string[]): number[] => lines.flatMap((l) => (/^step (\d+)\//.exec(l)?.[1] ? [Number(/^step (\d+)\//.exec(l)?.[1])] : []));
  const signalled = Number((byAttempt.get(1) ?? []).map((l) => /received SIG\w+ at step (\d+)/.exec(l)?.[1]).find(Boolean));
  t.ok(signalled > 0, `the job got its checkpoint signal at step ${signalled}`);
  t.same(steps(byAttempt.get(1) ?? []), Array.from({ length: signalled }, (_, i) => i + 1), 'attempt 1 ran steps 1..N and stopped at its final checkpoint');
  t.ok((byAttempt.get(2) ?? []).includes(`resumed from step ${signalled}`), 'attempt 2 resumed from exactly that checkpoint');
  t.same(steps(byAttempt.get(2) ?? []), Array.from({ length: STEPS - signalled }, (_, i) => signalled + i + 1), 'no step lost after it, none run twice before it');

  const checkpoints = await d.cluster.client.listCheckpoints(jobId);
  const final = checkpoints.find((c) => c.step === signalled && c.attempt === 1);
  t.ok(final, 'the final checkpoint was committed and reported');
  t.ok((final?.committedMs ?? Infinity) < deadlineMs - 10_000, `committed at least the safety margin before the deadline (${((deadlineMs - (final?.committedMs ?? 0)) / 1000).toFixed(1)} s before)`);
  return signalled;
}

void t.test('GCP: instance/preempted turns TRUE (30 s window)', async (t) => {
  const gcp = await startFakeGcpMetadata();
  t.teardown(() => gcp.close());
  const d = await drill(t, 'gcp', { cloud: 'gcp', metadataUrl: gcp.baseUrl });
  const submitted = await runUntilCheckpointed(d, job('gcp'));
  const noticeAt = Date.now();
  gcp.setPreempted(true);
  await verifyResume(t, d, submitted.jobId, noticeAt + 30_000);
});

void t.test('AWS: a spot instance-action whose time moves on every poll (2 minute window)', async (t) => {
  const imds = await startFakeImds();
  t.teardown(() => imds.close());
  const d = await drill(t, 'aws', { cloud: 'aws', metadataUrl: imds.url, pollSeconds: 1 });
  const submitted = await runUntilCheckpointed(d, job('aws'));
  const noticeAt = Date.now();
  imds.scheduleSpotAction('terminate');
  await verifyResume(t, d, submitted.jobId, noticeAt + 120_000);
});

void t.test('Azure: a Preempt scheduled event (30 s), acknowledged only after the drain', async (t) => {
  const azure = await startFakeAzureEvents();
  t.teardown(() => azure.close());
  const d = await drill(t, 'azure', { cloud: 'azure', metadataUrl: azure.baseUrl, pollSeconds: 1 });
  const submitted = await runUntilCheckpointed(d, job('azure'));
  const noticeAt = Date.now();
  const event = azure.addEvent({ EventType: 'Preempt', Resources: ['spot-a'] });
  await waitUntil(() => azure.acknowledgements.includes(event.EventId), 60000, () => 'the event was never acknowledged');
  // Acknowledged only after the drain: by then the final checkpoint is in S3.
  const store = new S3ObjectStore({ bucket: 'spot', config: d.s3.config });
  const atAck = (await listCommitted(store, 'azure')).map((c) => c.manifest.step);
  const finalStep = await verifyResume(t, d, submitted.jobId, noticeAt + 30_000);
  t.ok(atAck.includes(finalStep), `the final checkpoint (step ${finalStep}) was committed before the acknowledgement`);
});

void t.test('host shutdown: SIGTERM drains like a notice, and the job resumes elsewhere', async (t) => {
  const d = await drill(t, 'sigterm', { cloud: 'none', drainOnSigterm: 'always', sigtermWindowSeconds: 40 });
  const submitted = await runUntilCheckpointed(d, job('sigterm'));
  const noticeAt = Date.now();
  const code = await d.cluster.agents.get('spot-a')?.proc.stop('SIGTERM', 60000);
  t.equal(code, 0, 'the agent drained and left cleanly');
  t.match(d.cluster.agents.get('spot-a')?.proc.log() ?? '', /drain: 5\/5 final checkpoints reported/);
  await verifyResume(t, d, submitted.jobId, noticeAt + 40_000);
});

void t.test('planned maintenance: `stevedore drain NODE` drains it with a deadline', async (t) => {
  const d = await drill(t, 'maint', { cloud: 'none' });
  const submitted = await runUntilCheckpointed(d, job('maint'));
  const running = await d.cluster.client.getJob(submitted.jobId);
  const noticeAt = Date.now();
  await d.cluster.client.drainNode(running.attempts[0]?.nodeId ?? '', { reason: 'kernel upgrade', deadlineSeconds: 40 });
  await verifyResume(t, d, submitted.jobId, noticeAt + 40_000);
});

void t.test('hard loss: kill -9 of the agent and its container, no notice: the job resumes from the newest committed checkpoint after the lease', async (t) => {
  const s3 = await startS3Server({ buckets: ['spot'] });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-loss-'));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost, leaseSeconds: 4 });
  t.teardown(async () => {
    await cluster.close();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const s3Config = { s3: { endpoints: { default: s3.config } }, checkpoints: { partSizeMiB: 5, maxInFlightMiB: 32, rescanSeconds: 1 } };
  const a = await cluster.addAgent('lost-a', 1, { ...s3Config, labels: { zone: 'zone-a' } });
  const submitted = await cluster.client.submitJob(job('loss'));
  await waitUntil(async () => (await cluster.client.listCheckpoints(submitted.jobId)).length >= 2, 60000, () => 'no checkpoints');
  await cluster.addAgent('lost-b', 1, { ...s3Config, labels: { zone: 'zone-b' } });

  await a.proc.stop('SIGKILL');
  const engine = new DockerEngine({ dockerHost: env.dockerHost });
  for (const c of await engine.list({ [LABELS.jobId]: submitted.jobId })) await engine.remove(c.id);
  const newest = (await cluster.client.listCheckpoints(submitted.jobId))[0];

  const done = await cluster.waitForJob(submitted.jobId, ['succeeded', 'failed'], 120000);
  t.equal(done.state, 'succeeded');
  t.equal(done.attempts[0]?.state, 'ATTEMPT_STATE_LOST');
  t.equal(done.attempts[1]?.nodeId !== done.attempts[0]?.nodeId, true, 'resumed on the other node');
  const lines: string[] = [];
  for await (const l of cluster.client.streamLogs(submitted.jobId)) if (l.attempt === 2) lines.push(l.line?.text ?? '');
  const resumedAt = Number(lines.map((l) => /^resumed from step (\d+)/.exec(l)?.[1]).find(Boolean));
  t.ok(resumedAt >= (newest?.step ?? Infinity), `resumed from the newest committed checkpoint (step ${resumedAt}, newest seen ${newest?.step})`);
  t.equal(lines.filter((l) => /^step \d+\//.test(l)).length, STEPS - resumedAt, 'then ran the remaining steps once each');
});
