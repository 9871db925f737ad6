// Watches a job's checkpoint directory and reports its checkpoints, complete
// or still being written, to whoever uploads them.
//
// The filesystem scan is the truth; chokidar's events are only hints that say
// when to scan sooner. chokidar can miss files created in a directory that was
// just created (the `mkdir checkpoint-N && write files` pattern), repeats
// events, and stops getting events when the inotify watch limit is reached.
// So: every event schedules a re-scan of its top-level entry (debounced), a
// directory creation re-scans at once and again a little later, and a timer
// re-scans everything every rescanMs. Nothing is lost when an event is.
import fs from 'node:fs/promises';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import type { Clock, Timer } from '../util/clock.ts';
import type { Logger } from '../util/logger.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import { compareCandidatesNewestFirst, evaluate, type CheckpointCandidate, type CommitRule, type LocalFile, type ScannedEntry } from './commit-rules.ts';

export interface CheckpointWatcherOptions {
  /** The host directory the job writes its checkpoints into; created when missing. */
  dir: string;
  rule: CommitRule;
  clock: Clock;
  logger: Logger;
  /** Full re-scan period, whatever the events say. Default 2000 ms. */
  rescanMs?: number;
}

export type CandidatesListener = (candidates: CheckpointCandidate[]) => void;

/** Events for the same entry within this window share one scan. */
const DEBOUNCE_MS = 50;
/**
 * chokidar drops a path's change events within 50 ms of the one before, with
 * no trailing event: a last write can go unreported. One more scan this long
 * after an entry's last event catches it.
 */
const TRAILING_MS = 100;
/** After a directory appears: one scan at once, and one more this much later. */
const NEW_DIR_RESCAN_MS = 100;
/** start() waits this long at most for chokidar's initial walk. */
const READY_TIMEOUT_MS = 10_000;
/** Parallel lstat calls per directory during a scan. */
const STAT_CONCURRENCY = 32;

interface EntryState {
  signature: string;
  scanned: ScannedEntry;
}

interface ListenerState {
  fn: CandidatesListener;
  /** Whether this listener got a result yet: a new listener gets the next scan's result even when unchanged. */
  served: boolean;
}

export class CheckpointWatcher {
  private readonly dir: string;
  private readonly rule: CommitRule;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly rescanMs: number;

  private readonly entries = new Map<string, EntryState>();
  private readonly listeners = new Set<ListenerState>();
  private lastFingerprint: string | undefined;
  private lastCandidates: CheckpointCandidate[] = [];

  private chokidar: FSWatcher | undefined;
  private started = false;
  private closed = false;
  private warnedInotify = false;
  /** Ends start()'s wait for chokidar's first walk (when closed meanwhile). */
  private stopWaitingForReady: (() => void) | undefined;

  /** Entries waiting for a debounced scan; 'all' means the whole directory. */
  private pending = new Set<string>();
  private pendingAll = false;
  private debounceTimer: Timer | undefined;
  /** Per target: the time of its latest event, and the timer of its trailing scan. */
  private readonly trailing = new Map<string, { lastEventMs: number; timer: Timer }>();
  private rescanTimer: Timer | undefined;
  private wakeTimer: Timer | undefined;
  private readonly extraTimers = new Set<Timer>();
  /** Scans run one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Scans queued but not started yet, by target ('all' or an entry name). */
  private readonly waiting = new Map<string, Promise<void>>();

  constructor(opts: CheckpointWatcherOptions) {
    this.dir = path.resolve(opts.dir);
    this.rule = opts.rule;
    this.clock = opts.clock;
    this.logger = opts.logger.child({ component: 'checkpoint-watcher', dir: this.dir });
    this.rescanMs = opts.rescanMs ?? 2000;
    if (!Number.isFinite(this.rescanMs) || this.rescanMs <= 0) {
      throw new RangeError(`rescanMs must be a positive number of milliseconds, not ${String(opts.rescanMs)}`);
    }
  }

