// End to end: a training job's checkpoints become durable in a real
// S3-compatible server while it runs, are listed by `stevedore checkpoints`,
// and a job that resumes from the same destination starts from the newest.
import t from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { listCommitted } from '../../src/checkpoint/committed.ts';
import { contentMatches } from '../../src/checkpoint/manifest.ts';
import { validateJobSpec, type JobSpec } from '../../src/spec/job-spec.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { Cluster, waitUntil } from '../helpers/cluster.ts';
import { testEngineEnv } from '../helpers/engine.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';

const env = testEngineEnv();
const run = promisify(execFile);
const stevedore = path.resolve(import.meta.dirname, '..', '..', 'bin', 'stevedore.js');
const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

function trainer(name: string, trainEnv: Record<string, string>, prefix: string): JobSpec {
  return validateJobSpec({
    name,
    image: env.trainerImage,
    command: ['/stevedore/train.sh'],
    env: { TRAIN_STEP_SECONDS: '0.2', TRAIN_CKPT_EVERY: '4', TRAIN_CKPT_DIR: '/ckpt', TRAIN_CKPT_BYTES: String(6 * 1024 * 1024), ...trainEnv },
    resources: { gpus: 1 },
    pullPolicy: 'never',
    checkpoint: { path: '/ckpt', destination: `s3://stevedore-test/${prefix}`, rule: 'dcp', keep: 2 },
  });
}

