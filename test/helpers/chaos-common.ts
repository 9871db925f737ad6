// What the chaos drills (test/helpers/chaos-drills.ts) share: the figures they
// report, a checkpointing trainer, a watch on the job's containers, and the
// checks that count what was lost: committed checkpoints that no longer exist
// or verify, step lines missing or repeated, events stored twice, multipart
// uploads left open.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import { listCommitted } from '../../src/checkpoint/committed.ts';
import { contentMatches } from '../../src/checkpoint/manifest.ts';
import type { DockerEngine } from '../../src/engine/docker-engine.ts';
import { validateJobSpec, type JobSpec } from '../../src/spec/job-spec.ts';
import type { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import type { Cluster } from './cluster.ts';

/** One "tried N, lost 0" line of a drill. */
export interface Figure {
  /** What was tried, e.g. "kill -9 of the agent". */
  tried: string;
  count: number;
  /** What went wrong and how often: every target is 0 unless noted. */
  outcomes: { what: string; count: number; target?: number }[];
}

export interface DrillResult {
  drill: string;
  durationMs: number;
  figures: Figure[];
  /** Further facts worth keeping (counts of requests, checkpoints, ...). */
  details: Record<string, number | string | boolean>;
}

/** "tried 50 kill -9 of the agent: committed checkpoints lost 0, ..." */
export function figureLine(f: Figure): string {
  return `tried ${f.count} ${f.tried}: ${f.outcomes.map((o) => `${o.what} ${o.count}`).join(', ')}`;
}

/** Whether every outcome met its target (0 unless given). */
export function figuresPass(result: DrillResult): boolean {
  return result.figures.every((f) => f.outcomes.every((o) => o.count === (o.target ?? 0)));
}

export const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** mulberry32, seeded: the drills' random moments can be repeated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const BUCKET = 'stevedore-chaos';

export interface TrainerOptions {
  image: string;
  steps: number;
  stepSeconds: number;
  checkpointEvery: number;
  checkpointBytes: number;
  /** s3://BUCKET/<prefix>; none: no checkpoint section. */
  prefix?: string;
  gpus?: number;
  env?: Record<string, string>;
  resume?: boolean;
}

/** The stand-in trainer (test/fixtures/trainer/train.sh), checkpointing dcp-style; every committed checkpoint is kept. */
export function trainerSpec(name: string, o: TrainerOptions): JobSpec {
  return validateJobSpec({
    name,
    image: o.image,
    command: ['/stevedore/train.sh'],
    env: {
      TRAIN_STEPS: String(o.steps),
      TRAIN_STEP_SECONDS: String(o.stepSeconds),
      TRAIN_CKPT_EVERY: String(o.checkpointEvery),
      TRAIN_CKPT_DIR: '/ckpt',
      TRAIN_CKPT_BYTES: String(o.checkpointBytes),
      ...o.env,
    },
    resources: { gpus: o.gpus ?? 1 },
    pullPolicy: 'never',
    ...(o.prefix !== undefined ? { checkpoint: { path: '/ckpt', destination: `s3://${BUCKET}/${o.prefix}`, rule: 'dcp', keep: 10_000, resume: o.resume ?? true } } : {}),
  });
}

/**
 * Samples the engine's containers of one job every `everyMs`: the most that
 * ran at once (never more than 1), every container id seen, and each
 * container's start times (a container started again shows a new one).
 */
export class ContainerWatch {
  maxRunning = 0;
  samples = 0;
  readonly ids = new Set<string>();
  readonly startTimes = new Map<string, Set<number>>();
  private readonly timer: NodeJS.Timeout;
  private busy = false;
  errors = 0;

  constructor(engine: DockerEngine, jobId: string, everyMs = 250) {
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      engine
        .list({ [LABELS.jobId]: jobId })
        .then((list) => {
          this.samples += 1;
          this.maxRunning = Math.max(this.maxRunning, list.filter((c) => c.running).length);
          for (const c of list) {
            this.ids.add(c.id);
            if (c.startedAtMs !== undefined && c.startedAtMs > 0) {
              const set = this.startTimes.get(c.id) ?? new Set<number>();
              set.add(c.startedAtMs);
              this.startTimes.set(c.id, set);
            }
          }
        })
        .catch(() => {
          this.errors += 1;
        })
        .finally(() => {
          this.busy = false;
        });
    }, everyMs);
  }

  /** Times a container was started again after its first start. */
  get restarts(): number {
    let n = 0;
    for (const set of this.startTimes.values()) n += set.size - 1;
    return n;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/**
 * The trainer's checkpoints (dcp names step-NNNNNN every `every` steps up to
 * `steps`) against the committed ones: the uploader commits the newest first
 * and gives up an older one still uploading once a newer one commits, so a
 * checkpoint is superseded when a newer one committed, and lost when it is
 * newer than every committed one (the newest at the end must be committed).
 */
export function checkpointAccounting(committedNames: string[], steps: number, every: number): { written: number; committed: number; superseded: number; uncommittedNewest: number } {
  const written = every > 0 ? Math.floor(steps / every) : 0;
  const committedSteps = committedNames.map((n) => Number(/^step-(\d+)$/.exec(n)?.[1] ?? NaN)).filter((n) => Number.isFinite(n));
  const newest = committedSteps.length > 0 ? Math.max(...committedSteps) : 0;
  const uncommittedNewest = written - Math.floor(newest / Math.max(every, 1));
  return { written, committed: committedSteps.length, superseded: written - committedSteps.length - uncommittedNewest, uncommittedNewest };
}

/** The job's log lines at the coordinator. */
export async function jobLogLines(cluster: Cluster, jobId: string): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of cluster.client.streamLogs(jobId)) lines.push(line.line?.text ?? '');
  return lines;
}