  /** Creates the directory when missing, starts watching and runs the first scan. */
  async start(): Promise<void> {
    if (this.started || this.closed) return;
    this.started = true;
    try {
      await fs.mkdir(this.dir, { recursive: true });
      if (!(await fs.stat(this.dir)).isDirectory()) throw new Error('not a directory');
    } catch (err) {
      this.started = false;
      throw new StevedoreError(
        'CHECKPOINT_DIR_UNUSABLE',
        `cannot use ${this.dir} as the checkpoint directory: ${messageOf(err)}. Check that it is a directory the agent can create and write (owner, permissions, a read-only or full filesystem)`,
        { cause: err },
      );
    }
    if (this.closed) return;
    const watcher = watch(this.dir, {
      usePolling: false,
      ignoreInitial: false,
      followSymlinks: false,
      // The watches must not keep the process alive: chokidar 5 can leave one
      // behind when it is closed while it is still adding a new directory
      // (it drops the closer it gets after close). The agent's own timers
      // keep it running while the watcher works.
      persistent: false,
    });
    this.chokidar = watcher;
    watcher.on('all', (event, changed) => this.onEvent(event, changed));
    watcher.on('error', (err) => this.onWatchError(err));
    await new Promise<void>((resolve) => {
      const timer = this.clock.setTimeout(() => {
        this.logger.warn({ timeoutMs: READY_TIMEOUT_MS }, 'the file watcher has not finished its first walk of the checkpoint directory; relying on periodic scans meanwhile');
        done();
      }, READY_TIMEOUT_MS);
      const done = (): void => {
        timer.cancel();
        this.stopWaitingForReady = undefined;
        resolve();
      };
      this.stopWaitingForReady = done;
      watcher.once('ready', done);
    });
    if (this.closed) return;
    await this.runScan('all');
    this.armRescan();
  }

  /**
   * Calls the listener with all candidates, newest first, after every scan
   * whose result differs from the one before (and after the first scan it
   * sees). Returns a function that removes it.
   */
  onChange(listener: CandidatesListener): () => void {
    const state: ListenerState = { fn: listener, served: false };
    this.listeners.add(state);
    return () => {
      this.listeners.delete(state);
    };
  }

  /** Scans the whole directory now; resolves with all candidates, newest first. */
  async scanNow(): Promise<CheckpointCandidate[]> {
    await this.runScan('all');
    return this.lastCandidates;
  }

  /** The candidates of the latest scan, newest first. */
  get candidates(): CheckpointCandidate[] {
    return this.lastCandidates;
  }

  /** Stops watching. Safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopWaitingForReady?.();
    this.debounceTimer?.cancel();
    this.rescanTimer?.cancel();
    this.wakeTimer?.cancel();
    for (const timer of this.extraTimers) timer.cancel();
    this.extraTimers.clear();
    for (const { timer } of this.trailing.values()) timer.cancel();
    this.trailing.clear();
    const watcher = this.chokidar;
    this.chokidar = undefined;
    if (watcher) await watcher.close();
    await this.queue.catch(() => undefined);
  }

  private onEvent(event: string, changed: string): void {
    if (this.closed) return;
    const rel = path.relative(this.dir, changed);
    if (rel.startsWith('..') || path.isAbsolute(rel)) return;
    const top = rel === '' ? undefined : rel.split(path.sep)[0];
    if (event === 'addDir') {
      // chokidar may miss files created in a fresh directory before its watch
      // is in place: look now, and once more a little later.
      const target = top ?? 'all';
      this.enqueue(target);
      const timer = this.clock.setTimeout(() => {
        this.extraTimers.delete(timer);
        this.enqueue(target);
      }, NEW_DIR_RESCAN_MS);
      this.extraTimers.add(timer);
      return;
    }
    if (top === undefined) this.pendingAll = true;
    else this.pending.add(top);
    this.armTrailing(top ?? 'all');
    this.debounceTimer ??= this.clock.setTimeout(() => {
      this.debounceTimer = undefined;
      const all = this.pendingAll;
      const names = [...this.pending];
      this.pendingAll = false;
      this.pending.clear();
      if (all) this.enqueue('all');
      else for (const name of names) this.enqueue(name);
    }, DEBOUNCE_MS);
  }

  /** Scans the target TRAILING_MS after its latest event (one timer per target, pushed back while events keep coming). */
  private armTrailing(target: string): void {
    const now = this.clock.now();
    const existing = this.trailing.get(target);
    if (existing) {
      existing.lastEventMs = now;
      return;
    }
    const fire = (): void => {
      const entry = this.trailing.get(target);
      if (!entry) return;
      const quietFor = this.clock.now() - entry.lastEventMs;
      if (quietFor < TRAILING_MS) {
        entry.timer = this.clock.setTimeout(fire, TRAILING_MS - quietFor);
        return;
      }
      this.trailing.delete(target);
      this.enqueue(target);
    };
    this.trailing.set(target, { lastEventMs: now, timer: this.clock.setTimeout(fire, TRAILING_MS) });
  }

