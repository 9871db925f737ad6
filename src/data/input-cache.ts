// Job inputs: a dataset fetched once per node into a cache and mounted
// read-only into every job that names it.
//
// An entry is keyed by the URL and the source's version (ETag, else
// Last-Modified, and size, from a HEAD) and by how it is extracted: a changed
// source gets a new entry, an unchanged one is reused without a download.
// An entry is built in a working directory inside the cache and renamed into
// place when complete, so a half-downloaded or half-extracted input is never
// visible, not even after a crash. Jobs asking for the same input at once share
// one download (one task per key in this process, and a lock file per key
// for agents sharing the cache directory).
//
// Layout under `dir`:
//   inputs/<key>/            a finished entry (the directory to mount)
//   inputs/.work/<key>.<pid>.<random>/   an entry being built
//   inputs/.locks/<key>.lock  held (pid inside) while an entry is built
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ReadEntry } from 'tar';
import type { InputSpec } from '../spec/job-spec.ts';
import { parseS3Url, type ObjectStore } from '../storage/object-store.ts';
import { fsyncDir } from '../util/atomic-file.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';

export interface PreparedInput {
  /** The entry directory to mount read-only at the input's target. */
  hostPath: string;
  /** True when this call downloaded nothing (the entry existed, or another job's download was shared). */
  reused: boolean;
  /** Bytes of the source (downloaded by this call, or downloaded earlier for a reused entry; 0 when the source did not say). */
  bytes: number;
  durationMs: number;
}

export interface InputCacheOptions {
  /** The cache directory, <stateDir>/cache. Created when missing. */
  dir: string;
  /** The store for an s3:// input: the configured endpoint of that name, for that bucket. */
  storeFor: (endpoint: string, bucket: string) => ObjectStore;
  logger: Logger;
  clock: Clock;
  /** Default globalThis.fetch. */
  fetchImpl?: typeof fetch;
  /** An HTTP request that receives nothing (headers or body bytes) for this long is abandoned. Default 60000 ms. */
  idleTimeoutMs?: number;
  /** Bytes per ranged GET of an s3:// input; each range is retried by the store on its own. Default 16 MiB. */
  s3RangeBytes?: number;
  /** How often to look again while another agent builds the same entry. Default 250 ms. */
  lockPollMs?: number;
}

export interface PrepareOptions {
  signal?: AbortSignal;
  /** Bytes downloaded so far and the total when known; called as bytes arrive. */
  onProgress?: (bytes: number, total: number | undefined) => void;
}

type Source =
  | { kind: 'http'; url: string; name: string }
  | { kind: 's3'; store: ObjectStore; key: string; name: string };

interface Version {
  /** ETag, else Last-Modified, else '' (the source says neither). */
  tag: string;
  /** The ETag alone, when the source gave one. */
  etag?: string | undefined;
  size: number | undefined;
}

type ExtractMode = 'none' | 'tar' | 'tar.gz';

interface Built {
  hostPath: string;
  bytes: number;
  downloaded: boolean;
}

interface SharedTask {
  promise: Promise<Built>;
  controller: AbortController;
  waiters: number;
  settled: boolean;
  listeners: Set<(bytes: number, total: number | undefined) => void>;
}

const DEFAULT_IDLE_MS = 60_000;
const DEFAULT_RANGE_BYTES = 16 * 1024 * 1024;
const DEFAULT_LOCK_POLL_MS = 250;
/** A lock file without a readable pid this old is left over from a crash. */
const UNREADABLE_LOCK_STALE_MS = 10_000;

