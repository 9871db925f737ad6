// Restore before a job starts: the newest committed checkpoint that downloads
// and verifies completely is put in place under its own name in the job's
// checkpoint directory.
//
// Every file is downloaded into a staging directory inside the target
// directory (same filesystem, so the final move is a rename) and checked
// against the manifest, and only then is the checkpoint renamed to
// <targetDir>/<name>. A file of a v2 manifest is fetched part by part, in
// ranged GETs aligned to its parts and run in parallel, each streamed to its
// offset while it is hashed and checked against the part's SHA-256 (nothing
// is read back); a v1 manifest's file is fetched in ranges of rangeBytes and
// hashed whole once written.
//
// Nothing is flushed to disk (fsync): a restored copy does not need to
// survive a power loss. The restore runs once per attempt before its container
// exists (src/agent/attempt-runner.ts restoreCheckpoint), always into a fresh
// staging directory, verifying every byte; a crash of the machine ends the
// attempt's container (only a live container is adopted after a restart), and
// the next attempt restores again, replacing what is under the name.
//
// A checkpoint whose objects are
// missing or differ from the manifest is skipped (the reason is logged and
// returned) and the next older one is tried. Any other failure (the endpoint
// unreachable, access denied, a full disk) throws: falling back to an older
// checkpoint because of a passing outage would silently throw away training.
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import type { ObjectStore } from '../storage/object-store.ts';
import type { Clock } from '../util/clock.ts';
import type { Logger } from '../util/logger.ts';
import { StevedoreError, isStevedoreError, messageOf } from '../util/errors.ts';
import { formatBytes } from '../util/size.ts';
import { isRangeReadable } from '../storage/s3-range-reader.ts';
import { isNotFound, listCommitted, mapConcurrent } from './committed.ts';
import { partCount, partRange, type Manifest, type ManifestFile } from './manifest.ts';

export interface RestoreResult {
  manifest: Manifest;
  /** Host path of the restored checkpoint: <targetDir>/<manifest.name>. */
  path: string;
  /** Bytes of the restored checkpoint (the sum of its files). */
  bytes: number;
  durationMs: number;
  /** Newer committed checkpoints that could not be restored, newest first, with the reason. */
  skipped: { checkpointId: string; reason: string }[];
}

export interface RestoreOptions {
  store: ObjectStore;
  /** The job's checkpoint prefix in the bucket (no trailing slash). */
  prefix: string;
  /** The host directory the job's checkpoint directory is; created when missing. */
  targetDir: string;
  logger: Logger;
  clock: Clock;
  /** Requests in flight at once; default 8. */
  concurrency?: number;
  /** Files of a v1 manifest larger than this are fetched in ranged GETs of this size, in parallel; default 16 MiB (v2: one GET per part). */
  rangeBytes?: number;
  signal?: AbortSignal;
  /** Bytes of the checkpoint being restored written to disk so far, as they are written (from 0 again for an older one tried next). */
  onProgress?: (p: RestoreProgress) => void;
}

export interface RestoreProgress {
  checkpointId: string;
  doneBytes: number;
  totalBytes: number;
}

export const DEFAULT_RESTORE_CONCURRENCY = 8;
export const DEFAULT_RANGE_BYTES = 16 * 1024 * 1024;

/** Names of the restore's own entries in the target directory; nothing else starts with these. */
const STAGING_PREFIX = '.stevedore-restore-';
const ASIDE_PREFIX = '.stevedore-replaced-';

/** A checkpoint that is not what its manifest says: skip it and try an older one. */
class NotRestorable extends Error {
  override name = 'NotRestorable';
}

/** Admits at most `limit` holders at a time. */
class Semaphore {
  private available: number;
  private readonly waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.available = limit;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.available > 0) this.available--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.available++;
    }
  }
}

/**
 * Restores the newest committed checkpoint under `prefix` into `targetDir`.
 * Returns undefined when nothing is committed (the job starts fresh). Throws
 * CHECKPOINT_CORRUPT when checkpoints are committed but none of them can be
 * restored, and CHECKPOINT_RESTORE_FAILED (or the store's own error) when the
 * restore cannot proceed at all.
 */