  private onWatchError(err: unknown): void {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOSPC') {
      if (this.warnedInotify) return;
      this.warnedInotify = true;
      this.logger.warn(
        { err: messageOf(err), rescanMs: this.rescanMs },
        `out of inotify watches: checkpoint changes are now found by scans every ${this.rescanMs} ms only. Raise fs.inotify.max_user_watches (sysctl -w fs.inotify.max_user_watches=1048576) for faster detection`,
      );
      return;
    }
    this.logger.warn({ err: messageOf(err) }, 'file watcher error on the checkpoint directory; periodic scans continue');
  }

  /** Queues a scan of one top-level entry or of everything; errors are logged. */
  private enqueue(target: string): void {
    if (this.closed) return;
    this.runScan(target).catch((err: unknown) => {
      this.logger.warn({ err: messageOf(err) }, 'checkpoint directory scan failed; will retry on the next scan');
    });
  }

  /**
   * Runs a scan after the ones queued before it. A request for a target that
   * is already waiting (or covered by a waiting full scan) joins that scan:
   * a burst of events costs one scan per entry, not one per event.
   */
  private runScan(target: string): Promise<void> {
    const waiting = this.waiting.get('all') ?? this.waiting.get(target);
    if (waiting) return waiting;
    const next = this.queue
      .catch(() => undefined)
      .then(() => {
        this.waiting.delete(target);
        return this.scan(target);
      });
    this.waiting.set(target, next);
    this.queue = next;
    return next;
  }

  private armRescan(): void {
    if (this.closed) return;
    this.rescanTimer = this.clock.setTimeout(() => {
      this.rescanTimer = undefined;
      void this.runScan('all')
        .catch((err: unknown) => {
          this.logger.warn({ err: messageOf(err) }, 'checkpoint directory scan failed; will retry on the next scan');
        })
        .finally(() => this.armRescan());
    }, this.rescanMs);
  }

  private async scan(target: string): Promise<void> {
    const now = this.clock.now();
    if (target === 'all') {
      let names: string[];
      try {
        names = await fs.readdir(this.dir);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
          throw new StevedoreError('CHECKPOINT_DIR_UNUSABLE', `cannot read the checkpoint directory ${this.dir}: ${messageOf(err)}. Check that the agent can read it`, { cause: err });
        }
        names = [];
      }
      const seen = new Set(names);
      for (const name of this.entries.keys()) if (!seen.has(name)) this.entries.delete(name);
      for (const name of names) await this.scanOne(name, now);
    } else {
      await this.scanOne(target, now);
    }
    this.publish();
  }

  private async scanOne(name: string, now: number): Promise<void> {
    const absPath = path.join(this.dir, name);
    const found = await scanEntry(absPath, name);
    if (!found) {
      this.entries.delete(name);
      return;
    }
    const signature = signatureOf(found);
    const previous = this.entries.get(name);
    const seenChangeMs = previous && previous.signature === signature ? previous.scanned.seenChangeMs : now;
    this.entries.set(name, { signature, scanned: { ...found, seenChangeMs } });
  }

  /** Evaluates every entry with the clock's time and tells the listeners when the result changed. */
  private publish(): void {
    const now = this.clock.now();
    const candidates: CheckpointCandidate[] = [];
    for (const { scanned } of this.entries.values()) {
      const c = evaluate(this.rule, scanned, now);
      if (c) candidates.push(c);
    }
    candidates.sort(compareCandidatesNewestFirst);
    const fingerprint = JSON.stringify(candidates);
    const changed = fingerprint !== this.lastFingerprint;
    this.lastFingerprint = fingerprint;
    this.lastCandidates = candidates;
    this.armWake(candidates, now);
    if (this.closed) return;
    for (const listener of [...this.listeners]) {
      if (!changed && listener.served) continue;
      listener.served = true;
      try {
        listener.fn(candidates);
      } catch (err) {
        this.logger.error({ err: messageOf(err) }, 'a checkpoint listener failed');
      }
    }
  }

  /** A quiescence rule completes with time alone: scan again when the earliest candidate is due. */
  private armWake(candidates: CheckpointCandidate[], now: number): void {
    this.wakeTimer?.cancel();
    this.wakeTimer = undefined;
    if (this.closed || !this.started) return;
    if (this.rule.kind !== 'hf' && this.rule.kind !== 'quiescence') return;
    const quiescenceMs = this.rule.quiescenceMs;
    let due = Infinity;
    for (const c of candidates) if (!c.complete && c.files.length > 0) due = Math.min(due, c.lastChangeMs + quiescenceMs);
    if (due === Infinity) return;
    const delay = Math.max(1, due - now);
    if (delay >= this.rescanMs) return; // the periodic scan comes first
    this.wakeTimer = this.clock.setTimeout(() => {
      this.wakeTimer = undefined;
      this.enqueue('all');
    }, delay);
  }
}

