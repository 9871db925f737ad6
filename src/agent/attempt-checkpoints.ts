// One attempt's checkpoints: restore the newest committed one before the
// container starts, then watch the checkpoint directory and upload while the
// job runs, and make the last one durable after it exits. Every commit and the
// restore are events for the coordinator.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { ByteBudget } from '../checkpoint/byte-budget.ts';
import { CheckpointUploader, type CommittedCheckpoint, type UploadMetrics, type UploadProgress } from '../checkpoint/checkpoint-uploader.ts';
import { CheckpointWatcher } from '../checkpoint/checkpoint-watcher.ts';
import { ruleFromSpec } from '../checkpoint/commit-rules.ts';
import { restoreNewest, type RestoreProgress } from '../checkpoint/restore.ts';
import type { CheckpointSpec } from '../spec/job-spec.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { Clock } from '../util/clock.ts';
import { asStevedoreError, messageOf } from '../util/errors.ts';
import { formatBytes } from '../util/size.ts';
import type { Logger } from '../util/logger.ts';
import type { EventJournal } from './event-journal.ts';
import type { AttemptProgress } from './attempt-progress.ts';

export interface CheckpointServices {
  /** The object store for a job's checkpoint section (endpoint and bucket). */
  storeFor(spec: CheckpointSpec): { store: ObjectStore; prefix: string };
  budget: ByteBudget;
  partSizeBytes: number;
  rescanMs: number;
  /** The node's checkpoint metrics, shared by every job. */
  metrics?: UploadMetrics;
}

export interface RestoredCheckpoint {
  /** Path of the restored checkpoint inside the container. */
  containerPath: string;
  step: number | null;
  checkpointId: string;
}

/** How long, after the container exits, the agent waits for its last checkpoint to become durable. */
export const FINAL_FLUSH_MS = 120_000;

export class AttemptCheckpoints {
  readonly hostDir: string;
  readonly spec: CheckpointSpec;
  private readonly services: CheckpointServices;
  private readonly journal: EventJournal;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly jobId: string;
  private readonly attempt: number;
  private readonly nodeId: string;
  private watcher: CheckpointWatcher | undefined;
  private uploader: CheckpointUploader | undefined;
  private readonly note: (text: string) => void;
  private readonly progress: AttemptProgress | undefined;
  /** What the uploader knew when it was closed, for the drain report. */
  private lastKnown: { checkpointId: string; step: number | null; committedMs: number } | undefined;

  constructor(opts: {
    jobId: string;
    attempt: number;
    nodeId: string;
    spec: CheckpointSpec;
    jobDir: string;
    services: CheckpointServices;
    journal: EventJournal;
    clock: Clock;
    logger: Logger;
    /** A line in the job's own log, for the people following it. */
    note: (text: string) => void;
    /** Where the restore's and the uploads' progress goes. */
    progress?: AttemptProgress;
  }) {
    this.note = opts.note;
    this.progress = opts.progress;
    this.jobId = opts.jobId;
    this.attempt = opts.attempt;
    this.nodeId = opts.nodeId;
    this.spec = opts.spec;
    this.services = opts.services;
    this.journal = opts.journal;
    this.clock = opts.clock;
    this.log = opts.logger.child({ component: 'checkpoints', destination: opts.spec.destination });
    this.hostDir = path.join(opts.jobDir, 'checkpoints');
    mkdirSync(this.hostDir, { recursive: true, mode: 0o755 });
  }

  /** The host directory to mount at spec.path. */
  mount(): { hostPath: string; containerPath: string; readOnly: boolean } {
    return { hostPath: this.hostDir, containerPath: this.spec.path, readOnly: false };
  }

  /**
   * Brings the newest committed checkpoint into the checkpoint directory,
   * falling back to older ones that verify; undefined when there is none.
   */
  async restore(signal?: AbortSignal): Promise<RestoredCheckpoint | undefined> {
    const { store, prefix } = this.services.storeFor(this.spec);
    const started = this.clock.now();
    const progress = this.progress;
    let result: Awaited<ReturnType<typeof restoreNewest>>;
    try {
      result = await restoreNewest({
        store, prefix, targetDir: this.hostDir, logger: this.log, clock: this.clock, ...(signal ? { signal } : {}),
        ...(progress ? { onProgress: (p: RestoreProgress) => progress.update('restore', { doneBytes: p.doneBytes, totalBytes: p.totalBytes, detail: p.checkpointId }) } : {}),
      });
    } finally {
      progress?.finish('restore');
    }
    const skipped = (result?.skipped ?? []).map((s) => `${s.checkpointId}: ${s.reason}`);
    this.journal.append({
      timeMs: this.clock.now(),
      jobId: this.jobId,
      attempt: this.attempt,
      body: {
        checkpointRestored: {
          checkpointId: result?.manifest.checkpointId ?? '',
          step: result?.manifest.step ?? -1,
          bytes: result?.bytes ?? 0,
          durationMs: this.clock.now() - started,
          skipped,
        },
      },
    });
    if (!result) return undefined;
    return { containerPath: path.posix.join(this.spec.path, result.manifest.name), step: result.manifest.step, checkpointId: result.manifest.checkpointId };
  }

