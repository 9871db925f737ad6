// Job outputs: a host directory mirrored to S3 while the job runs and once
// more at its end. No commit semantics: each pass uploads every regular file
// whose (size, mtime) differs from its last successful upload; a file still
// being written is simply uploaded again on a later pass. A failed upload is
// counted, logged and tried again on the next pass. Local deletes delete
// nothing in S3. Symbolic links are not followed (they could point at any
// file of the host).
import fs from 'node:fs';
import path from 'node:path';
import { mapConcurrent } from '../checkpoint/committed.ts';
import { partSizeFor, type CompletedPart, type ObjectStore } from '../storage/object-store.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';

export interface MirrorStats {
  /** Uploads completed since the mirror was created (a file uploaded three times counts three). */
  filesUploaded: number;
  bytesUploaded: number;
  /** Clock time at the end of the last pass in which every changed file was uploaded; 0 before the first. */
  lastSyncMs: number;
  /** Failed uploads (and failed directory scans) since the mirror was created. */
  errors: number;
}

export interface OutputMirrorOptions {
  /** The host directory mounted at the output's path. */
  dir: string;
  store: ObjectStore;
  /** Key prefix (no trailing slash; '' for the bucket's root): a file goes to <prefix>/<relative path>. */
  prefix: string;
  /** Time between the end of a pass and the start of the next. */
  intervalMs: number;
  clock: Clock;
  logger: Logger;
  /** Preferred part size; files of at least this size go up in multipart uploads (partSizeFor). */
  partSizeBytes: number;
  /** Files uploaded at once. Default 4. */
  concurrency?: number;
}

interface Uploaded {
  size: number;
  mtimeMs: number;
}

interface Found {
  rel: string;
  full: string;
  size: number;
  mtimeMs: number;
}

const DEFAULT_CONCURRENCY = 4;
const ORPHAN_LIST_ATTEMPTS = 3;

export class OutputMirror {
  private readonly dir: string;
  private readonly store: ObjectStore;
  private readonly prefix: string;
  private readonly intervalMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly partSizeBytes: number;
  private readonly concurrency: number;
  /** (size, mtime) of each file's last successful upload, by relative path. */
  private readonly uploaded = new Map<string, Uploaded>();
  private readonly current: MirrorStats = { filesUploaded: 0, bytesUploaded: 0, lastSyncMs: 0, errors: 0 };
  /** Passes run one after another. */
  private chain: Promise<unknown> = Promise.resolve();
  private timer: Timer | undefined;
  private started = false;
  private closing: Promise<MirrorStats> | undefined;
  /** Multipart uploads whose abort failed: tried again at the start of each pass. */
  private readonly pendingAborts = new Map<string, string>(); // uploadId -> key
  /** Keys this mirror started multipart uploads for (an upload whose creation answer was lost is found by listing). */
  private readonly multipartKeys = new Set<string>();
  /** Aborts the store requests in flight (close without final, or past the deadline). */
  private readonly controller = new AbortController();

  constructor(opts: OutputMirrorOptions) {
    this.dir = opts.dir;
    this.store = opts.store;
    this.prefix = opts.prefix.replace(/\/+$/, '');
    this.intervalMs = Math.max(1, opts.intervalMs);
    this.clock = opts.clock;
    this.log = opts.logger.child({ output: this.dir, bucket: opts.store.bucket, prefix: this.prefix });
    this.partSizeBytes = opts.partSizeBytes;
    this.concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
  }

  /** A copy of the counters. */
  get stats(): MirrorStats {
    return { ...this.current };
  }

