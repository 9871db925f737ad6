// Time to durable: a trainer writes a checkpoint at disk speed; how long after
// its last byte is the checkpoint durable in S3? Stevedore (the agent's real
// watcher and uploader, streaming parts while the files grow, committing the
// manifest last) against what users run today: a sync every 5 s (DeepSquare's
// continuous sync, with rclone) and an upload after close (what a cached bucket
// mount does, with rclone copy). All three upload to the same S3 server.
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { ByteBudget } from '../src/checkpoint/byte-budget.ts';
import { CheckpointUploader } from '../src/checkpoint/checkpoint-uploader.ts';
import { CheckpointWatcher } from '../src/checkpoint/checkpoint-watcher.ts';
import { S3ObjectStore } from '../src/storage/s3-object-store.ts';
import { systemClock } from '../src/util/clock.ts';
import { silentLogger } from '../src/util/logger.ts';
import { VERSION } from '../src/version.ts';
import { cdfPlot, writePlot } from './svg.ts';
import { RCLONE_REMOTE, rcloneVersion, runRclone, type S3Credentials, type ToolRun } from './time-to-durable-rclone.ts';
import { startS3Child } from './time-to-durable-s3.ts';
import { CheckpointWriter, type WriteResult } from './time-to-durable-writer.ts';
import { figure, percentile, ratio, type BenchCase, type BenchResult, type Benchmark, type BenchOptions, type Figure, type Subject } from './types.ts';
import { missedNote } from './upload.ts';

const MIB = 1024 * 1024;
const BUCKET = 'ttd';
/** The agent's defaults (src/agent/agent-config.ts). */
const PART_SIZE = 16 * MIB;
const BUDGET = 256 * MIB;
const RESCAN_MS = 2000;
const WAIT_LIMIT_MS = 180_000;

interface CaseSize {
  label: string;
  bytes: number;
  shards: number;
  /** Checkpoints per subject. */
  runs: number;
}

interface Plan {
  cases: CaseSize[];
  syncPeriodMs: number;
}

function plan(smoke: boolean): Plan {
  if (smoke) {
    return { cases: [{ label: '16 MiB in 4 shards', bytes: 16 * MIB, shards: 4, runs: 2 }], syncPeriodMs: 1000 };
  }
  return {
    cases: [
      { label: '1 GiB in 4 shards', bytes: 1024 * MIB, shards: 4, runs: 5 },
      { label: '256 MiB in 4 shards', bytes: 256 * MIB, shards: 4, runs: 3 },
    ],
    syncPeriodMs: 5000,
  };
}

/** One strategy: prepare once, then make each checkpoint durable and say when it was. */
interface Strategy {
  name: string;
  version?: string;
  dir: string;
  /** Resolves with the time the checkpoint `name` (written at `written`) became durable. */
  durable(name: string, written: WriteResult): Promise<number>;
  /** After a measurement: drop what is no longer needed, locally and remotely. */
  tidy(name: string): Promise<void>;
  close(): Promise<void>;
}

