// The live view of a job's long operations (image pull, restore, input
// download, checkpoint upload) for `status JOB --watch` and `submit --wait`.
// Three forms of one sequence of job snapshots:
// - tty: one line per operation, redrawn in place (\r and clear line), ended
//   with a newline when the operation finishes or another one starts;
// - plain (not a terminal, or TERM=dumb): whole lines, at most one per
//   operation every few seconds, plus one when it finishes; no escape codes;
// - json: one JSON object per line for each change of state or progress.
// The renderer only turns snapshots into text: the caller polls and writes.
import type { JobInfo } from '../client/control-client.ts';

export type OutputMode = 'tty' | 'plain' | 'json';

export type ProgressInfo = NonNullable<JobInfo['attempts'][number]['progress']>;

/** json with --json; tty on a terminal that understands escape codes (TERM is not dumb); plain otherwise. */
export function outputMode(opts: { json: boolean; isTTY: boolean; env: NodeJS.ProcessEnv }): OutputMode {
  if (opts.json) return 'json';
  if (!opts.isTTY || opts.env.TERM === 'dumb') return 'plain';
  return 'tty';
}

/** Colour only on a terminal, and never with NO_COLOR set (https://no-color.org) or TERM=dumb. */
export function useColor(opts: { isTTY: boolean; env: NodeJS.ProcessEnv }): boolean {
  return opts.isTTY && opts.env.TERM !== 'dumb' && (opts.env.NO_COLOR === undefined || opts.env.NO_COLOR === '');
}

const VERBS: Record<string, [string, string]> = {
  pull: ['pulling', 'pulled'],
  restore: ['restoring', 'restored'],
  input: ['downloading', 'downloaded'],
  upload: ['uploading', 'uploaded'],
};

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

function unitFor(bytes: number): number {
  let i = 0;
  while (bytes >= 1024 ** (i + 1) && i < UNITS.length - 1) i++;
  return i;
}

function inUnit(bytes: number, unit: number): string {
  const v = bytes / 1024 ** unit;
  return unit === 0 || v === 0 || v >= 10 ? String(Math.floor(v)) : v.toFixed(1);
}

/** A size in its own unit: 512 B, 3.5 MiB, 180 MiB. */
export function formatSize(bytes: number): string {
  const unit = unitFor(bytes);
  return `${inUnit(bytes, unit)} ${UNITS[unit]}`;
}

/** Done and total in the total's unit: "180/290 MiB". */
export function formatDoneOfTotal(done: number, total: number): string {
  const unit = unitFor(total);
  return `${inUnit(done, unit)}/${inUnit(total, unit)} ${UNITS[unit]}`;
}

export const BAR_WIDTH = 12;

const GREEN = '\x1b[32m';
const RESET = '\x1b[0m';
/** Back to the start of the line and clear it. */
export const CLEAR_LINE = '\r\x1b[2K';

/** Whole percent done, floored (100 only when done); undefined when the total is not known. */
export function percentOf(p: Pick<ProgressInfo, 'doneBytes' | 'totalBytes'>): number | undefined {
  if (p.totalBytes <= 0) return undefined;
  return Math.min(100, Math.floor((p.doneBytes * 100) / p.totalBytes));
}

/**
 * One operation as a line: "pulling trainer:1  [#######.....]  62%  180/290 MiB  12 MiB/s".
 * A finished one says what it did ("pulled ..."), or "stopped" when it ended short of its total.
 */
export function formatProgressLine(p: ProgressInfo, opts: { rateBytesPerSec?: number | undefined; color?: boolean } = {}): string {
  const [doing, did] = VERBS[p.phase] ?? [p.phase, p.phase];
  const complete = p.finished && (p.totalBytes === 0 || p.doneBytes >= p.totalBytes);
  const parts = [`${complete ? did : doing} ${p.detail || '-'}`];
  const percent = percentOf(p);
  if (percent !== undefined) {
    const filled = Math.min(BAR_WIDTH, Math.floor((p.doneBytes * BAR_WIDTH) / p.totalBytes));
    const hashes = '#'.repeat(filled);
    parts.push(`[${opts.color ? `${GREEN}${hashes}${RESET}` : hashes}${'.'.repeat(BAR_WIDTH - filled)}]`);
    parts.push(`${String(percent).padStart(3)}%`);
    parts.push(formatDoneOfTotal(p.doneBytes, p.totalBytes));
  } else {
    parts.push(formatSize(p.doneBytes));
  }
  if (p.finished) {
    if (!complete) parts.push('stopped');
  } else if (opts.rateBytesPerSec !== undefined && opts.rateBytesPerSec > 0) {
    parts.push(`${formatSize(opts.rateBytesPerSec)}/s`);
  }
  return parts.join('  ');
}

/** A short form for tables: "pull 62%", "input 3.5 MiB"; "-" when nothing runs. */
export function formatProgressShort(p: ProgressInfo | null | undefined): string {
  if (!p || p.finished) return '-';
  const percent = percentOf(p);
  return `${p.phase} ${percent !== undefined ? `${percent}%` : formatSize(p.doneBytes)}`;
}