/** The URL as it may appear in logs and messages: no credentials, no query (tokens), no fragment. */
export function describeInputUrl(url: string): string {
  if (url.startsWith('s3://')) return url.split(/[?#]/, 1)[0] ?? url;
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(an invalid URL)';
  }
}

/** The extraction an input gets: `auto` goes by the name (.tar, .tar.gz, .tgz), else none. */
export function extractModeFor(extract: InputSpec['extract'], name: string): ExtractMode {
  if (extract !== 'auto') return extract;
  const lower = name.toLowerCase();
  if (lower.endsWith('.tar.gz') || lower.endsWith('.tgz')) return 'tar.gz';
  if (lower.endsWith('.tar')) return 'tar';
  return 'none';
}

function sha256(text: string): string {
  return crypto.createHash('sha256').update(text).digest('hex');
}

/** The cache key: the URL's hash, then a hash of the source's version and the extraction. */
export function entryKey(url: string, version: Version, mode: ExtractMode): string {
  return `${sha256(url).slice(0, 32)}-${sha256(`${version.tag}\n${version.size ?? ''}\n${mode}`).slice(0, 16)}`;
}

/** A file name for a non-archive input: the last segment of the URL's path (or key). */
function safeBasename(segment: string): string {
  let name = segment;
  try {
    name = decodeURIComponent(segment);
  } catch {
    // keep it encoded
  }
  if (name === '' || name === '.' || name === '..' || /[/\\\0]/.test(name)) return 'input';
  return name;
}

/** Why an archive entry may not be extracted, or undefined when it may. */
export function archiveEntryProblem(entry: { path: string; type: string; linkpath?: string | undefined }): string | undefined {
  const p = entry.path.replace(/\\/g, '/');
  const isAbsolute = (s: string): boolean => s.startsWith('/') || /^[A-Za-z]:/.test(s);
  if (isAbsolute(p)) return `"${entry.path}" has an absolute path`;
  if (p.split('/').includes('..')) return `"${entry.path}" leads outside the directory ("..")`;
  switch (entry.type) {
    case 'SymbolicLink': {
      const target = (entry.linkpath ?? '').replace(/\\/g, '/');
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(p), target));
      if (isAbsolute(target) || resolved === '..' || resolved.startsWith('../')) return `"${entry.path}" is a link to "${entry.linkpath ?? ''}", outside the directory`;
      return undefined;
    }
    case 'Link': {
      const target = (entry.linkpath ?? '').replace(/\\/g, '/');
      if (isAbsolute(target) || target.split('/').includes('..')) return `"${entry.path}" is a hard link to "${entry.linkpath ?? ''}", outside the directory`;
      return undefined;
    }
    case 'CharacterDevice':
    case 'BlockDevice':
    case 'FIFO':
      return `"${entry.path}" is a device or a pipe`;
    default:
      return undefined;
  }
}

function errnoCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e !== undefined && e !== null; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

/** Rejects with the signal's reason when it aborts first. */
function raceSignal<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason as Error);
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: Error) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

export class InputCache {
  private readonly root: string;
  private readonly workDir: string;
  private readonly lockDir: string;
  private readonly storeFor: InputCacheOptions['storeFor'];
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly fetchImpl: typeof fetch;
  private readonly idleTimeoutMs: number;
  private readonly rangeBytes: number;
  private readonly lockPollMs: number;
  private readonly tasks = new Map<string, SharedTask>();
  private initialized = false;

  constructor(opts: InputCacheOptions) {
    this.root = path.join(opts.dir, 'inputs');
    this.workDir = path.join(this.root, '.work');
    this.lockDir = path.join(this.root, '.locks');
    this.storeFor = opts.storeFor;
    this.logger = opts.logger;
    this.clock = opts.clock;
    this.fetchImpl = opts.fetchImpl ?? globalThis.fetch;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_MS;
    this.rangeBytes = Math.max(1, opts.s3RangeBytes ?? DEFAULT_RANGE_BYTES);
    this.lockPollMs = opts.lockPollMs ?? DEFAULT_LOCK_POLL_MS;
  }