/** Step lines "step N/M" of a run of `steps` steps after `from`: how many are missing, repeated or out of order. */
export function stepAccounting(lines: string[], steps: number, from = 0): { seen: number; missing: number; duplicated: number; outOfOrder: number } {
  const numbers = lines.map((l) => /^step (\d+)\//.exec(l)?.[1]).filter((s): s is string => s !== undefined).map(Number);
  const counts = new Map<number, number>();
  for (const n of numbers) counts.set(n, (counts.get(n) ?? 0) + 1);
  let missing = 0;
  for (let s = from + 1; s <= steps; s += 1) if (!counts.has(s)) missing += 1;
  let duplicated = 0;
  for (const c of counts.values()) duplicated += c - 1;
  let outOfOrder = 0;
  for (let i = 1; i < numbers.length; i += 1) if ((numbers[i] ?? 0) <= (numbers[i - 1] ?? 0)) outOfOrder += 1;
  return { seen: numbers.length, missing, duplicated, outOfOrder };
}

export interface StoredEvent {
  nodeId: string;
  eventId: number;
  kind: string;
  body: string;
}

/** The events the coordinator stored for a job, read from its database. */
export function storedEvents(cluster: Cluster, jobId: string): StoredEvent[] {
  const db = new DatabaseSync(path.join(cluster.dir, 'coordinator.db'), { readOnly: true });
  try {
    return db.prepare('SELECT node_id AS nodeId, event_id AS eventId, kind, body FROM events WHERE job_id = ? ORDER BY event_id').all(jobId) as unknown as StoredEvent[];
  } finally {
    db.close();
  }
}

/** Events of the job stored more than once, and commit events repeated for one checkpoint. */
export function eventAccounting(events: StoredEvent[]): { events: number; duplicated: number; commits: number; commitsDuplicated: number; exits: number } {
  const ids = new Set(events.map((e) => `${e.nodeId}/${e.eventId}`));
  const commitIds = new Map<string, number>();
  let exits = 0;
  for (const e of events) {
    if (/exited/i.test(e.kind)) exits += 1;
    if (!/checkpoint.?committed/i.test(e.kind)) continue;
    let id = `${e.eventId}`;
    try {
      const body = JSON.parse(e.body) as Record<string, unknown>;
      const inner = (body.checkpointCommitted ?? body.checkpoint_committed ?? body) as Record<string, unknown>;
      const named = inner.checkpointId ?? inner.checkpoint_id ?? inner.name;
      if (typeof named === 'string') id = named;
    } catch {
      // keep the event id
    }
    commitIds.set(id, (commitIds.get(id) ?? 0) + 1);
  }
  let commitsDuplicated = 0;
  for (const c of commitIds.values()) commitsDuplicated += c - 1;
  return { events: events.length, duplicated: events.length - ids.size, commits: commitIds.size, commitsDuplicated, exits };
}

/**
 * Every checkpoint the coordinator was told about, against the bucket: lost
 * when its manifest is gone, corrupt when an object differs from the
 * manifest's size or checksum, or (when the agent's copy is still on the host)
 * from the bytes the trainer wrote.
 */
export async function verifyCommitted(
  cluster: Cluster,
  store: S3ObjectStore,
  jobId: string,
  prefix: string,
  hostCheckpointDir?: string,
): Promise<{ told: number; committed: number; committedNames: string[]; lost: number; corrupt: number; filesVerified: number; comparedWithHost: number; mismatches: string[] }> {
  const told = await cluster.client.listCheckpoints(jobId);
  const committed = await listCommitted(store, prefix);
  const byId = new Map(committed.map((c) => [c.manifest.checkpointId, c.manifest]));
  let lost = 0;
  let corrupt = 0;
  let filesVerified = 0;
  let comparedWithHost = 0;
  const mismatches: string[] = [];
  for (const c of told) {
    const manifest = byId.get(c.checkpointId);
    if (!manifest) {
      lost += 1;
      continue;
    }
    let bad = false;
    for (const file of manifest.files) {
      let object: Buffer;
      try {
        object = await store.getObject(file.key);
      } catch {
        bad = true;
        continue;
      }
      filesVerified += 1;
      const digest = sha256(object);
      // The manifest's checksums (one per part in format v2, one per file in v1).
      if (object.length !== file.size || !contentMatches(file, object)) {
        bad = true;
        mismatches.push(`${manifest.name}/${file.path}: object of ${object.length} bytes does not match the manifest (${file.size} bytes)`);
      }
      if (hostCheckpointDir !== undefined) {
        let local: Buffer | undefined;
        try {
          local = readFileSync(path.join(hostCheckpointDir, manifest.name, file.path));
        } catch {
          local = undefined;
        }
        if (local !== undefined) {
          comparedWithHost += 1;
          if (sha256(local) !== digest) {
            bad = true;
            mismatches.push(`${manifest.name}/${file.path}: host copy ${local.length} bytes differs from the object`);
          }
        }
      }
    }
    if (bad) corrupt += 1;
  }
  return { told: told.length, committed: committed.length, committedNames: committed.map((c) => c.manifest.name), lost, corrupt, filesVerified, comparedWithHost, mismatches };
}
