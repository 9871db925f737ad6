// Uploads a job's checkpoints to S3 while they are written, and commits each
// complete one by writing its manifest last.
//
// - Streaming: a file of a checkpoint still being written gets its next
//   multipart part as soon as it has grown by a whole part past what was sent
//   (read at the sent offset), so that when the checkpoint completes only the
//   tails are left.
// - One hash pass: each part is hashed once (SHA-256) as it is read; that
//   digest is the manifest's (format v2 lists each part's), the request's
//   signed payload hash and the server's checksum. No file is read twice,
//   except to prove a file that changed after it was read.
// - Proof: before the manifest is written, every file is stat'ed again; a file
//   whose size, modification or change time or inode changed since its bytes
//   were read is hashed again and, when its content differs, uploaded again.
//   Only the parts read before the file's last change are hashed again: a part
//   whose read began after it (the signature taken before that read equals the
//   file's now) is proven by that, exactly as a whole unchanged file is. A
//   streamed file of a checkpoint still being written that has stopped
//   changing (a shard the trainer closed) gets this re-read right away, so
//   that it is not left for the commit. The
//   manifest (written with If-None-Match) is the only thing that makes a
//   checkpoint exist, so nothing incomplete or unverified is ever used.
// - Dedupe: a file whose content equals a file of a committed checkpoint is not
//   uploaded; its manifest entry points at the existing object.
// - Priority: the newest checkpoint first. When a checkpoint commits, every
//   older one still uploading is abandoned (multipart uploads aborted, objects
//   left for retention, never committed).
// - Memory: every buffer comes from the node's ByteBudget.
// - Crash safety: start() aborts every multipart upload left under the prefix
//   (one attempt of the job runs at a time); a checkpoint without a manifest is
//   simply uploaded again.
// - Failures: S3 operations are retried with backoff for a bounded time; a
//   checkpoint that still cannot be uploaded is logged and tried again on the
//   next update. Nothing here crashes the agent.
import { createHash } from 'node:crypto';
import type { CompletedPart, ObjectStore } from '../storage/object-store.ts';
import { MAX_PART_BYTES, MAX_PARTS, MIN_PART_BYTES, partSizeFor } from '../storage/object-store.ts';
import { Backoff } from '../util/backoff.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { StevedoreError, isStevedoreError, messageOf, type ErrorCode } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { ByteBudget } from './byte-budget.ts';
import type { CheckpointCandidate } from './commit-rules.ts';
import { applyRetention, listCommitted } from './committed.ts';
import { hashFile, hashParts, mtimeMsOf, readRange, sameSignature, statSignature, type FileSignature } from './file-hash.ts';
import { MANIFEST_FORMAT, compareNewestFirst, contentId, fileKey, joinKey, manifestKey, parseManifest, serializeManifest, type Manifest, type ManifestFile } from './manifest.ts';

export interface CommittedCheckpoint {
  manifest: Manifest;
  /** s3://bucket/key of the manifest. */
  manifestUrl: string;
  /** committedMs - lastWriteMs (the newest file's modification time). */
  timeToCommitMs: number;
}

/** What an uploader tells the node's metrics (src/agent/agent-metrics.ts). */
export interface UploadMetrics {
  /** Bytes sent to the object store (parts and whole objects), as each one is sent. */
  bytesUploaded(bytes: number): void;
  /** A checkpoint's manifest was written: it exists now. */
  committed(c: CommittedCheckpoint): void;
  /** A commit round ended without a manifest: failed (tried again on the next change) or abandoned for a newer checkpoint. */
  notCommitted(result: 'failed' | 'abandoned'): void;
  /** Registers a count of this uploader's checkpoints with transfers under way, read when metrics are collected; returns the unregister. */
  trackInFlight(count: () => number): () => void;
}

/** The upload of one checkpoint so far. */
export interface UploadProgress {
  checkpointId: string;
  name: string;
  /** At most totalBytes. */
  doneBytes: number;
  /** The checkpoint's files as last seen; a checkpoint still being written grows. */
  totalBytes: number;
  /** Committed, failed for this round, or abandoned. */
  finished: boolean;
}

export interface UploaderStats {
  /** Every byte sent (parts and whole objects), including parts of uploads later restarted or abandoned. */
  bytesUploaded: number;
  /** Multipart parts sent. */
  partsUploaded: number;
  /** Bytes of parts sent while their checkpoint was not complete yet. */
  bytesUploadedBeforeComplete: number;
  /** Bytes of committed files not uploaded because an identical object existed. */
  reusedBytes: number;
  /** Files uploaded again because they changed after their bytes were read. */
  reuploadedFiles: number;
  /** Parts read and hashed a second time before a commit, because their file changed after they were read (streamed while it grew). */
  reverifiedParts: number;
  /** Checkpoints given up because a newer one committed first. */
  abandonedCheckpoints: number;
}

export interface CheckpointUploaderOptions {
  store: ObjectStore;
  /** Key prefix of the job's checkpoints (no trailing slash; '' for the bucket's root). */
  prefix: string;
  jobId: string;
  attempt: number;
  nodeId: string;
  clock: Clock;
  logger: Logger;
  /** Preferred multipart part size; raised for large files (at most 10,000 parts). */
  partSizeBytes: number;
  /** Upload memory shared by all jobs of the agent. */
  budget: ByteBudget;
  /** Committed checkpoints to keep (newest), and every keepEvery-th step too (0: none). */
  keep: number;
  keepEvery: number;
  onCommitted: (c: CommittedCheckpoint) => void;
  /** Bytes of a checkpoint sent (or found already in the store) out of its total, as parts go out; finished once when it commits or gives up. */
  onProgress?: (p: UploadProgress) => void;
  /** Transfers (parts, objects, hashing passes) of this job at once. Default 4. */
  concurrency?: number;
  /** How long one S3 operation is retried before the checkpoint fails for this round. Default 60,000 ms. */
  retryForMs?: number;
  /** The multipart part limit; S3's is 10,000 (the default). Lower it only to test part-size growth. */
  maxParts?: number;
  /** The node's metrics, when it keeps them. */
  metrics?: UploadMetrics;
}

const DEFAULT_CONCURRENCY = 4;
const DEFAULT_RETRY_FOR_MS = 60_000;
const MAX_ATTEMPTS_PER_OPERATION = 12;
/** Parts of one file read ahead while earlier ones are still being sent, at commit time. */
const PARTS_IN_FLIGHT_PER_FILE = 3;
/** Buffer of a hashing pass. */
const HASH_BUFFER_BYTES = 1024 * 1024;
/** A streamed file unchanged for this long while its checkpoint is still written has its parts proven before the commit. */
const QUIET_MS = 500;
/**
 * Early proofs per file: a file that changes again after one (a trainer that
 * pauses mid-file) would otherwise be read again at every pause; past this,
 * the commit proves it.
 */
const MAX_EARLY_PROOFS = 2;
/** Verification rounds before a file that keeps changing fails the checkpoint for this round. */
const MAX_VERIFY_ROUNDS = 3;
/** How long close() spends aborting the multipart uploads still open. */
const CLOSE_ABORT_MS = 10_000;
const MIB = 1024 * 1024;

