// A job attempt's output: every line goes to a file on the host first, then,
// in batches, into the event journal for the coordinator. The file is the
// record of where capture stopped, so a restarted agent resumes after the
// last line it holds, without gaps or repeats.
import { closeSync, mkdirSync, openSync, readSync, fstatSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Clock, Timer } from '../util/clock.ts';
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

export class JobLog {
  readonly file: string;
  private fd: number;
  private batch: { timeMs: number; stream: string; text: string }[] = [];
  private timer: Timer | undefined;
  private withheld = 0;
  private readonly journal: EventJournal;
  private readonly clock: Clock;
  private readonly jobId: string;
  private readonly attempt: number;

  constructor(opts: { file: string; journal: EventJournal; clock: Clock; jobId: string; attempt: number }) {
    this.file = opts.file;
    this.journal = opts.journal;
    this.clock = opts.clock;
    this.jobId = opts.jobId;
    this.attempt = opts.attempt;
    mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    this.fd = openSync(this.file, 'a', 0o600);
  }

  /** The engine timestamp of the last container line already captured, if any. */
  lastTimestamp(): string | undefined {
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

  write(line: CapturedLine): void {
    const text = line.text.length > MAX_LINE_CHARS ? `${line.text.slice(0, MAX_LINE_CHARS)} [line cut at ${MAX_LINE_CHARS} characters]` : line.text;
    const stamp = line.timestamp || new Date(line.timeMs).toISOString();
    writeSync(this.fd, `${stamp} ${line.stream} ${text}\n`);
    if (this.journal.pendingBytes > MAX_PENDING_JOURNAL_BYTES) {
      this.withheld++;
      return;
    }
    if (this.withheld > 0) {
      this.batch.push({ timeMs: line.timeMs, stream: 'agent', text: `[${this.withheld} lines kept only in ${this.file} while the coordinator was behind]` });
      this.withheld = 0;
    }
    this.batch.push({ timeMs: line.timeMs, stream: line.stream, text });
    if (this.batch.length >= MAX_BATCH_LINES) this.flush();
    else this.timer ??= this.clock.setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Agent's own note in the job's log (pull progress, start failures). */
  note(text: string): void {
    this.write({ timeMs: this.clock.now(), timestamp: '', stream: 'agent', text });
  }

  flush(): void {
    this.timer?.cancel();
    this.timer = undefined;
    if (this.batch.length === 0) return;
    const lines = this.batch;
    this.batch = [];
    this.journal.append({ timeMs: this.clock.now(), jobId: this.jobId, attempt: this.attempt, body: { logs: { lines } } });
  }

  close(): void {
    this.flush();
    if (this.fd >= 0) {
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}