void t.test('checkpoints are committed while the job runs, listed, and a new attempt resumes from the newest', async (t) => {
  const s3 = await startS3Server({ buckets: ['stevedore-test'] });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-ckpt-'));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost });
  t.teardown(async () => {
    await cluster.close();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await cluster.addAgent('agent-s3', 2, { s3: { endpoints: { default: s3.config } }, checkpoints: { partSizeMiB: 5, maxInFlightMiB: 64, rescanSeconds: 1 } });
  const store = new S3ObjectStore({ bucket: 'stevedore-test', config: s3.config });

  const first = await cluster.client.submitJob(trainer('first', { TRAIN_STEPS: '14', TRAIN_EXIT_CODE: '1' }, 'runs/one'));
  const ended = await cluster.waitForJob(first.jobId, ['failed', 'succeeded'], 90000);
  t.equal(ended.state, 'failed', 'the first job fails on purpose after step 14');

  // Steps 4, 8, 12 were checkpointed; retention keeps the newest two.
  const committed = await listCommitted(store, 'runs/one');
  t.same(committed.map((c) => c.manifest.name), ['step-000012', 'step-000008']);
  const local = path.join(dir, 'agent-s3', 'work', first.jobId, 'checkpoints', 'step-000012');
  for (const file of committed[0]?.manifest.files ?? []) {
    const object = await store.getObject(file.key);
    t.equal(sha256(object), sha256(readFileSync(path.join(local, file.path))), `${file.path}: the object equals the local file`);
    t.ok(contentMatches(file, object), `${file.path}: the manifest's part digests are the object's`);
  }

  // The coordinator heard of each commit; the CLI lists them.
  const listed = await cluster.client.listCheckpoints(first.jobId);
  t.same(listed.map((c) => c.name), ['step-000012', 'step-000008', 'step-000004']);
  t.ok(listed.every((c) => c.timeToCommitMs >= 0 && c.totalBytes > 6 * 1024 * 1024));
  const cli = await run(process.execPath, [stevedore, 'checkpoints', first.jobId, '--coordinator', cluster.address], { env: { ...process.env, ...cluster.cliEnv } });
  t.match(cli.stdout, /step-000012/);

  // A new job on the same destination resumes from step 12.
  const second = await cluster.client.submitJob(trainer('second', { TRAIN_STEPS: '16' }, 'runs/one'));
  const done = await cluster.waitForJob(second.jobId, ['failed', 'succeeded'], 90000);
  t.equal(done.state, 'succeeded');
  const logs: string[] = [];
  for await (const line of cluster.client.streamLogs(second.jobId)) logs.push(line.line?.text ?? '');
  t.ok(logs.some((l) => /restored step-000012/.test(l)), 'the agent says what it restored');
  t.ok(logs.includes('resumed from step 12'), 'the trainer resumed from the restored checkpoint');
  t.notOk(logs.some((l) => /^step (\d|1[0-2])\//.test(l)), 'no step up to 12 ran again');
  t.same((await listCommitted(store, 'runs/one')).map((c) => c.manifest.name), ['step-000016', 'step-000012']);
});

void t.test('Hugging Face style checkpoints through an S3 endpoint that fails 20% of requests: all committed and intact', async (t) => {
  const s3 = await startS3Server({ buckets: ['stevedore-test'] });
  const proxy = await startFaultProxy({ target: s3.endpoint, failureRate: 0.2, faults: ['503', 'reset', 'truncate', 'stall'], stallMs: 2000, seed: 7 });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-ckpt-'));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost });
  t.teardown(async () => {
    await cluster.close();
    await proxy.close();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await cluster.addAgent('agent-flaky', 1, {
    s3: { endpoints: { default: { ...s3.config, endpoint: proxy.endpoint } } },
    checkpoints: { partSizeMiB: 5, maxInFlightMiB: 32, rescanSeconds: 1 },
  });
  const spec = validateJobSpec({
    ...trainer('flaky', { TRAIN_STEPS: '12', TRAIN_CKPT_STYLE: 'hf', TRAIN_CKPT_BYTES: String(7 * 1024 * 1024) }, 'runs/flaky'),
    checkpoint: { path: '/ckpt', destination: 's3://stevedore-test/runs/flaky', rule: 'hf', quiescenceSeconds: 1, keep: 10 },
  });
  const job = await cluster.client.submitJob(spec);
  const done = await cluster.waitForJob(job.jobId, ['failed', 'succeeded'], 120000);
  t.equal(done.state, 'succeeded');
  t.ok((proxy.counts.requests ?? 0) > 0 && Object.entries(proxy.counts).some(([k, v]) => k !== 'requests' && k !== 'forwarded' && v > 0), 'faults were injected');

  const store = new S3ObjectStore({ bucket: 'stevedore-test', config: s3.config });
  const committed = await listCommitted(store, 'runs/flaky');
  t.same(committed.map((c) => c.manifest.name), ['checkpoint-12', 'checkpoint-8', 'checkpoint-4'], 'every checkpoint committed');
  for (const { manifest } of committed) {
    t.ok(manifest.files.some((f) => f.path === 'trainer_state.json'), `${manifest.name}: complete`);
    for (const file of manifest.files) {
      const object = await store.getObject(file.key);
      t.ok(contentMatches(file, object), `${manifest.name}/${file.path}: intact`);
      t.equal(object.length, file.size);
    }
  }
  t.equal((await store.listMultipartUploads('runs/flaky/')).length, 0, 'no multipart upload left open');
});

void t.test('kill -9 of the agent in the middle of a multipart upload: no partial commit, nothing left open, committed after the restart', async (t) => {
  const s3 = await startS3Server({ buckets: ['stevedore-test'] });
  // Every request is held back: uploads stay open long enough to be interrupted.
  const proxy = await startFaultProxy({ target: s3.endpoint, failureRate: 1, faults: ['stall'], stallMs: 1500, seed: 1 });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-ckpt-'));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost });
  t.teardown(async () => {
    await cluster.close();
    await proxy.close();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const agent = await cluster.addAgent('agent-k9', 1, {
    s3: { endpoints: { default: { ...s3.config, endpoint: proxy.endpoint } } },
    checkpoints: { partSizeMiB: 5, maxInFlightMiB: 32, rescanSeconds: 1 },
  });
  const store = new S3ObjectStore({ bucket: 'stevedore-test', config: s3.config });
  const job = await cluster.client.submitJob(trainer('k9', { TRAIN_STEPS: '20', TRAIN_CKPT_EVERY: '10', TRAIN_STEP_SECONDS: '0.3', TRAIN_CKPT_BYTES: String(24 * 1024 * 1024) }, 'runs/k9'));
  await waitUntil(async () => (await store.listMultipartUploads('runs/k9/')).length > 0, 60000, () => 'no multipart upload started');
  await agent.proc.stop('SIGKILL');
  t.same(await listCommitted(store, 'runs/k9'), [], 'the interrupted checkpoint has no manifest');
  t.ok((await store.listMultipartUploads('runs/k9/')).length > 0, 'its multipart upload is still open');

  proxy.setFailureRate(0);
  agent.proc.start();
  const done = await cluster.waitForJob(job.jobId, ['failed', 'succeeded'], 120000);
  t.equal(done.state, 'succeeded');
  t.equal(done.attempts.length, 1);
  const committed = await listCommitted(store, 'runs/k9');
  // step-000010 may have been given up for the newer step-000020 (the newest goes first); never half-committed.
  t.equal(committed[0]?.manifest.name, 'step-000020', 'the newest checkpoint is committed');
  for (const { manifest } of committed) {
    for (const file of manifest.files) t.ok(contentMatches(file, await store.getObject(file.key)), `${manifest.name}/${file.path}: intact`);
  }
  t.equal((await store.listMultipartUploads('runs/k9/')).length, 0, 'no multipart upload left open');
});
