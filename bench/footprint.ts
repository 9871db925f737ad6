// Footprint: what the agent costs the node. A real agent process (with a real
// coordinator and the private Docker engine) runs two sleeping training jobs
// that declare checkpoints (their watchers run); its resident memory is
// sampled every 100 ms from /proc and its CPU time read before and after, idle
// and then while a third job's 4 GiB checkpoint is uploaded. rclone uploading
// the same checkpoint to the same endpoint is the peer.
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateJobSpec, type JobSpec } from '../src/spec/job-spec.ts';
import { VERSION } from '../src/version.ts';
import { Cluster, waitUntil } from '../test/helpers/cluster.ts';
import { testEngineEnv } from '../test/helpers/engine.ts';
import { RssSampler, cpuSeconds } from './footprint-proc.ts';
import { RCLONE_REMOTE, rcloneVersion, runRclone } from './time-to-durable-rclone.ts';
import { startS3Child } from './time-to-durable-s3.ts';
import { CheckpointWriter, checkpointName } from './time-to-durable-writer.ts';
import { figure, ratio, type BenchResult, type Benchmark, type BenchOptions, type Figure, type Subject } from './types.ts';

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const MB = 1e6;
const BUCKET = 'footprint';

interface FootprintPlan {
  idleSeconds: number;
  uploadBytes: number;
  shards: number;
}

function plan(smoke: boolean): FootprintPlan {
  return smoke ? { idleSeconds: 3, uploadBytes: 64 * MIB, shards: 4 } : { idleSeconds: 20, uploadBytes: 4 * GIB, shards: 4 };
}

function sleepingJob(name: string): JobSpec {
  return validateJobSpec({
    name,
    image: testEngineEnv().trainerImage,
    command: ['/stevedore/train.sh'],
    env: { TRAIN_STEPS: '100000', TRAIN_STEP_SECONDS: '1', TRAIN_CKPT_EVERY: '0', TRAIN_CKPT_DIR: '/ckpt' },
    resources: { gpus: 1 },
    pullPolicy: 'never',
    stopGraceSeconds: 2,
    checkpoint: { path: '/ckpt', destination: `s3://${BUCKET}/${name}`, rule: 'dcp', keep: 2 },
  });
}

function mb(bytes: number): number {
  return Math.round((bytes / MB) * 10) / 10;
}

/** A figure from samples: the median sample, with the smallest and largest. */
function sampled(name: string, unit: string, values: number[]): Figure {
  return figure(name, unit, values, 'lower');
}

/** One value measured once (a peak, a rate over the whole window). */
function single(name: string, unit: string, value: number): Figure {
  return { name, unit, median: value, min: value, max: value, runs: 1, better: 'lower' };
}