export async function restoreNewest(opts: RestoreOptions): Promise<RestoreResult | undefined> {
  const { store, prefix, targetDir, logger, clock, signal } = opts;
  const concurrency = Math.max(1, Math.floor(opts.concurrency ?? DEFAULT_RESTORE_CONCURRENCY));
  const rangeBytes = Math.max(1, Math.floor(opts.rangeBytes ?? DEFAULT_RANGE_BYTES));
  const where = `s3://${store.bucket}/${prefix}`;
  const started = clock.now();

  signal?.throwIfAborted();
  const committed = await listCommitted(store, prefix, logger);
  if (committed.length === 0) {
    logger.info({ destination: where }, `no committed checkpoint under ${where}: the job starts fresh`);
    return undefined;
  }

  try {
    await fsp.mkdir(targetDir, { recursive: true });
  } catch (err) {
    throw new StevedoreError('CHECKPOINT_RESTORE_FAILED', `cannot create the checkpoint directory ${targetDir} to restore into: ${messageOf(err)}; check that the agent can write there`, { cause: err });
  }
  await removeLeftovers(targetDir, logger);

  const skipped: RestoreResult['skipped'] = [];
  for (const [index, { manifest, key }] of committed.entries()) {
    signal?.throwIfAborted();
    const attemptStart = clock.now();
    logger.info({ checkpointId: manifest.checkpointId, step: manifest.step, bytes: manifest.totalBytes, files: manifest.files.length, manifest: key }, `restoring checkpoint ${manifest.checkpointId} (${formatBytes(manifest.totalBytes)} in ${manifest.files.length} files) from ${where}`);
    try {
      const finalPath = await restoreOne({ store, manifest, targetDir, concurrency, rangeBytes, signal, onProgress: opts.onProgress });
      const bytes = manifest.files.reduce((sum, f) => sum + f.size, 0);
      const end = clock.now();
      const seconds = Math.max(end - attemptStart, 1) / 1000;
      logger.info(
        { checkpointId: manifest.checkpointId, step: manifest.step, path: finalPath, bytes, durationMs: end - started, skipped: skipped.length },
        `restored checkpoint ${manifest.checkpointId} to ${finalPath}: ${formatBytes(bytes)} in ${seconds.toFixed(1)} s (${formatBytes(Math.round(bytes / seconds))}/s)`,
      );
      return { manifest, path: finalPath, bytes, durationMs: end - started, skipped };
    } catch (err) {
      if (!(err instanceof NotRestorable)) throw err;
      skipped.push({ checkpointId: manifest.checkpointId, reason: err.message });
      const next = committed[index + 1];
      logger.warn(
        { checkpointId: manifest.checkpointId, reason: err.message },
        `checkpoint ${manifest.checkpointId} cannot be restored: ${err.message}; ${next ? `falling back to the previous committed checkpoint ${next.manifest.checkpointId}` : 'no older committed checkpoint is left'}`,
      );
    }
  }
  throw new StevedoreError(
    'CHECKPOINT_CORRUPT',
    `none of the ${committed.length} committed checkpoint(s) under ${where} could be restored (${skipped.map((s) => `${s.checkpointId}: ${s.reason}`).join('; ')}); ` +
      'inspect the objects in the bucket, or remove the checkpoints\' manifests to start the job fresh',
  );
}