function waitFor<T>(what: string, promise: Promise<T>, ms = WAIT_LIMIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function removeOlder(dir: string, keep: string): void {
  for (const name of readdirSync(dir)) if (name !== keep) rmSync(path.join(dir, name), { recursive: true, force: true });
}

/** The agent's watcher and uploader, as an attempt runs them. */
async function stevedoreStrategy(dir: string, store: S3ObjectStore, stats: { beforeComplete: number; sent: number }): Promise<Strategy> {
  const commits = new Map<string, number>();
  const waiters = new Map<string, (ms: number) => void>();
  const uploader = new CheckpointUploader({
    store,
    prefix: 'stevedore',
    jobId: 'bench',
    attempt: 1,
    nodeId: 'bench-node',
    clock: systemClock,
    logger: silentLogger(),
    partSizeBytes: PART_SIZE,
    budget: new ByteBudget(BUDGET),
    keep: 2,
    keepEvery: 0,
    onCommitted: (c) => {
      const at = Date.now();
      commits.set(c.manifest.name, at);
      waiters.get(c.manifest.name)?.(at);
    },
  });
  await uploader.start();
  const watcher = new CheckpointWatcher({ dir, rule: { kind: 'dcp' }, clock: systemClock, logger: silentLogger(), rescanMs: RESCAN_MS });
  watcher.onChange((candidates) => uploader.update(candidates));
  await watcher.start();
  return {
    name: 'stevedore',
    version: VERSION,
    dir,
    durable(name) {
      const done = commits.get(name);
      if (done !== undefined) return Promise.resolve(done);
      return waitFor(`the commit of ${name}`, new Promise<number>((resolve) => waiters.set(name, resolve)));
    },
    tidy(name) {
      removeOlder(dir, name);
      stats.beforeComplete = uploader.stats.bytesUploadedBeforeComplete;
      stats.sent = uploader.stats.bytesUploaded;
      return Promise.resolve();
    },
    async close() {
      await watcher.close();
      await uploader.close();
    },
  };
}

/** `rclone copy` of the checkpoint's directory, started when its last file is closed. */
function uploadAfterClose(dir: string, s3: S3Credentials, store: S3ObjectStore, version: string | undefined): Strategy {
  return {
    name: 'upload after close',
    ...(version ? { version: `rclone ${version}` } : {}),
    dir,
    async durable(name) {
      const run = await runRclone(['copy', path.join(dir, name), `${RCLONE_REMOTE}:${BUCKET}/copy/${name}`], s3);
      return run.endMs;
    },
    async tidy(name) {
      removeOlder(dir, '');
      const keys = (await store.listObjects(`copy/${name}/`)).map((o) => o.key);
      await store.deleteObjects(keys);
    },
    close: () => Promise.resolve(),
  };
}

/** `rclone sync` of the whole checkpoint directory, started every period (when the previous one has ended). */
class SyncLoop implements Strategy {
  readonly name: string;
  readonly version: string | undefined;
  readonly dir: string;
  readonly runs: (ToolRun & { ok: boolean })[] = [];
  private readonly s3: S3Credentials;
  private readonly periodMs: number;
  private stopped = false;
  private wake: (() => void) | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly loop: Promise<void>;
  private readonly log: (line: string) => void;

  constructor(dir: string, s3: S3Credentials, periodMs: number, version: string | undefined, log: (line: string) => void) {
    this.log = log;
    this.dir = dir;
    this.s3 = s3;
    this.periodMs = periodMs;
    this.name = `sync every ${periodMs / 1000} s`;
    this.version = version ? `rclone ${version}` : undefined;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      try {
        this.runs.push({ ...(await runRclone(['sync', '--size-only', this.dir, `${RCLONE_REMOTE}:${BUCKET}/sync`], this.s3, undefined, 120_000)), ok: true });
      } catch (err) {
        // A file that changed while it was read: rclone reports it, the next sync takes it.
        this.runs.push({ startMs: started, endMs: Date.now(), cpuSeconds: 0, ok: false });
        this.log(`time-to-durable: a sync failed (the next one tries again): ${err instanceof Error ? err.message : String(err)}`);
      }
      for (const l of [...this.listeners]) l();
      const left = started + this.periodMs - Date.now();
      if (left > 0 && !this.stopped) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    }
  }

  /** When the first successful sync that started after the checkpoint was complete ended. */
  durable(_name: string, written: WriteResult): Promise<number> {
    const find = (): number | undefined => this.runs.find((r) => r.ok && r.startMs >= written.completeMs)?.endMs;
    return waitFor(
      'a sync after the checkpoint',
      new Promise<number>((resolve) => {
        const check = (): void => {
          const at = find();
          if (at === undefined) return;
          this.listeners.delete(check);
          resolve(at);
        };
        this.listeners.add(check);
        check();
      }),
    );
  }

  /** Nothing stays behind: an unchanged checkpoint would cost a listing per sync while the other subjects are measured. */
  tidy(): Promise<void> {
    removeOlder(this.dir, '');
    return Promise.resolve();
  }

  async close(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }
}