  /**
   * The input's entry, downloaded (and extracted) when the cache has no entry
   * for the source's current version. Throws INPUT_UNAVAILABLE when the source
   * cannot be fetched, INPUT_INVALID when what was fetched is unusable; in both
   * cases nothing is left in the cache. An abort rejects with the signal's reason.
   */
  async prepare(input: InputSpec, opts: PrepareOptions = {}): Promise<PreparedInput> {
    const started = this.clock.now();
    opts.signal?.throwIfAborted();
    this.init();
    const source = this.sourceOf(input);
    const version = await this.head(source, input.url, opts.signal);
    const mode = extractModeFor(input.extract, source.name);
    const key = entryKey(input.url, version, mode);

    let task = this.tasks.get(key);
    const joined = task !== undefined;
    if (!task) {
      const controller = new AbortController();
      const listeners = new Set<(bytes: number, total: number | undefined) => void>();
      const created: SharedTask = {
        controller,
        listeners,
        waiters: 0,
        settled: false,
        promise: this.build(key, input.url, source, version, mode, controller.signal, (b, t) => {
          for (const listener of listeners) listener(b, t);
        }),
      };
      task = created;
      this.tasks.set(key, created);
      created.promise.then(
        () => undefined,
        () => undefined,
      ).finally(() => {
        created.settled = true;
        if (this.tasks.get(key) === created) this.tasks.delete(key);
      });
    }
    const progress = opts.onProgress;
    if (progress) task.listeners.add(progress);
    task.waiters++;
    try {
      const built = await raceSignal(task.promise, opts.signal);
      const durationMs = this.clock.now() - started;
      return { hostPath: built.hostPath, reused: joined || !built.downloaded, bytes: built.bytes, durationMs };
    } finally {
      if (progress) task.listeners.delete(progress);
      task.waiters--;
      // The last job waiting for it gave up: stop the download.
      if (task.waiters === 0 && !task.settled) task.controller.abort(opts.signal?.reason ?? new Error('every job waiting for this input gave up'));
    }
  }

  private init(): void {
    if (this.initialized) return;
    try {
      fs.mkdirSync(this.workDir, { recursive: true });
      fs.mkdirSync(this.lockDir, { recursive: true });
      // Working directories of processes that no longer run (this one's pid included: a previous life).
      for (const name of fs.readdirSync(this.workDir)) {
        const pid = Number(name.split('.')[1]);
        if (!Number.isInteger(pid) || pid === process.pid || !pidAlive(pid)) fs.rmSync(path.join(this.workDir, name), { recursive: true, force: true });
      }
    } catch (err) {
      throw new StevedoreError('STATE_DIR_UNWRITABLE', `cannot prepare the input cache in ${this.root}: ${messageOf(err)}; check that the agent's state directory is writable and the disk is not full`, { cause: err });
    }
    this.initialized = true;
  }