/** Downloads, verifies and moves one checkpoint into place; returns its final path. */
async function restoreOne(args: {
  store: ObjectStore; manifest: Manifest; targetDir: string; concurrency: number; rangeBytes: number; signal: AbortSignal | undefined; onProgress: RestoreOptions['onProgress'];
}): Promise<string> {
  const { store, manifest, targetDir, concurrency, rangeBytes } = args;
  const name = manifest.name;
  if (name === '.' || name === '..' || name.includes('/') || name.includes('\0') || name.startsWith(STAGING_PREFIX) || name.startsWith(ASIDE_PREFIX)) {
    throw new NotRestorable(`its name ${JSON.stringify(name)} is not a valid file name`);
  }
  if (manifest.kind === 'file' && manifest.files.length !== 1) {
    throw new NotRestorable(`it is a single-file checkpoint but its manifest lists ${manifest.files.length} files`);
  }
  await checkFreeSpace(targetDir, manifest);

  const staging = await fsp.mkdtemp(path.join(targetDir, STAGING_PREFIX));
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(args.signal?.reason);
  args.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    // The checkpoint is assembled as <staging>/payload, then renamed to <targetDir>/<name>.
    const payload = path.join(staging, 'payload');
    const dirs = new Set<string>();
    if (manifest.kind === 'directory') {
      await fsp.mkdir(payload);
      dirs.add(payload);
    }
    const destinations = manifest.files.map((file) => {
      const dest = manifest.kind === 'file' ? payload : path.join(payload, ...file.path.split('/').filter((p) => p !== ''));
      if (manifest.kind === 'directory' && !dest.startsWith(`${payload}${path.sep}`)) throw new NotRestorable(`file ${JSON.stringify(file.path)} lies outside the checkpoint`);
      for (let d = path.dirname(dest); d.startsWith(`${payload}${path.sep}`); d = path.dirname(d)) dirs.add(d);
      return dest;
    });
    const seen = new Set<string>();
    for (const [i, dest] of destinations.entries()) {
      if (seen.has(dest) || dirs.has(dest)) throw new NotRestorable(`its manifest lists ${JSON.stringify(manifest.files[i]?.path)} twice, or as both a file and a directory`);
      seen.add(dest);
    }
    const semaphore = new Semaphore(concurrency);
    const totalBytes = manifest.files.reduce((sum, f) => sum + f.size, 0);
    let doneBytes = 0;
    const onProgress = args.onProgress;
    const written = (bytes: number): void => {
      doneBytes += bytes;
      onProgress?.({ checkpointId: manifest.checkpointId, doneBytes, totalBytes });
    };
    onProgress?.({ checkpointId: manifest.checkpointId, doneBytes, totalBytes });
    const ctx: FileContext = { store, semaphore, rangeBytes, signal: controller.signal, written };
    await mapConcurrent(manifest.files, concurrency, async (file, i) => {
      const dest = destinations[i] as string;
      try {
        await fsp.mkdir(path.dirname(dest), { recursive: true });
        await downloadFile(ctx, file, dest);
      } catch (err) {
        // Stop the other downloads at once: this checkpoint is not going to be restored.
        controller.abort(err);
        throw err;
      }
    });
    const finalPath = path.join(targetDir, name);
    await moveIntoPlace(payload, finalPath, targetDir);
    return finalPath;
  } catch (err) {
    if (args.signal?.aborted) throw args.signal.reason;
    throw classify(err, manifest);
  } finally {
    args.signal?.removeEventListener('abort', onAbort);
    await fsp.rm(staging, { recursive: true, force: true });
  }
}

interface FileContext {
  store: ObjectStore;
  semaphore: Semaphore;
  rangeBytes: number;
  signal: AbortSignal;
  /** Bytes written to disk. */
  written: (bytes: number) => void;
}

/** Downloads one file to `dest` and checks its size and digests against the manifest. */
async function downloadFile(ctx: FileContext, file: ManifestFile, dest: string): Promise<void> {
  if (file.parts !== undefined && file.partSize !== undefined) {
    // A small one-part file: one GET held in memory, without a HEAD first (its one digest is the whole file's).
    if (file.parts.length === 1 && file.size <= SMALL_FILE_BYTES) await downloadSmall(ctx, file, dest, file.parts[0] ?? '');
    else await downloadParts(ctx, file, file.partSize, file.parts, dest);
  } else if (file.size > ctx.rangeBytes) await downloadRanges(ctx, file, dest);
  else await downloadSmall(ctx, file, dest, file.sha256 ?? '');
}

/** One-part files up to this size are fetched into memory in one GET; larger ones are streamed to disk. */
const SMALL_FILE_BYTES = 4 * 1024 * 1024;
/** Attempts per part whose response body fails midway (the store itself retries a request that fails before its body). */
const PART_ATTEMPTS = 5;
/** Received bytes gathered before one positioned write. */
const WRITE_BATCH_BYTES = 1024 * 1024;

