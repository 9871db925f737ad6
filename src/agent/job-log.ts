// A job attempt's output: every line goes to a file on the host and, in
// batches, into the event journal for the coordinator. Each keeps its own
// cursor (the engine timestamp of the last line it holds), so that a restarted
// agent asks the engine for the lines after the older of the two and hands each
// line to each destination exactly once, even after kill -9.
import { closeSync, fstatSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { timestampKey } from '../engine/log-stream.ts';
import type { Clock, Timer } from '../util/clock.ts';
import type { Logger } from '../util/logger.ts';
import type { EventJournal } from './event-journal.ts';

export interface CapturedLine {
  timeMs: number;
  /** The engine's RFC 3339 timestamp with nanoseconds; empty for the agent's own lines. */
  timestamp: string;
  stream: 'stdout' | 'stderr' | 'agent';
  text: string;
}

const MAX_BATCH_LINES = 200;
const FLUSH_MS = 250;
const MAX_LINE_CHARS = 16 * 1024;
/** Past this much unacknowledged journal, lines stay on the host only until the coordinator catches up. */
const MAX_PENDING_JOURNAL_BYTES = 32 * 1024 * 1024;

export interface JobLogOptions {
  file: string;
  journal: EventJournal;
  clock: Clock;
  jobId: string;
  attempt: number;
  /** The last engine timestamp already journaled for this attempt, if any. */
  journalCursor: string | undefined;
  /** Called after each batch is journaled, with its cursor, to persist it. */
  onJournaled: (cursor: string) => void;
  /** Where a state directory that cannot take the log (full, read-only) is reported; lines are kept and tried again. */
  logger?: Logger;
}

/** Lines held while the journal cannot take them; past this, they are counted and left to the file. */
const MAX_HELD_LINES = 20_000;
/** How often a batch the journal refused is tried again. */
const RETRY_MS = 1000;

export class JobLog {
  readonly file: string;
  private fd: number;
  private batch: { timeMs: number; stream: string; text: string }[] = [];
  private batchCursor: string | undefined;
  private timer: Timer | undefined;
  private withheld = 0;
  /** The journal refused the last batch: flush from the retry timer only, until it takes one. */
  private failing = false;
  private fileFailing = false;
  private fileCursor: bigint | undefined;
  private journalCursor: bigint | undefined;
  private readonly opts: JobLogOptions;

  constructor(opts: JobLogOptions) {
    this.opts = opts;
    this.file = opts.file;
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    this.fd = openSync(this.file, 'a', 0o600);
    const last = this.lastFileTimestamp();
    this.fileCursor = last === undefined ? undefined : timestampKey(last);
    this.journalCursor = opts.journalCursor ? timestampKey(opts.journalCursor) : undefined;
  }

  /** Where capture must resume: after the older of the two cursors (undefined = from the start). */
  resumeAfter(): string | undefined {
    if (this.fileCursor === undefined || this.journalCursor === undefined) return undefined;
    const key = this.fileCursor < this.journalCursor ? this.fileCursor : this.journalCursor;
    return keyToTimestamp(key);
  }

  write(line: CapturedLine): void {
    const key = line.timestamp ? timestampKey(line.timestamp) : undefined;
    const text = line.text.length > MAX_LINE_CHARS ? `${line.text.slice(0, MAX_LINE_CHARS)} [line cut at ${MAX_LINE_CHARS} characters]` : line.text;
    if (key === undefined || this.fileCursor === undefined || key > this.fileCursor) {
      const stamp = line.timestamp || new Date(line.timeMs).toISOString();
      try {
        writeSync(this.fd, `${stamp} ${line.stream} ${text}\n`);
        if (key !== undefined) this.fileCursor = key;
        this.fileFailing = false;
      } catch (err) {
        // The host copy misses this line; the journal still gets it. Reported once per failing stretch.
        if (!this.fileFailing) this.opts.logger?.error({ err, file: this.file }, 'cannot write to the job\'s log file: free space or fix permissions of the state directory; lines still go to the coordinator');
        this.fileFailing = true;
      }
    }
    if (key !== undefined && this.journalCursor !== undefined && key <= this.journalCursor) return;
    if (key !== undefined) {
      this.journalCursor = key;
      this.batchCursor = line.timestamp;
    }
    if (this.opts.journal.pendingBytes > MAX_PENDING_JOURNAL_BYTES || this.batch.length >= MAX_HELD_LINES) {
      this.withheld++;
      return;
    }
    if (this.withheld > 0) {
      this.batch.push({ timeMs: line.timeMs, stream: 'agent', text: `[${this.withheld} lines kept only in ${this.file} while the coordinator was behind]` });
      this.withheld = 0;
    }
    this.batch.push({ timeMs: line.timeMs, stream: line.stream, text });
    if (this.batch.length >= MAX_BATCH_LINES && !this.failing) this.flush();
    else this.timer ??= this.opts.clock.setTimeout(() => this.flush(), this.failing ? RETRY_MS : FLUSH_MS);
  }

  /** The agent's own note in the job's log (pull progress, start failures). */
  note(text: string): void {
    this.write({ timeMs: this.opts.clock.now(), timestamp: '', stream: 'agent', text });
  }

  flush(): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.batch.length === 0) return;
    const lines = this.batch;
    const cursor = this.batchCursor;
    this.batch = [];
    this.batchCursor = undefined;
    const { journal, clock, jobId, attempt } = this.opts;
    try {
      journal.append({ timeMs: clock.now(), jobId, attempt, body: { logs: { lines, ...(cursor ? { cursor } : {}) } } });
    } catch (err) {
      // Keep the lines (before any that came since) and try again: nothing is lost while the state directory is full.
      this.batch = [...lines, ...this.batch];
      this.batchCursor ??= cursor;
      if (!this.failing) this.opts.logger?.error({ err }, 'job log lines could not be journaled (the state directory is not writable); keeping them and trying again every second');
      this.failing = true;
      if (this.fd >= 0) this.timer ??= clock.setTimeout(() => this.flush(), RETRY_MS);
      return;
    }
    if (this.failing) this.opts.logger?.info({ jobId, attempt }, 'job log lines journaled again');
    this.failing = false;
    if (cursor) {
      try {
        this.opts.onJournaled(cursor);
      } catch (err) {
        // Only the resume point is stale: a restart before the next save may send the lines since then again.
        this.opts.logger?.warn({ err }, 'the job log\'s cursor could not be saved');
      }
    }
  }

  close(): void {
    this.flush();
    this.timer?.cancel();
    this.timer = undefined;
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }

  private lastFileTimestamp(): string | undefined {
    const size = fstatSync(this.fd).size;
    if (size === 0) return undefined;
    const readFd = openSync(this.file, 'r');
    try {
      const length = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(length);
      readSync(readFd, buf, 0, length, size - length);
      const lines = buf.toString('utf8').split('\n');
      for (let i = lines.length - 1; i >= 0; i--) {
        const match = /^(\d{4}-\d\d-\d\dT[\d:.]+Z) (stdout|stderr) /.exec(lines[i] ?? '');
        if (match) return match[1];
      }
      return undefined;
    } finally {
      closeSync(readFd);
    }
  }
}

function keyToTimestamp(key: bigint): string {
  const seconds = key / 1_000_000_000n;
  const nanos = key % 1_000_000_000n;
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${String(nanos).padStart(9, '0')}Z`;
}