export const footprint: Benchmark = async (opts: BenchOptions): Promise<BenchResult> => {
  const p = plan(opts.smoke);
  const size = p.uploadBytes >= GIB ? `${p.uploadBytes / GIB} GiB` : `${p.uploadBytes / MIB} MiB`;
  const gib = p.uploadBytes / GIB;
  const s3 = await startS3Child('sink', [BUCKET]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-bench-fp-'));
  const cluster = await Cluster.start(dir, { dockerHost: testEngineEnv().dockerHost });
  const writer = new CheckpointWriter();
  const subjects: Subject[] = [];
  let idleRss: number[];
  let idleCpuPercent: number;
  let uploadRss: number[];
  let uploadCpuPerGib: number;
  let uploadSeconds: number;
  try {
    const agent = await cluster.addAgent('footprint', 3, { s3: { endpoints: { default: s3.config } }, logLevel: 'info' });
    const pid = agent.proc.child?.pid;
    if (pid === undefined) throw new Error('the agent process has no pid');
    for (const name of ['idle-a', 'idle-b']) {
      const job = await cluster.client.submitJob(sleepingJob(name));
      await cluster.waitForJob(job.jobId, ['running']);
    }
    // Let the start-up settle (first scans, the first heartbeats) before measuring.
    await new Promise((r) => setTimeout(r, 2000));
    const idle = new RssSampler(pid);
    const cpu0 = cpuSeconds(pid) ?? 0;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, p.idleSeconds * 1000));
    idleCpuPercent = (100 * ((cpuSeconds(pid) ?? 0) - cpu0)) / ((Date.now() - t0) / 1000);
    idleRss = idle.stop();
    opts.log(`footprint: idle with 2 jobs: RSS median ${mb(idleRss[Math.floor(idleRss.length / 2)] ?? 0)} MB, CPU ${idleCpuPercent.toFixed(2)} % of a core`);

    const uploadJob = await cluster.client.submitJob(sleepingJob('upload'));
    await cluster.waitForJob(uploadJob.jobId, ['running']);
    const hostDir = path.join(agent.dir, 'work', uploadJob.jobId, 'checkpoints');
    const busy = new RssSampler(pid);
    const cpu1 = cpuSeconds(pid) ?? 0;
    const written = await writer.write({ dir: hostDir, step: 10, bytes: p.uploadBytes, shards: p.shards });
    await waitUntil(async () => (await cluster.client.listCheckpoints(uploadJob.jobId)).length > 0, 600_000, () => `the ${size} checkpoint was not committed; agent log tail:\n${agent.proc.log().slice(-3000)}`);
    const doneMs = Date.now();
    uploadSeconds = (doneMs - written.firstByteMs) / 1000;
    uploadCpuPerGib = ((cpuSeconds(pid) ?? 0) - cpu1) / gib;
    uploadRss = busy.stop();
    opts.log(`footprint: ${size} uploaded by the agent in ${uploadSeconds.toFixed(1)} s: peak RSS ${mb(Math.max(...uploadRss))} MB, ${uploadCpuPerGib.toFixed(2)} CPU s/GiB`);
    subjects.push({
      name: 'stevedore',
      version: VERSION,
      figures: [
        sampled('RSS idle, 2 jobs running', 'MB', idleRss.map(mb)),
        single('CPU idle, 2 jobs running', '% of a core', Math.round(idleCpuPercent * 100) / 100),
        single(`peak RSS while uploading ${size}`, 'MB', mb(Math.max(...uploadRss))),
        sampled(`RSS while uploading ${size}`, 'MB', uploadRss.map(mb)),
        single('CPU seconds per GiB uploaded', 'CPU s/GiB', Math.round(uploadCpuPerGib * 100) / 100),
      ],
    });

    const rclone = rcloneVersion();
    if (rclone) {
      const sampler = new RssSampler(undefined);
      const run = await runRclone(['copy', path.join(hostDir, checkpointName(10)), `${RCLONE_REMOTE}:${BUCKET}/rclone`], s3, (rclonePid) => sampler.follow(rclonePid));
      const samples = sampler.stop();
      opts.log(`footprint: ${size} uploaded by rclone in ${((run.endMs - run.startMs) / 1000).toFixed(1)} s: peak RSS ${mb(Math.max(...samples))} MB, ${(run.cpuSeconds / gib).toFixed(2)} CPU s/GiB`);
      subjects.push({
        name: 'rclone',
        version: rclone,
        figures: [
          single(`peak RSS while uploading ${size}`, 'MB', mb(Math.max(...samples))),
          sampled(`RSS while uploading ${size}`, 'MB', samples.map(mb)),
          single('CPU seconds per GiB uploaded', 'CPU s/GiB', Math.round((run.cpuSeconds / gib) * 100) / 100),
        ],
      });
    } else {
      opts.log('footprint: rclone is not installed; only Stevedore is measured');
    }
  } finally {
    await writer.close();
    await cluster.close();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const ours = subjects[0]!;
  const ratios = subjects.slice(1).flatMap((peer) =>
    peer.figures.flatMap((pf) => {
      const f = ours.figures.find((o) => o.name === pf.name);
      return f ? [{ figure: pf.name, peer: peer.name, ratio: ratio(f, pf) }] : [];
    }),
  );
  const idleMedian = ours.figures[0]!.median;
  const peak = ours.figures[2]!.median;
  return {
    id: 'footprint',
    title: 'Footprint',
    command: 'npm run bench -- --only footprint',
    method: [
      'A real agent process (with a real coordinator and the private Docker engine, logging at info) runs two sleeping training jobs that declare checkpoints, so their watchers run.',
      `Its resident memory (VmRSS) is sampled every 100 ms from /proc/PID/status and its CPU time (utime + stime from /proc/PID/stat) read at both ends: ${p.idleSeconds} s idle, then while a third job's ${size} checkpoint (${p.shards} shards, written at disk speed by a separate process) is uploaded, from its first byte to its commit.`,
      `rclone then uploads the same checkpoint with its defaults (\`rclone copy\`), its memory sampled the same way and its CPU time taken from its rusage. Both upload to the benchmark S3 sink in a process of its own. MB are 10^6 bytes.`,
      `The agent took ${uploadSeconds.toFixed(1)} s from the first byte written to the commit.`,
    ].join(' '),
    cases: [
      {
        name: `idle with 2 jobs, then a ${size} checkpoint`,
        subjects,
        ratios,
        targets: [
          { text: 'agent RSS under 100 MB idle', met: idleMedian < 100 && Math.max(...idleRss.map(mb)) < 100, detail: `median ${idleMedian} MB, at most ${Math.max(...idleRss.map(mb))} MB` },
          { text: `agent RSS under 250 MB while uploading ${size}`, met: peak < 250, detail: `peak ${peak} MB` },
        ],
      },
    ],
  };
};