/**
 * A file of a v2 manifest: its parts are fetched in parallel ranged GETs, each
 * streamed to its offset as it arrives (no part is held whole in memory) and
 * hashed on the way; each part's SHA-256 must be the manifest's.
 */
async function downloadParts(ctx: FileContext, file: ManifestFile, partSize: number, digests: string[], dest: string): Promise<void> {
  if (digests.length !== partCount(file.size, partSize)) throw new NotRestorable(`its manifest lists ${digests.length} part digests for ${file.path} (${file.size} bytes in parts of ${partSize}), expected ${partCount(file.size, partSize)}`);
  const info = await ctx.semaphore.run(() => ctx.store.headObject(file.key, { signal: ctx.signal }));
  if (!info) throw new NotRestorable(`object ${file.key} for ${file.path} is missing`);
  if (info.size !== file.size) throw new NotRestorable(`object ${file.key} for ${file.path} holds ${info.size} bytes, the manifest lists ${file.size}`);
  const fh = await fsp.open(dest, 'wx', 0o644);
  try {
    if (digests.length > 1) await fh.truncate(file.size);
    // The shared semaphore bounds the requests; this bound only keeps idle waiters few.
    await mapConcurrent(digests, digests.length, (_digest, index) => ctx.semaphore.run(() => fetchPart(ctx, file, fh, partRange(file.size, partSize, index), index, digests)));
  } finally {
    await fh.close();
  }
}

/** Streams one part to its offset in the file and checks its SHA-256; a body cut off midway is fetched again. */
async function fetchPart(ctx: FileContext, file: ManifestFile, fh: fsp.FileHandle, range: { start: number; end: number }, index: number, digests: string[]): Promise<void> {
  const expected = range.end - range.start + 1;
  // Bytes of this part already reported as written (a retry rewrites them without counting them again).
  let reported = 0;
  for (let attempt = 1; ; attempt++) {
    ctx.signal.throwIfAborted();
    const hash = createHash('sha256');
    let received = 0;
    // An error of our own (the part's content, the disk) is not retried; only a response that fails midway is.
    let ours = false;
    const onData = async (chunk: Buffer): Promise<void> => {
      try {
        if (received + chunk.length > expected) throw new NotRestorable(`object ${file.key} for ${file.path} returned more than the ${expected} bytes of part ${index + 1} (bytes ${range.start}-${range.end})`);
        // Hashed and written before onData returns: the chunk's memory is reused after that.
        hash.update(chunk);
        await writeAll(fh, chunk, range.start + received);
      } catch (err) {
        ours = true;
        throw err;
      }
      received += chunk.length;
      const fresh = received - reported;
      if (fresh > 0) {
        reported += fresh;
        ctx.written(fresh);
      }
    };
    try {
      await readPart(ctx, file.key, range, onData);
    } catch (err) {
      if (ours || ctx.signal.aborted || isStevedoreError(err) || attempt >= PART_ATTEMPTS) throw err;
      continue;
    }
    if (received === expected) {
      verifyPart(file, index, digests, hash.digest('hex'), range);
      return;
    }
    if (attempt >= PART_ATTEMPTS) {
      throw new StevedoreError('OBJECT_STORE_FAILED', `get s3://${ctx.store.bucket}/${file.key}: the response for bytes ${range.start}-${range.end} ended after ${received} of ${expected} bytes, ${attempt} times; check the S3 endpoint and the network, then start the job again`);
    }
  }
}

/**
 * Delivers the bytes of a range to `onData` in order. A store that reads into
 * reused buffers (S3ObjectStore.readRange) does so without allocating per
 * network read; any other store's response stream is gathered into batches
 * of WRITE_BATCH_BYTES. Errors of the request itself (the store's, after its
 * retries) are StevedoreErrors; a body failing midway throws anything else.
 */