function p95Figure(values: number[]): Figure {
  return { name: 'p95 time to durable', unit: 's', median: percentile(values, 95), min: Math.min(...values), max: Math.max(...values), runs: values.length, better: 'lower' };
}

export const timeToDurable: Benchmark = async (opts: BenchOptions): Promise<BenchResult> => {
  const p = plan(opts.smoke);
  const rclone = rcloneVersion();
  const s3 = await startS3Child('sink', [BUCKET]);
  const creds: S3Credentials = { endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey };
  const store = new S3ObjectStore({ bucket: BUCKET, config: s3.config });
  const writer = new CheckpointWriter();
  const cases: BenchCase[] = [];
  const plots: string[] = [];
  const writeSpeeds: number[] = [];
  const streamed = { beforeComplete: 0, sent: 0 };
  let step = 0;
  try {
    for (const size of p.cases) {
      const root = path.join(opts.workDir, `ttd-${size.bytes}`);
      const dirOf = (s: string): string => {
        const d = path.join(root, s);
        mkdirSync(d, { recursive: true });
        return d;
      };
      const strategies: Strategy[] = [await stevedoreStrategy(dirOf('stevedore'), store, streamed)];
      if (rclone) {
        strategies.push(new SyncLoop(dirOf('sync'), creds, p.syncPeriodMs, rclone, opts.log));
        strategies.push(uploadAfterClose(dirOf('copy'), creds, store, rclone));
      } else {
        opts.log('time-to-durable: rclone is not installed; only Stevedore is measured (apt-get install rclone for the peers)');
      }
      const times = new Map<string, number[]>(strategies.map((s) => [s.name, []]));
      try {
        for (let round = 0; round < size.runs; round++) {
          // Interleaved, in a rotating order: a noisy moment of the machine hits every subject alike.
          for (let k = 0; k < strategies.length; k++) {
            const s = strategies[(round + k) % strategies.length]!;
            step += 10;
            const written = await writer.write({ dir: s.dir, step, bytes: size.bytes, shards: size.shards });
            writeSpeeds.push(size.bytes / MIB / Math.max(0.001, (written.lastByteMs - written.firstByteMs) / 1000));
            const at = await s.durable(written.name, written);
            const seconds = Math.max(0, at - written.completeMs) / 1000;
            times.get(s.name)?.push(seconds);
            opts.log(`time-to-durable ${size.label} round ${round + 1}/${size.runs}: ${s.name} ${seconds.toFixed(2)} s (written in ${((written.completeMs - written.firstByteMs) / 1000).toFixed(2)} s)`);
            await s.tidy(written.name);
          }
        }
      } finally {
        for (const s of strategies) await s.close();
        rmSync(root, { recursive: true, force: true });
      }
      const subjects: Subject[] = strategies.map((s) => {
        const values = times.get(s.name) ?? [];
        return { name: s.name, ...(s.version ? { version: s.version } : {}), figures: [figure('time to durable', 's', values, 'lower'), p95Figure(values)] };
      });
      const ours = subjects[0]!;
      const ratios = subjects.slice(1).flatMap((peer) =>
        ours.figures.map((f, i) => ({ figure: f.name, peer: peer.name, ratio: ratio(f, peer.figures[i]!) })),
      );
      const p50 = ours.figures[0]!.median;
      cases.push({
        name: size.label,
        subjects,
        ratios,
        targets: [{ text: `p50 time to durable under 1 s for a ${size.label.split(' in ')[0]} checkpoint`, met: p50 < 1, detail: `p50 ${p50.toFixed(2)} s, p95 ${ours.figures[1]!.median.toFixed(2)} s over ${ours.figures[0]!.runs} checkpoints` }],
      });
      const file = `time-to-durable-${size.bytes >= 1024 * MIB ? `${size.bytes / 1024 / MIB}gib` : `${size.bytes / MIB}mib`}.svg`;
      plots.push(
        writePlot(
          opts.plotDir,
          file,
          cdfPlot({
            title: `Time to durable, ${size.label} written at disk speed`,
            xLabel: 'seconds from the last byte to durable in S3',
            series: subjects.map((s) => ({ name: s.name, values: times.get(s.name) ?? [] })),
            logX: true,
          }),
        ),
      );
    }
  } finally {
    await writer.close();
    await s3.close();
  }
  const speed = writeSpeeds.length > 0 ? Math.round(writeSpeeds.sort((a, b) => a - b)[Math.floor(writeSpeeds.length / 2)]!) : 0;
  const share = streamed.sent > 0 ? Math.round((100 * streamed.beforeComplete) / streamed.sent) : 0;
  return {
    id: 'time-to-durable',
    title: 'Time to durable',
    command: 'npm run bench -- --only time-to-durable',
    method: [
      `A trainer stand-in (its own process) writes each checkpoint in PyTorch DCP's layout at disk speed (median ${speed} MiB/s here): the shards in 8 MiB writes, then \`.metadata\` by rename; every block is unique, so nothing can be deduplicated.`,
      `Time to durable runs from the rename of \`.metadata\` (the trainer's last byte) to the moment the checkpoint is durable in S3: for Stevedore, when its manifest is written (the agent's real watcher and uploader, default part size ${PART_SIZE / MIB} MiB, upload memory ${BUDGET / MIB} MiB and 4 transfers: a part of a file is read, hashed once (SHA-256) and sent as soon as the file has grown by a whole part; once the checkpoint is complete the tails go up, every file that was streamed while it grew is hashed again from the page cache to prove what S3 holds, and the manifest is written);`,
      `for "sync every 5 s", when the first \`rclone sync\` of the checkpoint directory that started after that moment ends (a sync starts every ${p.syncPeriodMs / 1000} s, or when the previous one ends if it took longer; \`--size-only\` because the sink keeps no modification times, so rclone would try to set them with a server-side copy the sink does not do, and every checkpoint is new files anyway);`,
      'for "upload after close", when `rclone copy` of the checkpoint, started at that moment, ends.',
      `All three upload to the same endpoint on loopback, in a process of its own: the benchmark S3 sink (bench/s3-sink.ts), which checks and discards the bytes, so that the clients' own costs show as they would against S3 with ample bandwidth (s3rver, which stores every byte, caps every client near 60 to 100 MB/s here and hides the difference); each subject has its own directory, and the subjects take turns checkpoint by checkpoint. The figure "time to durable" is the median (p50) over the checkpoints; "p95 time to durable" is the 95th percentile (nearest rank).`,
      `Stevedore sent ${share}% of its bytes before the checkpoints were complete.`,
    ].join(' '),
    cases,
    plots,
    notes: missedNote(cases, TIME_TO_DURABLE_NOTES),
  };
};

const TIME_TO_DURABLE_NOTES = [
  'Only the tail counts: the clock starts at the trainer\'s last byte (the rename of `.metadata`), so whatever Stevedore sent while the checkpoint was being written costs nothing here, and what is still to send at that moment is the time to durable. The share sent before the last byte is in the method.',
  '',
  'A trainer writes into the page cache, and the stand-in here does so at the speed given in the method, which is far above what an upload reaches on 2 cores (compare the upload benchmark\'s throughput). When the writer is faster than the link, the uploader can only send the parts the files have grown by, a few at a time, while the writer has already finished: nearly the whole checkpoint is tail, and the time to durable is about the checkpoint\'s size over the upload speed, plus the commit (the last parts, the second hash of every streamed file that proves its content, the completion of each multipart upload and the manifest). A p50 under 1 s for a 1 GiB checkpoint therefore needs an uploader and a link that move the whole checkpoint within that second, or a trainer that writes more slowly than the link, so that the tail is the last part or two.',
  '',
  'The sync every 5 s and the upload after close send the whole checkpoint after its last byte (the sync also waits for its next start), so their time to durable is the full upload; Stevedore\'s lead over them is what streaming saved, and it grows as the writer slows down relative to the link.',
].join('\n');