  /** Syncs every intervalMs (after each pass ends) until close(). Never throws; calling it again does nothing. */
  start(): void {
    if (this.started || this.closing) return;
    this.started = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.closing) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.syncNow().then(
        () => this.schedule(),
        (err: unknown) => {
          this.log.error({ err: messageOf(err) }, 'output mirror pass failed unexpectedly; trying again at the next interval');
          this.schedule();
        },
      );
    }, this.intervalMs);
  }

  /**
   * One pass: uploads every file new or changed (size, mtime) since its last
   * upload. Runs after any pass in progress. Failures are counted in the stats
   * and logged, not thrown.
   */
  syncNow(): Promise<MirrorStats> {
    const pass = this.chain.then(() => this.pass());
    this.chain = pass.catch(() => undefined);
    return pass;
  }

  /**
   * Stops the timer. With final, runs one last complete pass first (after any
   * pass in progress), bounded by deadlineMs (clock time): past it, the uploads
   * in flight are aborted. Without final, aborts what is in flight. Safe to call
   * twice: later calls return the first call's result.
   */
  close(opts: { final: boolean; deadlineMs?: number }): Promise<MirrorStats> {
    this.closing ??= this.doClose(opts);
    return this.closing;
  }

  private async doClose(opts: { final: boolean; deadlineMs?: number }): Promise<MirrorStats> {
    this.timer?.cancel();
    this.timer = undefined;
    if (!opts.final) {
      this.controller.abort(new Error('the output mirror was closed'));
      await this.chain;
      return this.stats;
    }
    let deadline: Timer | undefined;
    if (opts.deadlineMs !== undefined) {
      deadline = this.clock.setTimeout(() => {
        this.log.warn(`output mirror: the final sync did not finish before its deadline; files not uploaded by then are missing from s3://${this.store.bucket}/${this.prefix}`);
        this.controller.abort(new Error('the final output sync passed its deadline'));
      }, Math.max(0, opts.deadlineMs - this.clock.now()));
    }
    try {
      await this.syncNow();
      await this.abortOrphans();
    } finally {
      deadline?.cancel();
    }
    return this.stats;
  }

  private keyOf(rel: string): string {
    return this.prefix === '' ? rel : `${this.prefix}/${rel}`;
  }

  private async pass(): Promise<MirrorStats> {
    const signal = this.controller.signal;
    if (signal.aborted) return this.stats;
    let failures = 0;
    for (const [uploadId, key] of [...this.pendingAborts]) {
      if (await this.abortUpload(key, uploadId)) this.pendingAborts.delete(uploadId);
      else failures++;
    }
    const files = await this.scan().catch((err: unknown) => {
      failures++;
      this.current.errors++;
      this.log.warn({ err: messageOf(err) }, `output mirror: cannot read ${this.dir}: ${messageOf(err)}; check that the directory exists and is readable by the agent`);
      return [] as Found[];
    });
    const changed = files.filter((f) => {
      const last = this.uploaded.get(f.rel);
      return last === undefined || last.size !== f.size || last.mtimeMs !== f.mtimeMs;
    });
    await mapConcurrent(changed, this.concurrency, async (file) => {
      if (signal.aborted) return;
      const key = this.keyOf(file.rel);
      try {
        const bytes = await this.upload(file, key, signal);
        // The (size, mtime) seen before reading: a file changed during the upload differs from it and goes again next pass.
        this.uploaded.set(file.rel, { size: file.size, mtimeMs: file.mtimeMs });
        this.current.filesUploaded++;
        this.current.bytesUploaded += bytes;
      } catch (err) {
        // Deleted (or renamed) since the scan: nothing to upload. Aborted by close: not a failure of the endpoint.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT' || signal.aborted) return;
        failures++;
        this.current.errors++;
        this.log.warn(
          { key, err: messageOf(err) },
          `output mirror: uploading ${file.rel} to s3://${this.store.bucket}/${key} failed: ${messageOf(err)}; it is tried again on the next pass (check the endpoint, its credentials and the bucket policy)`,
        );
      }
    });
    if (failures === 0 && !signal.aborted) this.current.lastSyncMs = this.clock.now();
    return this.stats;
  }

  /** Regular files under the directory, symbolic links not followed. */
  private async scan(): Promise<Found[]> {
    const found: Found[] = [];
    const walk = async (rel: string): Promise<void> => {
      const full = path.join(this.dir, rel);
      let entries: fs.Dirent[];
      try {
        entries = await fs.promises.readdir(full, { withFileTypes: true });
      } catch (err) {
        // A subdirectory removed during the scan is not an error; the root missing is.
        if (rel !== '' && (err as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw err;
      }
      for (const entry of entries) {
        const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
        if (entry.isDirectory()) await walk(childRel);
        else if (entry.isFile()) {
          try {
            const st = await fs.promises.lstat(path.join(this.dir, childRel));
            if (st.isFile()) found.push({ rel: childRel, full: path.join(this.dir, childRel), size: st.size, mtimeMs: st.mtimeMs });
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          }
        }
      }
    };
    await walk('');
    found.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
    return found;
  }

  /** Uploads the file's first `size` bytes (as seen by the scan); returns the bytes sent. */
  private async upload(file: Found, key: string, signal: AbortSignal): Promise<number> {
    const partSize = partSizeFor(file.size, this.partSizeBytes);
    if (file.size <= partSize) {
      const body = await fs.promises.readFile(file.full);
      await this.store.putObject(key, body, { signal });
      return body.length;
    }
    const handle = await fs.promises.open(file.full, 'r');
    let uploadId: string | undefined;
    try {
      this.multipartKeys.add(key);
      uploadId = await this.store.createMultipartUpload(key, { signal });
      const parts: CompletedPart[] = [];
      let offset = 0;
      for (let partNumber = 1; offset < file.size; partNumber++) {
        const length = Math.min(partSize, file.size - offset);
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        // Shrunk since the scan: upload what is there; the next pass sees the new size.
        const body = bytesRead === length ? buffer : buffer.subarray(0, bytesRead);
        if (body.length === 0) break;
        parts.push(await this.store.uploadPart(key, uploadId, partNumber, body, { signal }));
        offset += body.length;
      }
      await this.store.completeMultipartUpload(key, uploadId, parts, { signal });
      uploadId = undefined;
      return offset;
    } finally {
      await handle.close();
      if (uploadId !== undefined && !(await this.abortUpload(key, uploadId))) this.pendingAborts.set(uploadId, key);
    }
  }

  /**
   * Aborts the open multipart uploads of keys this mirror wrote in parts: those
   * whose creation succeeded on the server while its answer was lost. Only this
   * mirror writes the job's output prefix.
   */
  private async abortOrphans(): Promise<void> {
    if (this.multipartKeys.size === 0 || this.controller.signal.aborted) return;
    const base = this.prefix === '' ? '' : `${this.prefix}/`;
    for (let attempt = 1; ; attempt++) {
      try {
        const open = await this.store.listMultipartUploads(base, { signal: this.controller.signal });
        for (const upload of open) {
          if (this.multipartKeys.has(upload.key)) await this.abortUpload(upload.key, upload.uploadId);
        }
        return;
      } catch (err) {
        if (this.controller.signal.aborted) return;
        if (attempt < ORPHAN_LIST_ATTEMPTS) continue;
        this.current.errors++;
        this.log.warn({ err: messageOf(err) }, `output mirror: could not list the open multipart uploads under s3://${this.store.bucket}/${base}: ${messageOf(err)}; a lifecycle rule (AbortIncompleteMultipartUpload) removes any left open`);
        return;
      }
    }
  }

  /** Aborts a multipart upload of ours; false (counted and logged) when that failed. */
  private async abortUpload(key: string, uploadId: string): Promise<boolean> {
    try {
      await this.store.abortMultipartUpload(key, uploadId);
      return true;
    } catch (err) {
      this.current.errors++;
      this.log.warn({ key, uploadId, err: messageOf(err) }, `output mirror: could not abort the multipart upload ${uploadId} of s3://${this.store.bucket}/${key}: ${messageOf(err)}; tried again on the next pass (a lifecycle rule AbortIncompleteMultipartUpload also removes it)`);
      return false;
    }
  }
}