async function readPart(ctx: FileContext, key: string, range: { start: number; end: number }, onData: (chunk: Buffer) => Promise<void>): Promise<void> {
  if (isRangeReadable(ctx.store)) {
    await ctx.store.readRange(key, range, onData, { signal: ctx.signal });
    return;
  }
  const body: Readable = await ctx.store.getObjectStream(key, { range, verifiedByCaller: true, signal: ctx.signal });
  let batch: Buffer[] = [];
  let batchBytes = 0;
  try {
    for await (const chunk of body) {
      batch.push(chunk as Buffer);
      batchBytes += (chunk as Buffer).length;
      if (batchBytes >= WRITE_BATCH_BYTES) {
        const out = Buffer.concat(batch, batchBytes);
        batch = [];
        batchBytes = 0;
        await onData(out);
      }
    }
    if (batchBytes > 0) await onData(Buffer.concat(batch, batchBytes));
  } finally {
    body.destroy();
  }
}

function verifyPart(file: ManifestFile, index: number, digests: string[], sha256: string, range: { start: number; end: number }): void {
  const listed = digests[index];
  if (sha256 !== listed) {
    throw new NotRestorable(`object ${file.key} for ${file.path} has SHA-256 ${sha256} in part ${index + 1} of ${digests.length} (bytes ${range.start}-${range.end}), the manifest lists ${listed ?? 'none'}`);
  }
}

/**
 * A file of at most one range: one GET of exactly the listed bytes (the store
 * retries a response cut off midway), checked in memory against its SHA-256,
 * then written.
 */
async function downloadSmall(ctx: FileContext, file: ManifestFile, dest: string, sha256: string): Promise<void> {
  const data = await ctx.semaphore.run(async () => {
    ctx.signal.throwIfAborted();
    if (file.size === 0) {
      // No byte range can be asked of an empty object.
      const info = await ctx.store.headObject(file.key, { signal: ctx.signal });
      if (!info) throw new NotRestorable(`object ${file.key} for ${file.path} is missing`);
      if (info.size !== 0) throw new NotRestorable(`object ${file.key} for ${file.path} holds ${info.size} bytes, the manifest lists 0`);
      return Buffer.alloc(0);
    }
    return ctx.store.getObject(file.key, { range: { start: 0, end: file.size - 1 }, verifiedByCaller: true, signal: ctx.signal });
  });
  verify(file, data.length, createHash('sha256').update(data).digest('hex'), sha256);
  const fh = await fsp.open(dest, 'wx', 0o644);
  try {
    await writeAll(fh, data, 0);
  } finally {
    await fh.close();
  }
  ctx.written(data.length);
}

/** Writes all of `data` at `position`. */
async function writeAll(fh: fsp.FileHandle, data: Buffer, position: number): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await fh.write(data, written, data.length - written, position + written);
    written += bytesWritten;
  }
}

/** A large file: its ranges are fetched in parallel and written at their offsets; the finished file is hashed. */
async function downloadRanges(ctx: FileContext, file: ManifestFile, dest: string): Promise<void> {
  const info = await ctx.semaphore.run(() => ctx.store.headObject(file.key, { signal: ctx.signal }));
  if (!info) throw new NotRestorable(`object ${file.key} for ${file.path} is missing`);
  if (info.size !== file.size) throw new NotRestorable(`object ${file.key} for ${file.path} holds ${info.size} bytes, the manifest lists ${file.size}`);
  const ranges: { start: number; end: number }[] = [];
  for (let start = 0; start < file.size; start += ctx.rangeBytes) ranges.push({ start, end: Math.min(start + ctx.rangeBytes, file.size) - 1 });
  const fh = await fsp.open(dest, 'wx', 0o644);
  try {
    await fh.truncate(file.size);
    // The shared semaphore bounds the requests; this bound only keeps idle waiters few.
    await mapConcurrent(ranges, ranges.length, (range) =>
      ctx.semaphore.run(async () => {
        ctx.signal.throwIfAborted();
        const data = await ctx.store.getObject(file.key, { range, signal: ctx.signal });
        const expected = range.end - range.start + 1;
        if (data.length !== expected) throw new NotRestorable(`object ${file.key} for ${file.path} returned ${data.length} bytes for the range ${range.start}-${range.end}, expected ${expected}`);
        await writeAll(fh, data, range.start);
        ctx.written(data.length);
      }),
    );
  } finally {
    await fh.close();
  }
  const hash = createHash('sha256');
  let bytes = 0;
  // Hashed in file order once every range is written.
  for await (const chunk of fs.createReadStream(dest, { highWaterMark: 1024 * 1024, signal: ctx.signal })) {
    bytes += (chunk as Buffer).length;
    hash.update(chunk as Buffer);
  }
  verify(file, bytes, hash.digest('hex'), file.sha256 ?? '');
}