/**
 * One entry under the watched directory, or undefined when it is gone.
 * Files that vanish between listing and stat are left out (the next scan
 * sees the new state).
 */
export async function scanEntry(absPath: string, name: string): Promise<Omit<ScannedEntry, 'seenChangeMs'> | undefined> {
  let stat;
  try {
    stat = await fs.lstat(absPath);
  } catch (err) {
    if (isGone(err)) return undefined;
    throw err;
  }
  if (stat.isFile()) {
    return { name, kind: 'file', absPath, files: [{ path: name, absPath, size: stat.size, mtimeMs: stat.mtimeMs, ino: stat.ino }] };
  }
  if (!stat.isDirectory()) return { name, kind: 'other', absPath, files: [] };
  const files: LocalFile[] = [];
  await walk(absPath, '', files);
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { name, kind: 'directory', absPath, files };
}

async function walk(dirAbs: string, dirRel: string, out: LocalFile[]): Promise<void> {
  let dirents;
  try {
    dirents = await fs.readdir(dirAbs, { withFileTypes: true });
  } catch (err) {
    if (isGone(err)) return;
    throw err;
  }
  const files = dirents.filter((d) => d.isFile());
  for (let i = 0; i < files.length; i += STAT_CONCURRENCY) {
    const batch = files.slice(i, i + STAT_CONCURRENCY);
    const stats = await Promise.all(
      batch.map(async (d) => {
        const abs = path.join(dirAbs, d.name);
        try {
          const st = await fs.lstat(abs);
          return st.isFile() ? { path: dirRel === '' ? d.name : `${dirRel}/${d.name}`, absPath: abs, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino } : undefined;
        } catch (err) {
          if (isGone(err)) return undefined;
          throw err;
        }
      }),
    );
    for (const s of stats) if (s) out.push(s);
  }
  for (const d of dirents) {
    if (d.isDirectory()) await walk(path.join(dirAbs, d.name), dirRel === '' ? d.name : `${dirRel}/${d.name}`, out);
  }
}

function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function signatureOf(entry: Omit<ScannedEntry, 'seenChangeMs'>): string {
  return `${entry.kind}\n${entry.files.map((f) => `${f.path}\0${f.size}\0${f.mtimeMs}\0${f.ino}`).join('\n')}`;
}