/** The job's current attempt: the last one. */
function currentAttempt(job: JobInfo): JobInfo['attempts'][number] | undefined {
  return job.attempts[job.attempts.length - 1];
}

function keyOf(attempt: number, p: ProgressInfo): string {
  return `${attempt}:${p.phase}:${p.detail}`;
}

export interface WatchRendererOptions {
  mode: OutputMode;
  color?: boolean;
  /** plain: least time between two lines of one operation (its final line excepted). Default 5000 ms. */
  plainIntervalMs?: number;
}

export const PLAIN_INTERVAL_MS = 5000;

/**
 * Turns successive snapshots of one job into the text to write. Each call
 * returns what to append to the output (possibly ""), so that a test can feed
 * a sequence and compare the exact result.
 */
export class WatchRenderer {
  private readonly mode: OutputMode;
  private readonly color: boolean;
  private readonly plainIntervalMs: number;
  /** The operation shown last, and what was known of it then. */
  private shownKey: string | undefined;
  private shown: ProgressInfo | undefined;
  private rate: number | undefined;
  /** tty: a line without its newline is on screen. */
  private lineOpen = false;
  /** plain: when the shown operation's last line was written (by the caller's clock). */
  private lastLineMs = -Infinity;
  private finishedKeys = new Set<string>();
  /** json: the last object written, to write only changes. */
  private lastJson: string | undefined;

  constructor(opts: WatchRendererOptions) {
    this.mode = opts.mode;
    this.color = opts.color ?? false;
    this.plainIntervalMs = opts.plainIntervalMs ?? PLAIN_INTERVAL_MS;
  }

  /** Output for one snapshot of the job, taken at nowMs. */
  frame(job: JobInfo, nowMs: number): string {
    const attempt = currentAttempt(job);
    const p = attempt?.progress ?? null;
    if (this.mode === 'json') return this.jsonFrame(job, attempt, p, nowMs);
    if (!attempt || !p) return '';
    const key = keyOf(attempt.attempt, p);
    if (this.finishedKeys.has(key)) return '';
    let out = '';
    if (key !== this.shownKey) {
      // Another operation: the previous one's line stays as it was last drawn.
      if (this.lineOpen) out += '\n';
      this.lineOpen = false;
      this.shownKey = key;
      this.shown = undefined;
      this.rate = undefined;
      this.lastLineMs = -Infinity;
    }
    const previous = this.shown;
    if (previous && p.updatedMs > previous.updatedMs && p.doneBytes >= previous.doneBytes) {
      this.rate = ((p.doneBytes - previous.doneBytes) * 1000) / (p.updatedMs - previous.updatedMs);
    }
    const changed = !previous || previous.updatedMs !== p.updatedMs || previous.finished !== p.finished || previous.doneBytes !== p.doneBytes;
    this.shown = p;
    if (p.finished) this.finishedKeys.add(key);
    if (this.mode === 'tty') {
      if (!changed) return out;
      out += `${CLEAR_LINE}${formatProgressLine(p, { rateBytesPerSec: this.rate, color: this.color })}`;
      if (p.finished) {
        out += '\n';
        this.lineOpen = false;
      } else {
        this.lineOpen = true;
      }
      return out;
    }
    if (!changed) return out;
    if (!p.finished && nowMs - this.lastLineMs < this.plainIntervalMs) return out;
    this.lastLineMs = nowMs;
    return `${out}${formatProgressLine(p, { rateBytesPerSec: this.rate })}\n`;
  }

  /** Output once the job ended (or the watch stops): the open line is ended, then the final state (not in json). */
  end(job: JobInfo, nowMs: number): string {
    if (this.mode === 'json') return this.frame(job, nowMs);
    return `${this.frame(job, nowMs)}${this.closeLine()}${finalLine(job)}\n`;
  }

  /** Ends a line left open (tty): "\n" or "". */
  closeLine(): string {
    if (!this.lineOpen) return '';
    this.lineOpen = false;
    return '\n';
  }

  private jsonFrame(job: JobInfo, attempt: JobInfo['attempts'][number] | undefined, p: ProgressInfo | null, nowMs: number): string {
    const body = {
      jobId: job.jobId,
      state: job.state,
      message: job.message,
      attempt: attempt?.attempt ?? 0,
      attemptState: attempt ? attempt.state.replace('ATTEMPT_STATE_', '').toLowerCase() : '',
      nodeId: attempt?.nodeId ?? '',
      progress: p,
    };
    const text = JSON.stringify(body);
    if (text === this.lastJson) return '';
    this.lastJson = text;
    return `${JSON.stringify({ timeMs: nowMs, ...body })}\n`;
  }
}

/** "demo-1a2b3c succeeded: exit code 0". */
export function finalLine(job: JobInfo): string {
  return `${job.jobId} ${job.state}${job.message ? `: ${job.message}` : ''}`;
}