function verify(file: ManifestFile, bytes: number, sha256: string, listed: string): void {
  if (bytes !== file.size) throw new NotRestorable(`object ${file.key} for ${file.path} holds ${bytes} bytes, the manifest lists ${file.size}`);
  if (sha256 !== listed) throw new NotRestorable(`object ${file.key} for ${file.path} has SHA-256 ${sha256}, the manifest lists ${listed}`);
}

/**
 * Renames `source` to `finalPath`. What was there under that name is first
 * moved aside (a directory cannot be renamed over), then removed; if the
 * rename fails, it is put back. No half-restored content is ever under the name.
 */
async function moveIntoPlace(source: string, finalPath: string, targetDir: string): Promise<void> {
  let aside: string | undefined;
  if (await exists(finalPath)) {
    aside = path.join(targetDir, `${ASIDE_PREFIX}${randomBytes(6).toString('hex')}`);
    await fsp.rename(finalPath, aside);
  }
  try {
    await fsp.rename(source, finalPath);
  } catch (err) {
    if (aside) await fsp.rename(aside, finalPath).catch(() => undefined);
    throw err;
  }
  if (aside) await fsp.rm(aside, { recursive: true, force: true });
}

async function exists(p: string): Promise<boolean> {
  try {
    await fsp.lstat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** Removes staging and set-aside directories a restore interrupted by a crash left behind. */
async function removeLeftovers(targetDir: string, logger: Logger): Promise<void> {
  for (const entry of await fsp.readdir(targetDir)) {
    if (!entry.startsWith(STAGING_PREFIX) && !entry.startsWith(ASIDE_PREFIX)) continue;
    logger.info({ path: path.join(targetDir, entry) }, 'removing what an interrupted restore left behind');
    await fsp.rm(path.join(targetDir, entry), { recursive: true, force: true });
  }
}

async function checkFreeSpace(targetDir: string, manifest: Manifest): Promise<void> {
  const needed = manifest.files.reduce((sum, f) => sum + f.size, 0);
  const stats = await fsp.statfs(targetDir);
  const free = stats.bavail * stats.bsize;
  if (free < needed) {
    throw new StevedoreError(
      'CHECKPOINT_RESTORE_FAILED',
      `checkpoint ${manifest.checkpointId} needs ${formatBytes(needed)} but only ${formatBytes(free)} is free in ${targetDir}; free space there (or give the job a larger checkpoint volume) and start it again`,
    );
  }
}

/**
 * A missing object, or one whose content is not what the manifest lists, makes
 * the checkpoint not restorable (try an older one). Everything else is passed on.
 */
function classify(err: unknown, manifest: Manifest): unknown {
  if (err instanceof NotRestorable) return err;
  if (isStevedoreError(err, 'CHECKPOINT_CORRUPT')) return new NotRestorable(messageOf(err), { cause: err });
  const nameOf = (e: unknown): unknown => (e as { name?: unknown } | null | undefined)?.name;
  // A range past the object's end: the object is shorter than the manifest says.
  const invalidRange = nameOf(err) === 'InvalidRange' || nameOf((err as { cause?: unknown } | null | undefined)?.cause) === 'InvalidRange';
  if (isNotFound(err) || invalidRange) return new NotRestorable(messageOf(err), { cause: err });
  if (isStevedoreError(err)) return err;
  return new StevedoreError('CHECKPOINT_RESTORE_FAILED', `restoring checkpoint ${manifest.checkpointId} failed: ${messageOf(err)}; check the checkpoint directory's disk and the S3 endpoint, then start the job again`, { cause: err });
}
