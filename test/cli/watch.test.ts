// A real run: the coordinator and an agent as processes, the test engine, and
// an S3 endpoint behind a proxy that holds every request back a little, so
// that the upload of a 32 MiB checkpoint takes a few seconds. The CLI shows
// its progress: `status JOB --watch --json` as JSON lines whose bytes move to
// the total and finish, `status JOB --watch` as plain lines (not a terminal).
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { Cluster } from '../helpers/cluster.ts';
import { testEngineEnv } from '../helpers/engine.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { runCli, startCli } from '../client/run-cli.ts';
import { eventually } from '../coordinator/fake-agent.ts';

const env = testEngineEnv();
const MiB = 1024 * 1024;

interface Line {
  state: string;
  progress: { phase: string; doneBytes: number; totalBytes: number; detail: string; finished: boolean } | null;
}

void t.test('the upload of a checkpoint is shown while it runs: JSON lines move to the total and finish, plain lines have no escape codes', async (t) => {
  const s3 = await startS3Server({ buckets: ['stevedore-test'] });
  const proxy = await startFaultProxy({ target: s3.endpoint, failureRate: 1, faults: ['stall'], stallMs: 400 });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-watch-'));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost });
  t.teardown(async () => {
    await cluster.close();
    await proxy.close();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await cluster.addAgent('agent-w', 1, {
    s3: { endpoints: { default: { ...s3.config, endpoint: proxy.endpoint } } },
    checkpoints: { partSizeMiB: 5, maxInFlightMiB: 32, rescanSeconds: 1 },
  });
  const specFile = path.join(dir, 'job.yaml');
  writeFileSync(specFile, stringify({
    name: 'watched',
    image: env.trainerImage,
    command: ['/stevedore/train.sh'],
    // Two slow steps leave the watchers time to start; then one 32 MiB checkpoint.
    env: { TRAIN_STEPS: '2', TRAIN_STEP_SECONDS: '2', TRAIN_CKPT_EVERY: '2', TRAIN_CKPT_DIR: '/ckpt', TRAIN_CKPT_BYTES: String(32 * MiB) },
    resources: { gpus: 1 },
    pullPolicy: 'never',
    checkpoint: { path: '/ckpt', destination: 's3://stevedore-test/runs/watched', rule: 'dcp' },
  }));
  const cliEnv = cluster.cliEnv;
  const submitted = await runCli(['submit', specFile], cliEnv);
  t.equal(submitted.code, 0, submitted.stderr);
  const jobId = submitted.stdout.trim();

  const json = startCli(['status', jobId, '--watch', '--json', '--poll-seconds', '0.2'], cliEnv);
  const plain = startCli(['status', jobId, '--watch', '--poll-seconds', '0.2'], cliEnv);
  const lines = (): Line[] => json.stdout().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);
  await eventually(() => lines().length > 0, 30_000);

  const [j, p] = await Promise.all([json.result, plain.result]);
  t.equal(j.code, 0, j.stderr);
  t.equal(p.code, 0, p.stderr);
  t.equal(lines().at(-1)?.state, 'succeeded');

  const upload = lines().flatMap((l) => (l.progress?.phase === 'upload' ? [l.progress] : []));
  t.ok(upload.length >= 2, `several upload updates were seen (${upload.length})`);
  t.ok(upload.every((u) => u.detail === 'step-000002' && u.totalBytes >= 32 * MiB), 'the checkpoint and its size');
  t.ok(upload.some((u) => !u.finished && u.doneBytes > 0 && u.doneBytes < u.totalBytes), 'seen part way');
  for (let i = 1; i < upload.length; i++) t.ok((upload[i]?.doneBytes ?? 0) >= (upload[i - 1]?.doneBytes ?? 0), 'the bytes only grow');
  const last = upload.at(-1);
  t.equal(last?.finished, true, 'the last update is the finished one');
  t.equal(last?.doneBytes, last?.totalBytes, 'all of it');

  const after = await runCli(['status', jobId, '--json'], cliEnv);
  const job = JSON.parse(after.stdout) as { attempts: Line[] };
  t.match(job.attempts[0]?.progress, { phase: 'upload', detail: 'step-000002', finished: true }, 'status JOB --json keeps the last operation, finished');

  t.notOk(p.stdout.includes('\x1b') || p.stdout.includes('\r'), 'no escape codes, no carriage returns');
  const out = p.stdout.trimEnd().split('\n');
  t.match(out.at(-2), /^uploaded step-000002 {2}\[#{12}\] {2}100% {2}\d+\.?\d*\/\d+\.?\d* MiB$/, 'the finished upload');
  t.equal(out.at(-1), `${jobId} succeeded: succeeded (exit code 0)`);
  for (const line of out.slice(0, -2)) t.match(line, /^uploading step-000002 {2}\[[#.]{12}\] +\d+% {2}\S+ \S+/, 'plain progress lines');
});
