// The progress of an attempt's long operations (the image pull, the restore,
// the input download, each checkpoint upload) as events for the coordinator.
// Callbacks come as often as bytes arrive; events go out at most once per
// interval for each phase, the newest snapshot winning, plus one final event
// with finished=true that is never throttled away.
import type { PullProgress } from '../engine/container-engine.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { AttemptProgressBody, JournalEvent } from './event-journal.ts';

export type ProgressPhase = 'pull' | 'restore' | 'input' | 'upload';

/** What one long operation has done so far. */
export interface ProgressSnapshot {
  doneBytes: number;
  /** 0 when not known yet. */
  totalBytes: number;
  /** The image, the checkpoint's name, the input's URL. */
  detail: string;
}

/** Where the events go: the event journal (only its append is used). */
export interface ProgressEventSink {
  append(event: Omit<JournalEvent, 'eventId'>): unknown;
}

export interface AttemptProgressOptions {
  jobId: string;
  attempt: number;
  sink: ProgressEventSink;
  clock: Clock;
  logger?: Logger;
  /** Least time between two events of one phase (the final event excepted). Default 1000 ms. */
  intervalMs?: number;
}

export const PROGRESS_INTERVAL_MS = 1000;

interface PhaseState {
  /** When the last event that was not final went out; -Infinity before the first. */
  lastSentMs: number;
  /** The newest snapshot not sent yet. */
  pending: ProgressSnapshot | undefined;
  /** The newest snapshot seen (sent or not). */
  latest: ProgressSnapshot | undefined;
  timer: Timer | undefined;
}

export class AttemptProgress {
  private readonly opts: AttemptProgressOptions;
  private readonly intervalMs: number;
  private readonly phases = new Map<ProgressPhase, PhaseState>();
  private closed = false;

  constructor(opts: AttemptProgressOptions) {
    this.opts = opts;
    this.intervalMs = opts.intervalMs ?? PROGRESS_INTERVAL_MS;
  }

  /**
   * The operation of `phase` moved on. Sent at once when the phase's last
   * event is at least an interval old; otherwise kept, and the newest one kept
   * is sent when the interval has passed.
   */
  update(phase: ProgressPhase, snapshot: ProgressSnapshot): void {
    if (this.closed) return;
    const state = this.stateOf(phase);
    state.latest = snapshot;
    const now = this.opts.clock.now();
    const wait = state.lastSentMs + this.intervalMs - now;
    if (wait <= 0) {
      state.timer?.cancel();
      state.timer = undefined;
      state.pending = undefined;
      this.sendUpdate(state, phase, snapshot);
      return;
    }
    state.pending = snapshot;
    state.timer ??= this.opts.clock.setTimeout(() => {
      state.timer = undefined;
      const pending = state.pending;
      state.pending = undefined;
      if (pending && !this.closed) this.sendUpdate(state, phase, pending);
    }, wait);
  }

  /**
   * The operation of `phase` ended, successfully or not: one event with
   * finished=true, always sent. Without a snapshot, the newest one seen is
   * used; when the phase has seen none, nothing is sent (nothing was shown).
   */
  finish(phase: ProgressPhase, snapshot?: ProgressSnapshot): void {
    if (this.closed) return;
    const state = this.stateOf(phase);
    state.timer?.cancel();
    state.timer = undefined;
    state.pending = undefined;
    const last = snapshot ?? state.latest;
    state.latest = undefined;
    if (!last) return;
    this.send(phase, last, true);
  }

  /** No more events: pending ones are dropped. */
  close(): void {
    this.closed = true;
    for (const state of this.phases.values()) {
      state.timer?.cancel();
      state.timer = undefined;
      state.pending = undefined;
    }
  }

  private stateOf(phase: ProgressPhase): PhaseState {
    let state = this.phases.get(phase);
    if (!state) {
      state = { lastSentMs: -Infinity, pending: undefined, latest: undefined, timer: undefined };
      this.phases.set(phase, state);
    }
    return state;
  }

  private sendUpdate(state: PhaseState, phase: ProgressPhase, snapshot: ProgressSnapshot): void {
    state.lastSentMs = this.opts.clock.now();
    this.send(phase, snapshot, false);
  }

  private send(phase: ProgressPhase, s: ProgressSnapshot, finished: boolean): void {
    const now = this.opts.clock.now();
    const body: AttemptProgressBody = {
      phase,
      doneBytes: Math.max(0, Math.round(s.doneBytes)),
      totalBytes: Math.max(0, Math.round(s.totalBytes)),
      detail: s.detail,
      updatedMs: now,
      finished,
    };
    try {
      this.opts.sink.append({ timeMs: now, jobId: this.opts.jobId, attempt: this.opts.attempt, body: { progress: body } });
    } catch (err) {
      // Progress is only informative: a journal that cannot take it must not fail the operation.
      this.opts.logger?.warn({ err: messageOf(err), phase }, 'progress event not journaled');
    }
  }
}

/** A URL without what may be secret in it (user info, the query of a pre-signed URL), for progress details. */
export function urlForDisplay(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return u.toString();
  } catch {
    return url.replace(/[?#].*$/, '');
  }
}

/**
 * Bytes done and total of an image pull across its layers, from the engine's
 * per-layer messages: "Downloading" carries a layer's current and total bytes;
 * "Download complete", "Extracting", "Pull complete" and "Already exists" mean
 * the layer's bytes are all there. Layers whose size is not known yet count
 * for nothing in either figure.
 */
export class PullProgressTotals {
  private readonly layers = new Map<string, { done: number; total: number; complete: boolean }>();

  update(p: PullProgress): { doneBytes: number; totalBytes: number } {
    if (p.id !== undefined && /^[0-9a-f]{12,}$/.test(p.id)) {
      const layer = this.layers.get(p.id) ?? { done: 0, total: 0, complete: false };
      if (p.status === 'Downloading') {
        if (p.total !== undefined && p.total > 0) layer.total = p.total;
        if (p.current !== undefined && !layer.complete) layer.done = Math.min(p.current, layer.total || p.current);
      } else if (p.status === 'Download complete' || p.status === 'Extracting' || p.status === 'Verifying Checksum' || p.status === 'Pull complete' || p.status === 'Already exists') {
        layer.complete = true;
        layer.done = layer.total;
      }
      this.layers.set(p.id, layer);
    }
    return this.totals();
  }

  totals(): { doneBytes: number; totalBytes: number } {
    let doneBytes = 0;
    let totalBytes = 0;
    for (const l of this.layers.values()) {
      doneBytes += l.done;
      totalBytes += l.total;
    }
    return { doneBytes, totalBytes };
  }
}