interface Multipart {
  key: string;
  uploadId: string;
  partSize: number;
  parts: CompletedPart[];
  /** Hex SHA-256 of each part read, by part number - 1. */
  digests: string[];
  /** Bytes read and hashed (sent or being sent), from 0. */
  offset: number;
  /**
   * The file's signature before its first byte was read. Appends and writes
   * in place look alike to stat, so a file that changed since then (every file
   * streamed while it grew) is hashed again before its checkpoint commits.
   */
  firstSignature: FileSignature | undefined;
  /** The file's signature before each part's read, by part number - 1. */
  partSignatures: FileSignature[];
}

interface FileTrack {
  path: string;
  absPath: string;
  /** Size as the last candidate reported it. */
  size: number;
  /** Modification time as the last candidate reported it. */
  mtimeMs: number;
  /** `size:mtimeMs` of the last early proof of the streamed parts (see prove), so that it runs once per state of the file. */
  proven: string | undefined;
  /** Early proofs started for this file. */
  proofs: number;
  mp: Multipart | undefined;
  /** The streaming pump, while it runs. */
  pump: Promise<void> | undefined;
  /** A streaming failure: no new pump until the next update. */
  blocked: boolean;
}

interface FileDone {
  path: string;
  absPath: string;
  size: number;
  /** The manifest's part size and hex SHA-256 of each part. */
  partSize: number;
  parts: string[];
  key: string;
  /** Bytes sent for this file's final content (0 when reused). */
  uploadedBytes: number;
  signature: FileSignature;
  /**
   * For each part, a signature of the file taken before that part's bytes were
   * read: while the file still has it, the part's bytes in S3 are the file's.
   */
  partSignatures: FileSignature[];
}

type VersionState = 'active' | 'committed' | 'abandoned' | 'dropped';

/** One checkpoint as written once: a rewrite in place of a committed one is a new version. */
interface Version {
  name: string;
  id: string;
  firstSeenMs: number;
  candidate: CheckpointCandidate;
  files: Map<string, FileTrack>;
  state: VersionState;
  controller: AbortController;
  /** finalize() queued or running. */
  finalizing: boolean;
  /** The last finalize failed: not tried again before the next update (or flush). */
  failed: boolean;
  /** Files whose content S3 holds (by path), kept across commit rounds: unchanged ones are not sent again. */
  done: Map<string, FileDone>;
  /** Of the candidate when the version stopped being active: a different one is a rewrite. */
  fingerprint: string | undefined;
  committed: CommittedCheckpoint | undefined;
  /** Bytes sent for this version, or reused, for its progress. */
  sentBytes: number;
  /** Progress was reported for this version (its end is then reported too). */
  progressReported: boolean;
}

/** Grants at most `size` holders at once, the best-ranked waiter first (lower rank is better). */
class RankedSlots {
  private used = 0;
  private seq = 0;
  private readonly waiters: { rank: () => number; seq: number; grant: (r: () => void) => void; cancel: () => void }[] = [];
  private readonly size: number;

  constructor(size: number) {
    this.size = size;
  }

  acquire(rank: () => number, signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(abortError(signal));
    return new Promise((resolve, reject) => {
      const waiter = {
        rank,
        seq: this.seq++,
        grant: (release: () => void) => {
          signal.removeEventListener('abort', onAbort);
          resolve(release);
        },
        cancel: () => undefined,
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(abortError(signal));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.drain();
    });
  }

  private drain(): void {
    while (this.used < this.size && this.waiters.length > 0) {
      let best = 0;
      for (let i = 1; i < this.waiters.length; i++) {
        const a = this.waiters[i]!;
        const b = this.waiters[best]!;
        const ra = a.rank();
        const rb = b.rank();
        if (ra < rb || (ra === rb && a.seq < b.seq)) best = i;
      }
      const [waiter] = this.waiters.splice(best, 1);
      this.used++;
      let released = false;
      waiter!.grant(() => {
        if (released) return;
        released = true;
        this.used--;
        this.drain();
      });
    }
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new StevedoreError('INTERNAL', 'checkpoint upload cancelled', { cause: reason });
}

/** Errors a retry cannot fix: wrong credentials or policy, a key that exists, an upload that is gone, a local file. */
const PERMANENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['OBJECT_STORE_ACCESS_DENIED', 'OBJECT_EXISTS', 'OBJECT_NOT_FOUND', 'CONFIG_INVALID', 'UPLOAD_MISMATCH']);

function isRetryableStoreError(err: unknown): boolean {
  if (isStevedoreError(err)) return !PERMANENT_CODES.has(err.code);
  return !(err instanceof Error && err.name === 'AbortError');
}

/** Awaits every promise (none is left running), then throws the first failure. */
async function settleAll<T>(promises: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((r) => (r as PromiseFulfilledResult<T>).value);
}

/** The part size for a file of `size` bytes with at most `maxParts` parts. */
function choosePartSize(size: number, preferred: number, maxParts: number): number {
  const base = partSizeFor(size, preferred);
  const needed = Math.ceil(Math.ceil(size / maxParts) / MIB) * MIB;
  return Math.min(MAX_PART_BYTES, Math.max(base, needed));
}

function fingerprintOf(c: CheckpointCandidate): string {
  return JSON.stringify([c.complete, c.files.map((f) => [f.path, f.size, f.mtimeMs, f.ino])]);
}

function sameContent(a: readonly ManifestFile[], b: readonly ManifestFile[]): boolean {
  if (a.length !== b.length) return false;
  const byPath = new Map(b.map((f) => [f.path, f]));
  return a.every((f) => {
    const o = byPath.get(f.path);
    return o !== undefined && contentId(o) === contentId(f);
  });
}

export class CheckpointUploader {
  readonly stats: UploaderStats = { bytesUploaded: 0, partsUploaded: 0, bytesUploadedBeforeComplete: 0, reusedBytes: 0, reuploadedFiles: 0, reverifiedParts: 0, abandonedCheckpoints: 0 };

  private readonly store: ObjectStore;
  private readonly prefix: string;
  private readonly jobId: string;
  private readonly attempt: number;
  private readonly nodeId: string;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly partSizeBytes: number;
  private readonly budget: ByteBudget;
  private readonly keep: number;
  private readonly keepEvery: number;
  private readonly onCommitted: (c: CommittedCheckpoint) => void;
  private readonly onProgress: ((p: UploadProgress) => void) | undefined;
  private readonly retryForMs: number;
  private readonly maxParts: number;
  private readonly slots: RankedSlots;
  private readonly metrics: UploadMetrics | undefined;
  private readonly untrackInFlight: (() => void) | undefined;

  /** Committed manifests of the prefix, newest first. */
  private committedList: Manifest[] = [];
  /** Content (see contentId) -> an object holding it, from the committed manifests. */
  private known = new Map<string, string>();
  private readonly versions = new Map<string, Version>();
  /** Versions given up whose transfers are still settling: their ids are not reused until then. */
  private readonly retiring = new Set<Version>();
  private candidates: CheckpointCandidate[] = [];
  private readonly sessionCommits: CommittedCheckpoint[] = [];
  /** Multipart uploads this uploader opened and has not completed or aborted. */
  private readonly openUploads = new Map<string, string>();
  private readonly tasks = new Set<Promise<unknown>>();
  /** Commits (and retention) run one at a time. */
  private commitChain: Promise<void> = Promise.resolve();
  private readonly progressWaiters = new Set<() => void>();

  private started = false;
  private closing = false;
  private closed: Promise<void> | undefined;
  private planning = false;
  private replan = false;
  private readonly closeController = new AbortController();