  private sourceOf(input: InputSpec): Source {
    const where = describeInputUrl(input.url);
    if (input.url.startsWith('s3://')) {
      const parsed = parseS3Url(input.url);
      if (!parsed || parsed.prefix === '') throw new StevedoreError('INPUT_INVALID', `input ${where} is not an S3 object URL; write s3://bucket/path/to/object`);
      const store = this.storeFor(input.endpoint, parsed.bucket);
      return { kind: 's3', store, key: parsed.prefix, name: safeBasename(parsed.prefix.split('/').pop() ?? '') };
    }
    let url: URL;
    try {
      url = new URL(input.url);
    } catch (err) {
      throw new StevedoreError('INPUT_INVALID', `input ${where} is not a valid URL; write an http(s):// or s3:// URL`, { cause: err });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new StevedoreError('INPUT_INVALID', `input ${where}: only http(s):// and s3:// URLs are supported`);
    return { kind: 'http', url: input.url, name: safeBasename(url.pathname.split('/').pop() ?? '') };
  }

  // ---- the source's version -------------------------------------------------

  private async head(source: Source, url: string, signal: AbortSignal | undefined): Promise<Version> {
    const where = describeInputUrl(url);
    if (source.kind === 's3') {
      let info;
      try {
        info = await source.store.headObject(source.key, { signal });
      } catch (err) {
        signal?.throwIfAborted();
        throw this.storeError(err, where);
      }
      if (!info) throw new StevedoreError('INPUT_UNAVAILABLE', `input ${where} does not exist (HEAD answered 404); check the bucket, the key and the endpoint "${source.store.bucket}" is served by`);
      return { tag: info.etag || (info.lastModifiedMs ? String(info.lastModifiedMs) : ''), size: info.size };
    }
    const res = await this.request(source.url, 'HEAD', signal, where);
    if (res.response.status === 405 || res.response.status === 501) {
      res.done();
      this.logger.warn({ url: where, status: res.response.status }, `input ${where}: the server does not answer HEAD; the cached copy is used for as long as it exists, whatever the source's version`);
      return { tag: '', size: undefined };
    }
    res.done();
    if (!res.response.ok) throw this.statusError(res.response.status, res.response.statusText, where);
    const etag = res.response.headers.get('etag') ?? undefined;
    return {
      tag: etag ?? res.response.headers.get('last-modified') ?? '',
      etag,
      size: contentLength(res.response.headers),
    };
  }

  /** A fetch whose headers must arrive within the idle timeout; `touch` re-arms it while a body streams. */
  private async request(url: string, method: 'HEAD' | 'GET', signal: AbortSignal | undefined, where: string): Promise<{ response: Response; touch(): void; done(): void; idled(): boolean }> {
    const controller = new AbortController();
    let idle = false;
    let timer: Timer | undefined;
    const arm = (): void => {
      timer?.cancel();
      timer = this.clock.setTimeout(() => {
        idle = true;
        controller.abort(new StevedoreError('INPUT_UNAVAILABLE', `input ${where}: nothing received for ${formatMs(this.idleTimeoutMs)}; check the server and the network, then start the job again`));
      }, this.idleTimeoutMs);
    };
    arm();
    const combined = signal ? AbortSignal.any([signal, controller.signal]) : controller.signal;
    let response: Response;
    try {
      response = await this.fetchImpl(url, { method, signal: combined, headers: { 'accept-encoding': 'identity' }, redirect: 'follow' });
    } catch (err) {
      timer?.cancel();
      signal?.throwIfAborted();
      if (idle) throw controller.signal.reason as Error;
      const code = errnoCode(err);
      throw new StevedoreError('INPUT_UNAVAILABLE', `input ${where} is unreachable (${code ?? messageOf(err)}); check the URL's host, DNS and the network from this node`, { cause: err });
    }
    return {
      response,
      touch: arm,
      done: () => timer?.cancel(),
      idled: () => idle,
    };
  }

  private statusError(status: number, statusText: string, where: string): StevedoreError {
    const answer = `answered ${status}${statusText ? ` ${statusText}` : ''}`;
    if (status === 404 || status === 410) return new StevedoreError('INPUT_UNAVAILABLE', `input ${where} ${answer}; check the URL (the dataset may have moved)`);
    if (status === 401 || status === 403) return new StevedoreError('INPUT_UNAVAILABLE', `input ${where} ${answer}; the URL needs access rights: check that it is public or that its signed link has not expired`);
    if (status >= 500) return new StevedoreError('INPUT_UNAVAILABLE', `input ${where} ${answer}; the server failed: try again later or check the server`);
    return new StevedoreError('INPUT_UNAVAILABLE', `input ${where} ${answer}; check the URL`);
  }

  /** A store failure (its message names the bucket, key, endpoint and what to check). */
  private storeError(err: unknown, where: string): StevedoreError {
    return new StevedoreError('INPUT_UNAVAILABLE', `input ${where}: ${messageOf(err)}`, { cause: err });
  }

  // ---- building an entry ------------------------------------------------------

  private async build(key: string, url: string, source: Source, version: Version, mode: ExtractMode, signal: AbortSignal, progress: (bytes: number, total: number | undefined) => void): Promise<Built> {
    const entry = path.join(this.root, key);
    const where = describeInputUrl(url);
    if (this.reuse(entry)) return { hostPath: entry, bytes: version.size ?? 0, downloaded: false };
    const release = await this.lock(key, entry, signal);
    try {
      if (this.reuse(entry)) return { hostPath: entry, bytes: version.size ?? 0, downloaded: false };
      const work = path.join(this.workDir, `${key}.${process.pid}.${crypto.randomBytes(4).toString('hex')}`);
      fs.mkdirSync(work);
      try {
        const started = this.clock.now();
        this.logger.info({ url: where, size: version.size, extract: mode }, `downloading input ${where}`);
        const file = path.join(work, 'download');
        const bytes = source.kind === 's3'
          ? await this.downloadS3(source, version, file, where, signal, progress)
          : await this.downloadHttp(source.url, version, file, where, signal, progress);
        const content = path.join(work, 'content');
        if (mode === 'none') {
          fs.mkdirSync(content);
          fs.renameSync(file, path.join(content, source.name));
        } else {
          await extractArchive(file, content, mode, where);
        }
        fs.renameSync(content, entry);
        fsyncDir(this.root);
        this.logger.info({ url: where, bytes, extract: mode, durationMs: this.clock.now() - started }, `input ${where} ready in the node cache`);
        return { hostPath: entry, bytes, downloaded: true };
      } finally {
        fs.rmSync(work, { recursive: true, force: true });
      }
    } finally {
      release();
    }
  }

  /** Whether the entry exists; marks it used (its mtime) for a future eviction by age. */
  private reuse(entry: string): boolean {
    try {
      const now = new Date(this.clock.now());
      fs.utimesSync(entry, now, now);
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  /**
   * Holds the key's lock file (for agents sharing the cache). Returns at once,
   * holding nothing, when the entry appears while another agent holds it.
   */
  private async lock(key: string, entry: string, signal: AbortSignal): Promise<() => void> {
    const file = path.join(this.lockDir, `${key}.lock`);
    for (;;) {
      try {
        fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
        return () => fs.rmSync(file, { force: true });
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      let stale: boolean;
      try {
        const holder = Number(fs.readFileSync(file, 'utf8').trim());
        if (Number.isInteger(holder) && holder > 0) {
          // Our own pid in a lock we do not hold (this process holds the key's only task): a previous life's.
          stale = holder === process.pid || !pidAlive(holder);
        } else {
          stale = this.clock.now() - fs.statSync(file).mtimeMs > UNREADABLE_LOCK_STALE_MS;
        }
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw err;
      }
      if (stale) {
        fs.rmSync(file, { force: true });
        continue;
      }
      if (fs.existsSync(entry)) return () => undefined;
      await this.clock.sleep(this.lockPollMs, signal);
    }
  }

  private async downloadHttp(url: string, version: Version, file: string, where: string, signal: AbortSignal, progress: (bytes: number, total: number | undefined) => void): Promise<number> {
    const req = await this.request(url, 'GET', signal, where);
    const res = req.response;
    let bytes = 0;
    let total = version.size;
    try {
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => undefined);
        throw this.statusError(res.status, res.statusText, where);
      }
      const etag = res.headers.get('etag');
      if (version.etag !== undefined && etag !== null && etag !== version.etag) {
        await res.body?.cancel().catch(() => undefined);
        throw new StevedoreError('INPUT_UNAVAILABLE', `input ${where} changed while being fetched (ETag ${version.etag} became ${etag}); start the job again`);
      }
      const length = contentLength(res.headers);
      if (total !== undefined && length !== undefined && length !== total) {
        await res.body?.cancel().catch(() => undefined);
        throw new StevedoreError('INPUT_UNAVAILABLE', `input ${where} changed while being fetched (HEAD said ${total} bytes, GET ${length}); start the job again`);
      }
      total ??= length;
      const handle = await fs.promises.open(file, 'wx', 0o644);
      try {
        if (res.body) {
          for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
            req.touch();
            await handle.write(chunk);
            bytes += chunk.byteLength;
            progress(bytes, total);
          }
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (err) {
      signal.throwIfAborted();
      if (req.idled()) throw new StevedoreError('INPUT_UNAVAILABLE', `input ${where}: nothing received for ${formatMs(this.idleTimeoutMs)} after ${bytes}${total !== undefined ? ` of ${total}` : ''} bytes; check the server and the network, then start the job again`, { cause: err });
      if (err instanceof StevedoreError) throw err;
      throw new StevedoreError('INPUT_UNAVAILABLE', `input ${where}: the download broke off after ${bytes}${total !== undefined ? ` of ${total}` : ''} bytes (${errnoCode(err) ?? messageOf(err)}); nothing was kept, start the job again`, { cause: err });
    } finally {
      req.done();
    }
    if (total !== undefined && bytes !== total) {
      throw new StevedoreError('INPUT_INVALID', `input ${where}: received ${bytes} bytes, expected ${total}; the server sent an incomplete or different file: check the server, then start the job again`);
    }
    return bytes;
  }

  private async downloadS3(source: Extract<Source, { kind: 's3' }>, version: Version, file: string, where: string, signal: AbortSignal, progress: (bytes: number, total: number | undefined) => void): Promise<number> {
    const total = version.size ?? 0;
    let bytes = 0;
    const handle = await fs.promises.open(file, 'wx', 0o644);
    try {
      while (bytes < total) {
        const end = Math.min(total, bytes + this.rangeBytes) - 1;
        const chunk = await source.store.getObject(source.key, { range: { start: bytes, end }, signal });
        if (chunk.length !== end - bytes + 1) {
          throw new StevedoreError('INPUT_INVALID', `input ${where}: bytes ${bytes}-${end} came back as ${chunk.length} bytes; the object changed or shrank while being fetched: start the job again`);
        }
        await handle.write(chunk);
        bytes += chunk.length;
        progress(bytes, total);
      }
      await handle.sync();
    } catch (err) {
      signal.throwIfAborted();
      if (err instanceof StevedoreError && err.code.startsWith('INPUT_')) throw err;
      throw this.storeError(err, where);
    } finally {
      await handle.close();
    }
    // The ranges must all come from one version of the object.
    let after;
    try {
      after = await source.store.headObject(source.key, { signal });
    } catch (err) {
      signal.throwIfAborted();
      throw this.storeError(err, where);
    }
    if (!after || after.etag !== version.tag || after.size !== total) {
      throw new StevedoreError('INPUT_UNAVAILABLE', `input ${where} changed or disappeared while being fetched; start the job again once the object is stable`);
    }
    return bytes;
  }
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

function contentLength(headers: Headers): number | undefined {
  const value = headers.get('content-length');
  if (value === null || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

/** Extracts a tar or tar.gz archive into `dest`, refusing it whole when any entry would land outside. */
async function extractArchive(file: string, dest: string, mode: 'tar' | 'tar.gz', where: string): Promise<void> {
  fs.mkdirSync(dest);
  const problems: string[] = [];
  try {
    // Loaded on first use: most agents never extract an archive, and tar costs about 1 MB of heap for the agent's life.
    const tar = await import('tar');
    await tar.x({
      file,
      cwd: dest,
      strict: true,
      preserveOwner: false,
      filter: (_p, entry) => {
        const problem = archiveEntryProblem(entry as ReadEntry);
        if (problem !== undefined) problems.push(problem);
        return problem === undefined;
      },
    });
  } catch (err) {
    if (problems.length === 0) {
      throw new StevedoreError('INPUT_INVALID', `input ${where} is not a readable ${mode} archive (${messageOf(err)}); check the file, or set the input's extract to "none" to mount it as it is`, { cause: err });
    }
  }
  if (problems.length > 0) {
    throw new StevedoreError('INPUT_INVALID', `input ${where}: archive entry ${problems[0] ?? ''}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}; the archive was not used: rebuild it with relative paths that stay inside it`);
  }
}