  /** Starts watching and uploading; safe to call again after a restart of the agent. */
  async start(): Promise<void> {
    if (this.uploader) return;
    const { store, prefix } = this.services.storeFor(this.spec);
    const uploader = new CheckpointUploader({
      store,
      prefix,
      jobId: this.jobId,
      attempt: this.attempt,
      nodeId: this.nodeId,
      clock: this.clock,
      logger: this.log,
      partSizeBytes: this.services.partSizeBytes,
      budget: this.services.budget,
      keep: this.spec.keep,
      keepEvery: this.spec.keepEvery,
      onCommitted: (c) => this.committed(c, store.bucket),
      ...(this.progress ? { onProgress: (p: UploadProgress) => this.uploadProgress(p) } : {}),
      ...(this.services.metrics ? { metrics: this.services.metrics } : {}),
    });
    this.uploader = uploader;
    await uploader.start();
    const watcher = new CheckpointWatcher({ dir: this.hostDir, rule: ruleFromSpec(this.spec), clock: this.clock, logger: this.log, rescanMs: this.services.rescanMs });
    this.watcher = watcher;
    watcher.onChange((candidates) => uploader.update(candidates));
    await watcher.start();
  }

  /** The newest committed checkpoint of the job's destination, as the uploader knows it. */
  newestCommitted(): { checkpointId: string; step: number | null; committedMs: number } | undefined {
    const m = this.uploader?.committed()[0];
    return m ? { checkpointId: m.checkpointId, step: m.step, committedMs: m.committedMs } : this.lastKnown;
  }

  /** Resolves true once a checkpoint committed at or after `sinceMs` exists, false at `untilMs`. */
  async waitForCommitSince(sinceMs: number, untilMs: number, signal?: AbortSignal): Promise<boolean> {
    for (;;) {
      if ((this.newestCommitted()?.committedMs ?? 0) >= sinceMs) return true;
      const left = untilMs - this.clock.now();
      if (left <= 0 || signal?.aborted) return false;
      await this.clock.sleep(Math.min(200, left), signal).catch(() => undefined);
    }
  }

  /** After the container exited: make what it left durable before `deadlineMs` (clock time), then stop. */
  async finish(deadlineMs = this.clock.now() + FINAL_FLUSH_MS): Promise<void> {
    try {
      if (this.watcher && this.uploader) {
        this.uploader.update(await this.watcher.scanNow());
        await this.uploader.flush({ deadlineMs });
      }
    } catch (err) {
      this.log.error({ err: asStevedoreError(err, 'INTERNAL', 'final checkpoint upload') }, 'the last checkpoints could not all be made durable');
    } finally {
      const uploader = this.uploader;
      await this.close();
      // Nothing of this attempt uploads any more: no multipart upload is left open behind it.
      await uploader?.sweepOpenUploads().catch((err: unknown) => this.log.warn({ err: messageOf(err) }, 'multipart uploads left open under the destination could not all be aborted; the next attempt\'s start aborts them'));
    }
  }

  async close(): Promise<void> {
    this.lastKnown = this.newestCommitted();
    await this.watcher?.close();
    await this.uploader?.close();
    this.watcher = undefined;
    this.uploader = undefined;
  }

  private uploadProgress(p: UploadProgress): void {
    const snapshot = { doneBytes: p.doneBytes, totalBytes: p.totalBytes, detail: p.checkpointId };
    if (p.finished) this.progress?.finish('upload', snapshot);
    else this.progress?.update('upload', snapshot);
  }

  private committed(c: CommittedCheckpoint, bucket: string): void {
    const m = c.manifest;
    this.journalUntilStored({
      timeMs: this.clock.now(),
      jobId: this.jobId,
      attempt: this.attempt,
      body: {
        checkpointCommitted: {
          checkpointId: m.checkpointId,
          name: m.name,
          step: m.step ?? -1,
          totalBytes: m.totalBytes,
          uploadedBytes: m.uploadedBytes,
          files: m.files.length,
          lastWriteMs: m.lastWriteMs,
          committedMs: m.committedMs,
          timeToCommitMs: c.timeToCommitMs,
          manifestKey: c.manifestUrl,
        },
      },
    });
    this.log.info({ checkpointId: m.checkpointId, step: m.step, bytes: m.totalBytes, uploaded: m.uploadedBytes, timeToCommitMs: c.timeToCommitMs, bucket }, 'checkpoint committed');
    this.note(`checkpoint ${m.checkpointId} committed to ${c.manifestUrl.replace(/\/_stevedore\/manifest\.json$/, '/')} (${formatBytes(m.totalBytes)}, ${formatBytes(m.uploadedBytes)} uploaded, ${c.timeToCommitMs} ms after its last byte)`);
  }

  /**
   * Journals a commit event; while the state directory cannot take it (full,
   * read-only), tries again every second, so that the coordinator hears of every
   * committed checkpoint once the directory has room again.
   */
  private journalUntilStored(event: Parameters<EventJournal['append']>[0]): void {
    try {
      this.journal.append(event);
    } catch (err) {
      this.log.error({ err }, 'a committed checkpoint could not be journaled (the state directory is not writable); trying again every second');
      this.clock.setTimeout(() => this.journalUntilStored(event), 1000);
    }
  }
}