  constructor(opts: CheckpointUploaderOptions) {
    if (!Number.isSafeInteger(opts.partSizeBytes) || opts.partSizeBytes < MIN_PART_BYTES || opts.partSizeBytes > MAX_PART_BYTES) {
      throw new StevedoreError('CONFIG_INVALID', `checkpoint part size must be between 5 MiB and 5 GiB (S3's multipart limits), got ${String(opts.partSizeBytes)} bytes`);
    }
    if (!Number.isInteger(opts.keep) || opts.keep < 1) throw new StevedoreError('CONFIG_INVALID', `checkpoint keep must be at least 1 (the newest is always kept), got ${String(opts.keep)}`);
    if (!Number.isInteger(opts.keepEvery) || opts.keepEvery < 0) throw new StevedoreError('CONFIG_INVALID', `checkpoint keepEvery must be 0 (none) or a positive step interval, got ${String(opts.keepEvery)}`);
    const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new StevedoreError('CONFIG_INVALID', `checkpoint upload concurrency must be at least 1, got ${String(concurrency)}`);
    const maxParts = opts.maxParts ?? MAX_PARTS;
    if (!Number.isInteger(maxParts) || maxParts < 2 || maxParts > MAX_PARTS) throw new StevedoreError('CONFIG_INVALID', `maxParts must be between 2 and ${MAX_PARTS}, got ${String(maxParts)}`);
    this.store = opts.store;
    this.prefix = opts.prefix.replace(/\/+$/, '');
    this.jobId = opts.jobId;
    this.attempt = opts.attempt;
    this.nodeId = opts.nodeId;
    this.clock = opts.clock;
    this.log = opts.logger.child({ component: 'checkpoint-uploader', bucket: opts.store.bucket, prefix: this.prefix });
    this.partSizeBytes = opts.partSizeBytes;
    this.budget = opts.budget;
    this.keep = opts.keep;
    this.keepEvery = opts.keepEvery;
    this.onCommitted = opts.onCommitted;
    this.onProgress = opts.onProgress;
    this.retryForMs = opts.retryForMs ?? DEFAULT_RETRY_FOR_MS;
    this.maxParts = maxParts;
    this.slots = new RankedSlots(concurrency);
    this.metrics = opts.metrics;
    this.untrackInFlight = opts.metrics?.trackInFlight(() => this.uploadsInFlight());
  }

  /** Checkpoints with transfers under way: streaming parts, or being completed and committed. */
  uploadsInFlight(): number {
    let n = 0;
    for (const v of this.versions.values()) {
      if (v.state === 'active' && (v.finalizing || [...v.files.values()].some((f) => f.pump !== undefined || f.mp !== undefined))) n++;
    }
    return n;
  }

  /** Committed checkpoints of the prefix known to this uploader, newest first. */
  committed(): Manifest[] {
    return [...this.committedList];
  }

  /**
   * Aborts the multipart uploads left open under the prefix (by an earlier run
   * killed mid-upload), then loads the committed manifests. Throws when S3
   * cannot be reached within the retry window.
   */
  async start(): Promise<void> {
    if (this.started || this.closing) return;
    const signal = this.closeController.signal;
    const head = this.prefix === '' ? '' : `${this.prefix}/`;
    const stale = await this.s3('list the multipart uploads', head, signal, () => this.store.listMultipartUploads(head, { signal }));
    for (const upload of stale) {
      await this.s3('abort a stale multipart upload', upload.key, signal, () => this.store.abortMultipartUpload(upload.key, upload.uploadId, { signal }));
    }
    if (stale.length > 0) this.log.info({ aborted: stale.length }, `aborted ${stale.length} multipart upload(s) left open under s3://${this.store.bucket}/${head} by an earlier run`);
    const committed = await this.s3('list the committed checkpoints', head, signal, () => listCommitted(this.store, this.prefix, this.log));
    this.setCommitted(committed.map((c) => c.manifest));
    this.started = true;
    this.log.debug({ committed: this.committedList.length }, 'checkpoint uploader started');
    this.update(this.candidates);
  }

  /** All current candidates, newest first. Never throws; schedules the work. */
  update(candidates: CheckpointCandidate[]): void {
    if (this.closing) return;
    try {
      this.candidates = [...candidates];
      // Ids are chosen against the committed manifests: wait for start() to load them.
      if (!this.started) return;
      const names = new Set<string>();
      for (const c of candidates) {
        names.add(c.name);
        let v = this.versions.get(c.name);
        if (v && v.state !== 'active') {
          if (fingerprintOf(c) === v.fingerprint) continue;
          // The same name with other files: a rewrite in place, a new checkpoint.
          this.versions.delete(c.name);
          v = undefined;
        }
        if (!v) {
          v = this.newVersion(c);
          this.versions.set(c.name, v);
          continue;
        }
        v.candidate = c;
        v.failed = false;
        this.syncFiles(v);
      }
      for (const v of [...this.versions.values()]) {
        if (names.has(v.name)) continue;
        this.versions.delete(v.name);
        // Gone locally: nothing more can be read. Nothing in S3 is deleted because of it.
        if (v.state === 'active') this.retire(v, 'dropped', 'its files were removed locally before it was committed');
      }
      this.abandonOlderThanCommitted();
      this.kick();
    } catch (err) {
      this.log.error({ err: messageOf(err) }, 'checkpoint update failed; the next update retries');
    }
  }

  /**
   * Uploads and commits every complete checkpoint now (newest first) and waits
   * for it, until `deadlineMs` (clock time) or the signal. Returns the newest
   * checkpoint committed by this uploader (or found already committed), if any.
   */
  async flush(opts: { deadlineMs?: number; signal?: AbortSignal } = {}): Promise<CommittedCheckpoint | undefined> {
    for (const v of this.versions.values()) v.failed = false;
    this.kick();
    let timer: Timer | undefined;
    let expired = false;
    const wake = new Set<() => void>();
    if (opts.deadlineMs !== undefined) {
      timer = this.clock.setTimeout(() => {
        expired = true;
        for (const w of wake) w();
      }, Math.max(0, opts.deadlineMs - this.clock.now()));
    }
    const onAbort = (): void => {
      for (const w of wake) w();
    };
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      while (!expired && !opts.signal?.aborted && !this.closing && this.started && this.hasCompleteWork()) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            wake.delete(done);
            this.progressWaiters.delete(done);
            resolve();
          };
          wake.add(done);
          this.progressWaiters.add(done);
        });
      }
      if (expired && this.hasCompleteWork()) this.log.warn('checkpoint flush: the deadline passed before every complete checkpoint was committed');
    } finally {
      timer?.cancel();
      opts.signal?.removeEventListener('abort', onAbort);
    }
    return this.newestSessionCommit();
  }

  /**
   * After close(), once the attempt's last checkpoints are settled: aborts every
   * multipart upload still open under the prefix. Some are unknown to this
   * uploader (a CreateMultipartUpload whose answer was lost made the server open
   * one the client never heard of) and some aborts failed at close(). Returns how
   * many were aborted; S3 failures are retried for up to 30 s, then thrown.
   */
  async sweepOpenUploads(): Promise<number> {
    const signal = AbortSignal.timeout(30_000);
    const head = this.prefix === '' ? '' : `${this.prefix}/`;
    const open = await this.s3('list the multipart uploads', head, signal, () => this.store.listMultipartUploads(head, { signal }));
    for (const upload of open) {
      await this.s3('abort a leftover multipart upload', upload.key, signal, () => this.store.abortMultipartUpload(upload.key, upload.uploadId, { signal }));
    }
    if (open.length > 0) this.log.info({ aborted: open.length }, `aborted ${open.length} multipart upload(s) left open under s3://${this.store.bucket}/${head}`);
    return open.length;
  }

  /** Stops all work; multipart uploads in flight are aborted. Safe to call twice. */
  close(): Promise<void> {
    this.closed ??= this.doClose();
    return this.closed;
  }

  private async doClose(): Promise<void> {
    this.closing = true;
    this.wakeTimer?.cancel();
    this.wakeTimer = undefined;
    this.untrackInFlight?.();
    const reason = new StevedoreError('INTERNAL', 'checkpoint uploader closed');
    this.closeController.abort(reason);
    for (const v of this.versions.values()) v.controller.abort(reason);
    for (const v of this.retiring) v.controller.abort(reason);
    this.progress();
    while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
    const timeout = AbortSignal.timeout(CLOSE_ABORT_MS);
    await Promise.allSettled(
      [...this.openUploads].map(async ([uploadId, key]) => {
        try {
          await this.store.abortMultipartUpload(key, uploadId, { signal: timeout });
          this.openUploads.delete(uploadId);
        } catch (err) {
          this.log.warn({ key, err: messageOf(err) }, `could not abort the multipart upload of s3://${this.store.bucket}/${key}; the next start aborts it (or an AbortIncompleteMultipartUpload lifecycle rule does)`);
        }
      }),
    );
  }

  // ---- planning ---------------------------------------------------------------

  private newVersion(c: CheckpointCandidate): Version {
    const v: Version = {
      name: c.name,
      id: this.chooseId(c.name),
      firstSeenMs: this.clock.now(),
      candidate: c,
      files: new Map(),
      state: 'active',
      controller: new AbortController(),
      finalizing: false,
      failed: false,
      done: new Map(),
      fingerprint: undefined,
      committed: undefined,
      sentBytes: 0,
      progressReported: false,
    };
    this.syncFiles(v);
    return v;
  }

  /** The first free id: the name, then name.r2, name.r3, ... (an id is free when no committed manifest, and no upload still settling, uses keys under it). */
  private chooseId(name: string): string {
    const busy = new Set<string>();
    for (const v of this.versions.values()) busy.add(v.id);
    for (const v of this.retiring) busy.add(v.id);
    const usedDirs = new Set<string>();
    for (const m of this.committedList) {
      usedDirs.add(m.checkpointId);
      for (const f of m.files) {
        const rest = this.prefix === '' ? f.key : f.key.slice(this.prefix.length + 1);
        const dir = rest.split('/')[0];
        if (dir !== undefined) usedDirs.add(dir);
      }
    }
    for (let n = 1; ; n++) {
      const id = n === 1 ? name : `${name}.r${n}`;
      if (!busy.has(id) && !usedDirs.has(id)) return id;
    }
  }

  private syncFiles(v: Version): void {
    const seen = new Set<string>();
    for (const f of v.candidate.files) {
      seen.add(f.path);
      const track = v.files.get(f.path);
      if (track) {
        track.size = f.size;
        track.mtimeMs = f.mtimeMs;
        track.absPath = f.absPath;
        track.blocked = false;
      } else {
        v.files.set(f.path, { path: f.path, absPath: f.absPath, size: f.size, mtimeMs: f.mtimeMs, mp: undefined, pump: undefined, blocked: false, proven: undefined, proofs: 0 });
      }
    }
    for (const [path, track] of [...v.files]) {
      if (seen.has(path)) continue;
      v.files.delete(path);
      v.done.delete(path);
      // A file that disappeared (a temporary file): drop its upload once its pump stops.
      this.track(
        (track.pump ?? Promise.resolve()).then(async () => {
          const mp = track.mp;
          track.mp = undefined;
          if (mp) await this.abortUpload(mp, this.closeController.signal);
        }),
      );
    }
  }

  /** Position of a version in the newest-first order, finalize work before streaming. */
  private rank(v: Version, finalize: boolean): number {
    const i = this.candidates.findIndex((c) => c.name === v.name);
    return (i < 0 ? this.candidates.length : i) * 2 + (finalize ? 0 : 1);
  }

  private ordered(): Version[] {
    const out: Version[] = [];
    for (const c of this.candidates) {
      const v = this.versions.get(c.name);
      if (v && v.state === 'active') out.push(v);
    }
    return out;
  }

  private kick(): void {
    if (!this.started || this.closing) return;
    if (this.planning) {
      this.replan = true;
      return;
    }
    this.planning = true;
    try {
      do {
        this.replan = false;
        this.plan();
      } while (this.replan);
    } finally {
      this.planning = false;
    }
  }

  private plan(): void {
    for (const v of this.ordered()) {
      if (v.finalizing) continue;
      if (v.candidate.complete) {
        if (v.failed) continue;
        v.finalizing = true;
        this.track(this.commitSerially(v));
        continue;
      }
      for (const f of v.files.values()) {
        if (f.pump || f.blocked) continue;
        if (this.wantsStreamPart(f)) f.pump = this.stream(v, f);
        else if (this.wantsProof(f)) f.pump = this.prove(v, f);
        else continue;
        this.track(f.pump);
      }
    }
  }

  private wantsStreamPart(f: FileTrack): boolean {
    const offset = f.mp?.offset ?? 0;
    const partSize = f.mp?.partSize ?? choosePartSize(f.size, this.partSizeBytes, this.maxParts);
    return f.size - offset >= partSize;
  }

  /** A streamed file with parts sent that has not changed for QUIET_MS, not proven in this state yet. */
  private wantsProof(f: FileTrack): boolean {
    if (!f.mp || f.mp.parts.length === 0 || f.proofs >= MAX_EARLY_PROOFS || f.proven === `${f.size}:${f.mtimeMs}`) return false;
    if (this.clock.now() - f.mtimeMs < QUIET_MS) {
      // Look again once it has been quiet that long (any update or finished transfer also looks).
      this.wakeLater(QUIET_MS);
      return false;
    }
    return true;
  }

  private wakeTimer: Timer | undefined;

  private wakeLater(ms: number): void {
    if (this.wakeTimer || this.closing) return;
    this.wakeTimer = this.clock.setTimeout(() => {
      this.wakeTimer = undefined;
      this.kick();
    }, ms);
  }

  /**
   * Early proof of a streamed file that stopped changing while its checkpoint
   * is still being written (see verify, which does the same at commit): the
   * parts read before the file's last change are read and hashed again; when
   * they are equal and the file did not change meanwhile, every part sent gets
   * the signature taken before this re-read, so that the commit finds them
   * proven. A difference changes nothing here: the commit uploads the file
   * again.
   */
  private async prove(v: Version, f: FileTrack): Promise<void> {
    const signal = v.controller.signal;
    const mp = f.mp;
    try {
      if (!mp) return;
      const now = await statSignature(f.absPath);
      f.proven = `${f.size}:${f.mtimeMs}`;
      f.proofs++;
      const sent = mp.parts.length;
      const stale: number[] = [];
      for (let i = 0; i < sent; i++) if (!sameSignature(mp.partSignatures[i]!, now)) stale.push(i);
      if (stale.length === 0 || now.size < sent * mp.partSize) return;
      const releaseSlot = await this.slots.acquire(() => this.rank(v, false), signal);
      let again: Awaited<ReturnType<typeof hashParts>>;
      try {
        const releaseBytes = await this.budget.acquire(HASH_BUFFER_BYTES, signal);
        try {
          again = await hashParts(f.absPath, { partSize: mp.partSize, size: sent * mp.partSize, parts: stale, bufferBytes: HASH_BUFFER_BYTES, signal });
        } finally {
          releaseBytes();
        }
      } finally {
        releaseSlot();
      }
      if (f.mp !== mp || !sameSignature(again.signature, now) || !stale.every((part, k) => again.digests[k] === mp.digests[part])) return;
      this.stats.reverifiedParts += stale.length;
      for (let i = 0; i < sent; i++) mp.partSignatures[i] = again.signature;
    } catch (err) {
      if (!signal.aborted) this.log.debug({ checkpoint: v.name, file: f.path, err: messageOf(err) }, 'early proof of a streamed file failed; the commit proves it');
    } finally {
      f.pump = undefined;
      this.kick();
    }
  }

  private hasCompleteWork(): boolean {
    return this.ordered().some((v) => v.candidate.complete && (v.finalizing || !v.failed));
  }

  private track<T>(p: Promise<T>): void {
    const guarded = p.then(
      () => undefined,
      (err: unknown) => this.log.error({ err: messageOf(err) }, 'unexpected checkpoint upload failure'),
    );
    this.tasks.add(guarded);
    void guarded.finally(() => this.tasks.delete(guarded));
  }

  private progress(): void {
    const waiters = [...this.progressWaiters];
    this.progressWaiters.clear();
    for (const w of waiters) w();
  }

  private abandonOlderThanCommitted(): void {
    let newerCommitted: Version | undefined;
    for (const c of this.candidates) {
      const v = this.versions.get(c.name);
      if (!v) continue;
      if (v.state === 'committed') newerCommitted ??= v;
      else if (v.state === 'active' && newerCommitted) {
        this.stats.abandonedCheckpoints++;
        this.metrics?.notCommitted('abandoned');
        this.retire(v, 'abandoned', `the newer checkpoint ${newerCommitted.id} committed first`);
      }
    }
  }

  /** Stops a version for good: transfers cancelled, its multipart uploads aborted once they settle. */
  private retire(v: Version, state: 'abandoned' | 'dropped', why: string): void {
    v.state = state;
    this.progressEnded(v);
    v.fingerprint = fingerprintOf(v.candidate);
    v.controller.abort(new StevedoreError('INTERNAL', `checkpoint ${v.name} ${state}: ${why}`));
    this.log.info({ checkpoint: v.name, checkpointId: v.id }, `checkpoint ${v.name} ${state}: ${why}; its multipart uploads are aborted and it is never committed`);
    this.retiring.add(v);
    const pumps = [...v.files.values()].map((f) => f.pump ?? Promise.resolve());
    this.track(
      Promise.allSettled(pumps).then(async () => {
        await Promise.allSettled([...v.files.values()].map(async (f) => {
          const mp = f.mp;
          f.mp = undefined;
          if (mp) await this.abortUpload(mp, this.closeController.signal);
        }));
        // A finalize still queued or running finds the version retired and stops; then the id is free.
        while (v.finalizing) await new Promise<void>((resolve) => this.progressWaiters.add(resolve));
        this.retiring.delete(v);
      }),
    );
    this.progress();
  }

  // ---- streaming --------------------------------------------------------------

  /** Sends whole parts of a growing file while it has them. */
  private async stream(v: Version, f: FileTrack): Promise<void> {
    const signal = v.controller.signal;
    try {
      while (v.state === 'active' && !v.finalizing && !signal.aborted && v.files.get(f.path) === f && this.wantsStreamPart(f)) {
        let mp = f.mp;
        if (mp && mp.parts.length + 1 >= this.maxParts) {
          // The next part would leave no room for the tail: start over with larger parts.
          const partSize = choosePartSize(f.size * 2, this.partSizeBytes, this.maxParts);
          this.log.info({ file: f.path, partSize }, `file ${f.path} of checkpoint ${v.name} outgrew ${this.maxParts} parts of ${mp.partSize} bytes; restarting its upload with ${partSize}-byte parts`);
          f.mp = undefined;
          await this.abortUpload(mp, signal);
          mp = await this.openUpload(v, f.path, partSize);
          f.mp = mp;
          continue;
        }
        if (!mp) {
          mp = await this.openUpload(v, f.path, choosePartSize(f.size, this.partSizeBytes, this.maxParts));
          f.mp = mp;
        }
        const active = mp;
        await this.sendParts(v, f.absPath, active, (partNumber) => (partNumber < this.maxParts && !v.finalizing && f.size - active.offset >= active.partSize ? active.partSize : 0));
      }
    } catch (err) {
      if (!signal.aborted) {
        f.blocked = true;
        const mp = f.mp;
        f.mp = undefined;
        if (mp) await this.abortUpload(mp, this.closeController.signal);
        this.log.warn({ checkpoint: v.name, file: f.path, err: messageOf(err) }, `streaming ${f.path} of checkpoint ${v.name} failed: ${messageOf(err)}; it is uploaded again from the start`);
      }
    } finally {
      f.pump = undefined;
      this.kick();
    }
  }

  /**
   * Reads and sends parts of `mp` in order while `nextLength(partNumber)` says
   * how long the next one is (0: stop). Up to PARTS_IN_FLIGHT_PER_FILE parts are sent
   * at once; the hash follows the reads, which are sequential.
   */
  private async sendParts(v: Version, absPath: string, mp: Multipart, nextLength: (partNumber: number) => number): Promise<void> {
    const signal = v.controller.signal;
    const inFlight = new Set<Promise<void>>();
    // Set by a part's upload callback; read through failure() so that narrowing does not hide it.
    const state: { failure?: { err: unknown } } = {};
    const failure = (): { err: unknown } | undefined => state.failure;
    try {
      for (;;) {
        const failed = failure();
        if (failed) throw failed.err;
        const length = nextLength(mp.parts.length + inFlight.size + 1);
        if (length <= 0) break;
        const releaseSlot = await this.slots.acquire(() => this.rank(v, v.finalizing), signal);
        let releaseBytes: (() => void) | undefined;
        try {
          // The part's buffer comes with its bytes from the budget, reused from parts already sent.
          const held = await this.budget.acquireBuffer(length, signal);
          releaseBytes = held.release;
          const buffer = held.buffer;
          const { bytesRead, signature } = await readRange(absPath, buffer, mp.offset, length);
          if (bytesRead < length) {
            throw new StevedoreError('UPLOAD_MISMATCH', `${absPath} is shorter than expected (${mp.offset + bytesRead} bytes, expected at least ${mp.offset + length}): it was truncated or replaced while uploading`);
          }
          const partNumber = mp.parts.length + inFlight.size + 1;
          const digest = createHash('sha256').update(buffer).digest();
          mp.digests[partNumber - 1] = digest.toString('hex');
          mp.offset += length;
          mp.firstSignature ??= signature;
          mp.partSignatures[partNumber - 1] = signature;
          const beforeComplete = !v.candidate.complete;
          const release = releaseBytes;
          releaseBytes = undefined;
          const sending = this.s3('upload a part', mp.key, signal, () => this.store.uploadPart(mp.key, mp.uploadId, partNumber, buffer, { sha256: digest, signal }))
            .then((part) => {
              mp.parts.push(part);
              this.stats.partsUploaded++;
              this.stats.bytesUploaded += length;
              this.metrics?.bytesUploaded(length);
              this.sent(v, length);
              if (beforeComplete) this.stats.bytesUploadedBeforeComplete += length;
            })
            .catch((err: unknown) => {
              state.failure ??= { err };
            })
            .finally(() => {
              release();
              releaseSlot();
              inFlight.delete(sending);
            });
          inFlight.add(sending);
        } catch (err) {
          releaseBytes?.();
          releaseSlot();
          throw err;
        }
        if (inFlight.size >= PARTS_IN_FLIGHT_PER_FILE) await Promise.race(inFlight);
      }
    } finally {
      await Promise.allSettled([...inFlight]);
    }
    const failed = failure();
    if (failed) throw failed.err;
  }

  private async openUpload(v: Version, path: string, partSize: number): Promise<Multipart> {
    const signal = v.controller.signal;
    const key = fileKey(this.prefix, v.id, path);
    const uploadId = await this.s3('start a multipart upload', key, signal, () => this.store.createMultipartUpload(key, { signal }));
    this.openUploads.set(uploadId, key);
    if (signal.aborted) {
      await this.abortUpload({ key, uploadId }, this.closeController.signal);
      throw abortError(signal);
    }
    return { key, uploadId, partSize, parts: [], digests: [], offset: 0, firstSignature: undefined, partSignatures: [] };
  }

  private async abortUpload(mp: Pick<Multipart, 'key' | 'uploadId'>, signal: AbortSignal): Promise<void> {
    if (!this.openUploads.has(mp.uploadId)) return;
    try {
      await this.s3('abort a multipart upload', mp.key, signal, () => this.store.abortMultipartUpload(mp.key, mp.uploadId, { signal }));
      this.openUploads.delete(mp.uploadId);
    } catch (err) {
      if (isStevedoreError(err, 'OBJECT_NOT_FOUND')) this.openUploads.delete(mp.uploadId);
      else if (!signal.aborted) this.log.warn({ key: mp.key, err: messageOf(err) }, `could not abort the multipart upload of s3://${this.store.bucket}/${mp.key}: ${messageOf(err)}; the next start aborts it`);
    }
  }

  // ---- commit -----------------------------------------------------------------

  private commitSerially(v: Version): Promise<void> {
    const run = this.commitChain.then(() => this.finalize(v));
    this.commitChain = run.catch(() => undefined);
    return run;
  }

  private async finalize(v: Version): Promise<void> {
    const signal = v.controller.signal;
    try {
      if (v.state !== 'active' || signal.aborted) return;
      const candidate = v.candidate;
      if (!candidate.complete) return;
      // Streaming stops at the next part boundary; the tails are sent from here.
      await Promise.allSettled([...v.files.values()].map((f) => f.pump ?? Promise.resolve()));
      const verified = await settleAll(
        candidate.files.map(async (lf) => {
          const track = v.files.get(lf.path);
          const previous = v.done.get(lf.path);
          let done: FileDone;
          if (previous && !track?.mp && previous.absPath === lf.absPath) done = previous;
          else {
            v.done.delete(lf.path);
            done = await this.finishFile(v, track, lf.path, lf.absPath);
          }
          done = await this.verify(v, done);
          v.done.set(lf.path, done);
          return done;
        }),
      );
      if (v.state !== 'active' || signal.aborted) return;
      if (v.candidate !== candidate && fingerprintOf(v.candidate) !== fingerprintOf(candidate)) {
        // The checkpoint changed while it was being committed: commit what it is now.
        this.log.debug({ checkpoint: v.name }, 'checkpoint changed during its commit; committing it again');
        return;
      }
      await this.commit(v, verified);
    } catch (err) {
      if (signal.aborted || v.state !== 'active') return;
      v.failed = true;
      this.metrics?.notCommitted('failed');
      this.progressEnded(v);
      const where = `s3://${this.store.bucket}/${joinKey(this.prefix, v.id)}/`;
      this.log.error(
        { checkpoint: v.name, checkpointId: v.id, err: messageOf(err), code: isStevedoreError(err) ? err.code : undefined },
        `checkpoint ${v.name} could not be uploaded to ${where}: ${messageOf(err)}. It is not committed and is tried again on the next change; check the S3 endpoint, the credentials and the bucket policy for this prefix, and that the checkpoint files are readable`,
      );
    } finally {
      v.finalizing = false;
      this.progress();
      this.kick();
    }
  }

  /** Uploads what is left of one file (the tail of a streamed upload, or all of it) and returns what S3 now holds for it. */
  private async finishFile(v: Version, f: FileTrack | undefined, path: string, absPath: string): Promise<FileDone> {
    const mp = f?.mp;
    if (f && mp) {
      f.mp = undefined;
      const size = (await statSignature(absPath)).size;
      const remainingParts = Math.ceil((size - mp.offset) / mp.partSize);
      if (size >= mp.offset && size > 0 && mp.parts.length + remainingParts <= this.maxParts) {
        try {
          await this.sendParts(v, absPath, mp, () => Math.min(mp.partSize, size - mp.offset));
          const signal = v.controller.signal;
          const parts = [...mp.parts].sort((a, b) => a.partNumber - b.partNumber);
          await this.s3('complete a multipart upload', mp.key, signal, () => this.store.completeMultipartUpload(mp.key, mp.uploadId, parts, { signal }));
          this.openUploads.delete(mp.uploadId);
          if (!mp.firstSignature) throw new StevedoreError('INTERNAL', `no read of ${absPath} recorded`);
          return { path, absPath, size: mp.offset, partSize: mp.partSize, parts: mp.digests, key: mp.key, uploadedBytes: mp.offset, signature: mp.firstSignature, partSignatures: mp.partSignatures };
        } catch (err) {
          await this.abortUpload(mp, this.closeController.signal);
          throw err;
        }
      }
      // Truncated, emptied, or too many parts for what is left: start over.
      await this.abortUpload(mp, this.closeController.signal);
    }
    return this.uploadWhole(v, path, absPath);
  }

  /** Uploads a whole file (or reuses an identical committed object): one PutObject below a part, else a multipart upload after a hashing pass. */
  private async uploadWhole(v: Version, path: string, absPath: string): Promise<FileDone> {
    const signal = v.controller.signal;
    const key = fileKey(this.prefix, v.id, path);
    const size = (await statSignature(absPath)).size;
    const partSize = choosePartSize(size, this.partSizeBytes, this.maxParts);
    if (size < partSize) {
      const releaseSlot = await this.slots.acquire(() => this.rank(v, true), signal);
      try {
        const held = await this.budget.acquireBuffer(size, signal);
        try {
          const { bytesRead, signature } = await readRange(absPath, held.buffer, 0, size);
          const content = held.buffer.subarray(0, bytesRead);
          const digest = createHash('sha256').update(content).digest();
          // One part: its digest is the whole file's.
          const parts = [digest.toString('hex')];
          const reuse = this.reusable({ size: bytesRead, partSize, parts });
          if (reuse) {
            v.sentBytes += bytesRead;
            return { path, absPath, size: bytesRead, partSize, parts, key: reuse, uploadedBytes: 0, signature, partSignatures: [signature] };
          }
          await this.s3('upload a file', key, signal, () => this.store.putObject(key, content, { sha256: digest, signal }));
          this.stats.bytesUploaded += bytesRead;
          this.metrics?.bytesUploaded(bytesRead);
          this.sent(v, bytesRead);
          return { path, absPath, size: bytesRead, partSize, parts, key, uploadedBytes: bytesRead, signature, partSignatures: [signature] };
        } finally {
          held.release();
        }
      } finally {
        releaseSlot();
      }
    }
    // Large: when a committed object has this very size, hash first, so that an unchanged file is not
    // sent again. Otherwise no committed object can hold this content: the bytes are hashed as they are
    // sent, one pass over the file instead of two.
    let hashed: Awaited<ReturnType<typeof hashFile>> | undefined;
    if (this.mayReuse(size)) {
      hashed = await this.withSlot(v, HASH_BUFFER_BYTES, () => hashFile(absPath, { partSize, bufferBytes: HASH_BUFFER_BYTES, signal }));
      const reuse = this.reusable(hashed);
      if (reuse) {
        const signature = hashed.signature;
        v.sentBytes += hashed.size;
        return { path, absPath, size: hashed.size, partSize, parts: hashed.parts, key: reuse, uploadedBytes: 0, signature: hashed.signature, partSignatures: hashed.parts.map(() => signature) };
      }
    }
    const total = hashed?.size ?? size;
    const mp = await this.openUpload(v, path, choosePartSize(total, this.partSizeBytes, this.maxParts));
    try {
      await this.sendParts(v, absPath, mp, () => Math.min(mp.partSize, total - mp.offset));
      const parts = [...mp.parts].sort((a, b) => a.partNumber - b.partNumber);
      await this.s3('complete a multipart upload', key, signal, () => this.store.completeMultipartUpload(key, mp.uploadId, parts, { signal }));
      this.openUploads.delete(mp.uploadId);
    } catch (err) {
      await this.abortUpload(mp, this.closeController.signal);
      throw err;
    }
    // The earliest read's signature: the hashing pass's, else the first part's.
    const signature = hashed?.signature ?? mp.firstSignature;
    if (!signature) throw new StevedoreError('INTERNAL', `no read of ${absPath} recorded`);
    return { path, absPath, size: mp.offset, partSize: mp.partSize, parts: mp.digests, key, uploadedBytes: mp.offset, signature, partSignatures: mp.partSignatures };
  }

  /** Whether a committed object has exactly this size (only then can a file of this size be reused). */
  private mayReuse(size: number): boolean {
    for (const id of this.known.keys()) if (id.startsWith(`${size}:`)) return true;
    return false;
  }

  private async withSlot<T>(v: Version, bytes: number, fn: () => Promise<T>): Promise<T> {
    const signal = v.controller.signal;
    const releaseSlot = await this.slots.acquire(() => this.rank(v, true), signal);
    try {
      const releaseBytes = await this.budget.acquire(bytes, signal);
      try {
        return await fn();
      } finally {
        releaseBytes();
      }
    } finally {
      releaseSlot();
    }
  }

  /** The key of a committed object with this content, if any. */
  private reusable(content: Pick<ManifestFile, 'size' | 'partSize' | 'parts'>): string | undefined {
    return this.known.get(contentId(content));
  }

  /**
   * Proves that S3 holds the file's current content: an unchanged signature
   * since the bytes were read, or an equal hash; otherwise the file is
   * uploaded again (a rewrite in place).
   *
   * Part by part: a part whose pre-read signature equals the file's signature
   * now was read after the file's last write (no write since, appended or in
   * place: either changes the modification and change times; the same inode),
   * so its bytes are still the file's, as for a whole unchanged file. Only the
   * other parts (those read while the file still grew, or before a rewrite) are
   * read and hashed again, and only if the file has its uploaded size. The
   * parts re-read are read after a signature equal to the one the unchanged
   * parts were proven against, so every part holds at that same signature.
   */
  private async verify(v: Version, first: FileDone): Promise<FileDone> {
    let done = first;
    for (let round = 1; ; round++) {
      const now = await statSignature(done.absPath);
      if (sameSignature(now, done.signature) && now.size === done.size) return done;
      if (now.size === done.size && done.partSignatures.length === done.parts.length) {
        const stale = done.parts.flatMap((_, i) => (sameSignature(done.partSignatures[i]!, now) ? [] : [i]));
        const again = await this.withSlot(v, HASH_BUFFER_BYTES, () =>
          hashParts(done.absPath, { partSize: done.partSize, size: done.size, parts: stale, bufferBytes: HASH_BUFFER_BYTES, signal: v.controller.signal }),
        );
        const equal = stale.every((part, k) => again.digests[k] === done.parts[part]);
        // Unchanged since `now` (so the parts proven against it still hold) and every part re-read equal: proven.
        if (equal && sameSignature(again.signature, now)) {
          this.stats.reverifiedParts += stale.length;
          return { ...done, signature: again.signature, partSignatures: done.parts.map(() => again.signature) };
        }
        if (equal) {
          // Written to between the stat and the re-read: look again.
          if (round >= MAX_VERIFY_ROUNDS) throw this.keptChanging(v, first);
          continue;
        }
      } else {
        const current = await this.withSlot(v, HASH_BUFFER_BYTES, () => hashFile(done.absPath, { partSize: done.partSize, bufferBytes: HASH_BUFFER_BYTES, signal: v.controller.signal }));
        if (current.size === done.size && contentId(current) === contentId(done)) {
          return { ...done, signature: current.signature, partSignatures: done.parts.map(() => current.signature) };
        }
      }
      if (round >= MAX_VERIFY_ROUNDS) {
        throw this.keptChanging(v, first);
      }
      this.stats.reuploadedFiles++;
      this.log.info({ checkpoint: v.name, file: done.path }, `${done.path} of checkpoint ${v.name} changed after its bytes were uploaded; uploading it again`);
      done = await this.uploadWhole(v, done.path, done.absPath);
    }
  }

  private keptChanging(v: Version, first: FileDone): StevedoreError {
    return new StevedoreError('UPLOAD_MISMATCH', `${first.absPath} kept changing while checkpoint ${v.name} was being committed; the trainer is still writing it (or rewriting it in place). It is tried again on the next change`);
  }

  private async commit(v: Version, files: FileDone[]): Promise<void> {
    const signal = v.controller.signal;
    files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    // A reused object may have been deleted by retention (after another commit)
    // since it was chosen: prove each is still there, else upload the file again.
    const ownPrefix = `${joinKey(this.prefix, v.id)}/`;
    for (const [i, f] of files.entries()) {
      if (f.key.startsWith(ownPrefix)) continue;
      const info = await this.s3('check a reused object', f.key, signal, () => this.store.headObject(f.key, { signal }));
      if (info?.size === f.size) continue;
      this.log.info({ checkpoint: v.name, file: f.path, key: f.key }, `s3://${this.store.bucket}/${f.key}, reused for ${f.path}, is gone (retention removed it); uploading the file again`);
      this.known.delete(contentId(f));
      const again = await this.uploadWhole(v, f.path, f.absPath);
      files[i] = again;
      v.done.set(f.path, again);
    }

    const entries: ManifestFile[] = files.map((f) => ({ path: f.path, size: f.size, key: f.key, partSize: f.partSize, parts: f.parts }));

    // Already committed under this name with the same content (a restored checkpoint, or a run before a restart): nothing to write.
    const same = this.committedList.find((m) => m.name === v.name && sameContent(m.files, entries));
    if (same) {
      this.markCommitted(v, this.committedCheckpoint(same));
      this.log.info({ checkpoint: v.name, checkpointId: same.checkpointId }, `checkpoint ${v.name} is already committed as ${same.checkpointId}`);
      return;
    }

    const lastWriteMs = files.reduce((max, f) => Math.max(max, mtimeMsOf(f.signature)), 0);
    const totalBytes = files.reduce((sum, f) => sum + f.size, 0);
    const uploadedBytes = files.reduce((sum, f) => sum + f.uploadedBytes, 0);
    const manifest: Manifest = {
      format: MANIFEST_FORMAT,
      checkpointId: v.id,
      name: v.name,
      step: v.candidate.step,
      kind: v.candidate.kind,
      jobId: this.jobId,
      attempt: this.attempt,
      nodeId: this.nodeId,
      firstSeenMs: v.firstSeenMs,
      lastWriteMs,
      committedMs: this.clock.now(),
      totalBytes,
      uploadedBytes,
      files: entries,
    };
    const key = manifestKey(this.prefix, v.id);
    let written = manifest;
    try {
      if (!(await this.s3('probe conditional writes', key, signal, () => this.store.supportsConditionalWrites()))) {
        // No If-None-Match on this endpoint: check first (only this attempt writes under the prefix).
        const existing = await this.s3('check the manifest', key, signal, () => this.store.headObject(key, { signal }));
        if (existing) await this.existingManifest(v, key, entries);
      }
      if (v.state !== 'active' || signal.aborted) return;
      try {
        await this.s3('write the manifest', key, signal, () => this.store.putObject(key, serializeManifest(manifest), { ifNoneMatch: true, contentType: 'application/json', signal }));
      } catch (err) {
        if (!isStevedoreError(err, 'OBJECT_EXISTS')) throw err;
        await this.existingManifest(v, key, entries);
      }
    } catch (err) {
      if (!(err instanceof ManifestAlreadyOurs)) throw err;
      written = err.manifest;
    }
    this.stats.reusedBytes += written.totalBytes - written.uploadedBytes;
    const committed = this.committedCheckpoint(written);
    this.setCommitted([written, ...this.committedList.filter((m) => m.checkpointId !== written.checkpointId)]);
    this.markCommitted(v, committed);
    this.log.info({ checkpoint: v.name, checkpointId: v.id, step: manifest.step, totalBytes, uploadedBytes, timeToCommitMs: committed.timeToCommitMs }, `checkpoint ${v.id} committed`);
    this.metrics?.committed(committed);
    try {
      this.onCommitted(committed);
    } catch (err) {
      this.log.error({ err: messageOf(err) }, 'checkpoint commit listener failed');
    }
    await this.retention();
  }

  /** A manifest already at the key: ours from a retried write (same content) is a success; anything else fails the round. */
  private async existingManifest(v: Version, key: string, entries: ManifestFile[]): Promise<void> {
    const signal = v.controller.signal;
    const text = (await this.s3('read the existing manifest', key, signal, () => this.store.getObject(key, { signal }))).toString('utf8');
    const existing = parseManifest(text, key);
    if (existing.checkpointId === v.id && sameContent(existing.files, entries)) {
      throw new ManifestAlreadyOurs(existing);
    }
    // Another writer used this id: pick another one next round.
    const fresh = await this.s3('list the committed checkpoints', key, signal, () => listCommitted(this.store, this.prefix, this.log));
    this.setCommitted(fresh.map((c) => c.manifest));
    this.versions.delete(v.name);
    this.retire(v, 'dropped', `a manifest for ${v.id} was written meanwhile by someone else; it is uploaded again under a new id`);
    throw new StevedoreError('OBJECT_EXISTS', `s3://${this.store.bucket}/${key} exists already; check that no other agent or attempt writes checkpoints under s3://${this.store.bucket}/${this.prefix}`);
  }

  private committedCheckpoint(m: Manifest): CommittedCheckpoint {
    return { manifest: m, manifestUrl: `s3://${this.store.bucket}/${manifestKey(this.prefix, m.checkpointId)}`, timeToCommitMs: Math.max(0, m.committedMs - m.lastWriteMs) };
  }

  private markCommitted(v: Version, c: CommittedCheckpoint): void {
    v.state = 'committed';
    v.committed = c;
    v.sentBytes = Math.max(v.sentBytes, c.manifest.totalBytes);
    this.progressEnded(v);
    v.fingerprint = fingerprintOf(v.candidate);
    this.sessionCommits.push(c);
    this.abandonOlderThanCommitted();
  }

  /** Bytes of `v` went out: its progress so far. */
  private sent(v: Version, bytes: number): void {
    v.sentBytes += bytes;
    if (!this.onProgress || v.state !== 'active') return;
    v.progressReported = true;
    this.reportProgress(v, false);
  }

  /** The commit round of `v` ended: its last progress, once, when any was reported. */
  private progressEnded(v: Version): void {
    if (!this.onProgress || !v.progressReported) return;
    v.progressReported = false;
    this.reportProgress(v, true);
  }

  private reportProgress(v: Version, finished: boolean): void {
    const totalBytes = v.candidate.files.reduce((sum, f) => sum + f.size, 0);
    try {
      this.onProgress?.({ checkpointId: v.id, name: v.name, doneBytes: Math.min(v.sentBytes, totalBytes), totalBytes, finished });
    } catch (err) {
      this.log.warn({ err: messageOf(err) }, 'checkpoint progress listener failed');
    }
  }

  private async retention(): Promise<void> {
    try {
      const { deletedCheckpoints } = await applyRetention(this.store, this.prefix, this.committedList, this.keep, this.keepEvery, this.log);
      if (deletedCheckpoints.length > 0) {
        const gone = new Set(deletedCheckpoints);
        this.setCommitted(this.committedList.filter((m) => !gone.has(m.checkpointId)));
      }
    } catch (err) {
      this.log.warn({ err: messageOf(err) }, `checkpoint retention under s3://${this.store.bucket}/${this.prefix} failed: ${messageOf(err)}; it runs again after the next commit`);
    }
  }

  private setCommitted(list: Manifest[]): void {
    this.committedList = [...list].sort(compareNewestFirst);
    const known = new Map<string, string>();
    // Oldest first, so that the newest checkpoint's object wins (it stays longest under retention).
    for (const m of [...this.committedList].reverse()) for (const f of m.files) known.set(contentId(f), f.key);
    this.known = known;
  }

  private newestSessionCommit(): CommittedCheckpoint | undefined {
    let best: CommittedCheckpoint | undefined;
    for (const c of this.sessionCommits) if (!best || compareNewestFirst(c.manifest, best.manifest) < 0) best = c;
    return best;
  }

  // ---- S3 with retries ----------------------------------------------------------

  private async s3<T>(what: string, key: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 5_000 });
    const started = this.clock.now();
    for (;;) {
      try {
        return await fn();
      } catch (err) {
        if (signal.aborted) throw abortError(signal);
        const delay = backoff.next();
        if (!isRetryableStoreError(err) || backoff.attempts >= MAX_ATTEMPTS_PER_OPERATION || this.clock.now() - started + delay > this.retryForMs) {
          if (isStevedoreError(err)) throw err;
          throw new StevedoreError('OBJECT_STORE_FAILED', `could not ${what} at s3://${this.store.bucket}/${key}: ${messageOf(err)}`, { cause: err });
        }
        this.log.warn({ key, attempt: backoff.attempts, err: messageOf(err) }, `could not ${what} at s3://${this.store.bucket}/${key}: ${messageOf(err)}; retrying in ${delay} ms`);
        await this.clock.sleep(delay, signal);
      }
    }
  }
}

/** Thrown when the manifest at the key is the one this uploader wrote (a retried write that had succeeded). */
class ManifestAlreadyOurs extends Error {
  readonly manifest: Manifest;
  constructor(manifest: Manifest) {
    super(`manifest ${manifest.checkpointId} already written`);
    this.manifest = manifest;
  }
}
