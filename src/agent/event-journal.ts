// The on-disk event journal. Every event the agent reports to its coordinator
// (state changes, exits, log chunks) is appended here and made durable before
// it is sent, and is sent again after a reconnect until the coordinator
// acknowledges it. Ids are per node, start at 1, grow by one and never go
// backwards, across restarts and compactions.
//
// Files in the journal directory:
//   events.jsonl  one event per line (JSON), in id order; only events that may
//                 still be unacknowledged are guaranteed to be there
//   ack           {"ackedEventId":N,"lastEventId":M}, replaced atomically; it
//                 keeps the last id when compaction leaves events.jsonl empty
//
// Crash safety: an append is written with one write() and fdatasync()ed before
// append() returns. A process killed mid-write leaves at most a torn last line,
// which open() drops with a warning (that event was never returned to anyone).
// A damaged line anywhere else is JOURNAL_CORRUPT: the journal does not guess.
//
// Back-pressure: appends are never refused (a state event must never be lost
// because logs piled up). `pendingBytes` tells the caller how much is waiting
// for an acknowledgement, so that it can throttle or drop log events first;
// PENDING_BYTES_SOFT_LIMIT is the suggested bound.
import type { CheckpointCommitted__Output } from '../gen/stevedore/v1/CheckpointCommitted.ts';
import type { DrainReport__Output } from '../gen/stevedore/v1/DrainReport.ts';
import type { AttemptProgress__Output } from '../gen/stevedore/v1/AttemptProgress.ts';
import fs from 'node:fs';
import path from 'node:path';
import { StevedoreError, messageOf } from '../util/errors.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';

export interface JournalEvent {
  eventId: number;
  timeMs: number;
  jobId: string;
  attempt: number;
  body: EventBody;
}

export type EventBody =
  | { stateChanged: { state: string; message: string; gpuUuids: string[]; containerId: string } }
  | { exited: { state: string; exitCode: number; error: { code: string; message: string } | null; oomKilled: boolean } }
  // cursor: the engine timestamp of the last container line in this batch, so
  // that a restarted agent resumes log capture right after what it journaled.
  | { logs: { lines: { timeMs: number; stream: string; text: string }[]; cursor?: string } }
  | { checkpointCommitted: CheckpointCommittedBody }
  | { checkpointRestored: { checkpointId: string; step: number; bytes: number; durationMs: number; skipped: string[] } }
  | { preemptionNotice: { noticeId: string; source: string; kind: string; deadlineMs: number; receivedMs: number } }
  | { drainReport: DrainReportBody }
  | { progress: AttemptProgressBody };

/** The AttemptProgress message, as journaled. */
export type AttemptProgressBody = AttemptProgress__Output;

/** The DrainReport message, as journaled. */
export type DrainReportBody = DrainReport__Output;

/** The CheckpointCommitted message, as journaled. */
export type CheckpointCommittedBody = CheckpointCommitted__Output;

export interface EventJournalOptions {
  logger?: Logger;
  /** Compact once at least this many acknowledged bytes sit in events.jsonl (and they outweigh the pending ones). Default 1 MiB. */
  compactMinBytes?: number;
}

export const EVENTS_FILE = 'events.jsonl';
export const ACK_FILE = 'ack';
/** Suggested bound for unacknowledged events: above it, callers should hold back log events (never state events). */
export const PENDING_BYTES_SOFT_LIMIT = 64 * 1024 * 1024;
const DEFAULT_COMPACT_MIN_BYTES = 1024 * 1024;

interface Stored {
  event: JournalEvent;
  bytes: number;
}

function corrupt(file: string, what: string, cause?: unknown): StevedoreError {
  return new StevedoreError(
    'JOURNAL_CORRUPT',
    `event journal ${file} is damaged: ${what}. Stop the agent and move the journal directory aside (the agent then starts a new journal; events the coordinator has not acknowledged are lost), or repair the line by hand`,
    { cause },
  );
}

function isEventShape(value: unknown): value is JournalEvent {
  if (typeof value !== 'object' || value === null) return false;
  const e = value as Record<string, unknown>;
  return (
    Number.isSafeInteger(e.eventId) && (e.eventId as number) > 0 &&
    typeof e.timeMs === 'number' &&
    typeof e.jobId === 'string' &&
    typeof e.attempt === 'number' &&
    typeof e.body === 'object' && e.body !== null
  );
}

function readAck(file: string): { ackedEventId: number; lastEventId: number } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { ackedEventId: 0, lastEventId: 0 };
    throw new StevedoreError('JOURNAL_CORRUPT', `cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? messageOf(err)}): fix its permissions`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw corrupt(file, 'it is not JSON', err);
  }
  const a = parsed as Record<string, unknown> | null;
  if (typeof a !== 'object' || a === null || !Number.isSafeInteger(a.ackedEventId) || !Number.isSafeInteger(a.lastEventId) ||
      (a.ackedEventId as number) < 0 || (a.lastEventId as number) < (a.ackedEventId as number)) {
    throw corrupt(file, `it does not hold {"ackedEventId":N,"lastEventId":M} with 0 <= N <= M`);
  }
  return { ackedEventId: a.ackedEventId as number, lastEventId: a.lastEventId as number };
}

export class EventJournal {
  readonly dir: string;
  private readonly eventsFile: string;
  private readonly ackFile: string;
  private readonly logger: Logger;
  private readonly compactMinBytes: number;
  private fd: number | undefined;
  /** Events in events.jsonl with id > ackedEventId, in id order. */
  private stored: Stored[];
  private fileBytes: number;
  private pendingBytesValue: number;
  private last: number;
  private acked: number;
  private readonly listeners = new Set<(e: JournalEvent) => void>();

  private constructor(dir: string, opts: EventJournalOptions) {
    this.dir = dir;
    this.eventsFile = path.join(dir, EVENTS_FILE);
    this.ackFile = path.join(dir, ACK_FILE);
    this.logger = opts.logger ?? silentLogger();
    this.compactMinBytes = opts.compactMinBytes ?? DEFAULT_COMPACT_MIN_BYTES;
    this.stored = [];
    this.fileBytes = 0;
    this.pendingBytesValue = 0;
    this.last = 0;
    this.acked = 0;
  }

  /** Opens (creating if needed) the journal in `dir` and recovers what is on disk. */
  static open(dir: string, opts: EventJournalOptions = {}): EventJournal {
    const journal = new EventJournal(dir, opts);
    journal.recover();
    return journal;
  }

  get lastEventId(): number {
    return this.last;
  }

  get ackedEventId(): number {
    return this.acked;
  }

  /** Bytes of events not yet acknowledged (as stored on disk). Throttle log events when this grows; see PENDING_BYTES_SOFT_LIMIT. */
  get pendingBytes(): number {
    return this.pendingBytesValue;
  }

  private recover(): void {
    try {
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new StevedoreError('STATE_DIR_UNWRITABLE', `cannot create the event journal directory ${this.dir} (${(err as NodeJS.ErrnoException).code ?? messageOf(err)}): check the permissions of the state directory or choose another with --state-dir`, { cause: err });
    }
    this.removeStaleTempFiles();
    const ack = readAck(this.ackFile);
    let data: Buffer;
    try {
      data = fs.readFileSync(this.eventsFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new StevedoreError('JOURNAL_CORRUPT', `cannot read ${this.eventsFile} (${(err as NodeJS.ErrnoException).code ?? messageOf(err)}): fix its permissions`, { cause: err });
      }
      data = Buffer.alloc(0);
    }

    const all: Stored[] = [];
    let goodBytes = 0;
    let offset = 0;
    let lineNo = 0;
    while (offset < data.length) {
      lineNo++;
      const nl = data.indexOf(0x0a, offset);
      const end = nl === -1 ? data.length : nl;
      const isLast = nl === -1 || nl === data.length - 1;
      const text = data.subarray(offset, end).toString('utf8');
      let event: unknown;
      let parseError: unknown;
      try {
        event = JSON.parse(text);
      } catch (err) {
        parseError = err;
      }
      if (nl === -1 || parseError !== undefined || !isEventShape(event)) {
        if (isLast) {
          // The process died while writing this line: it was never durable, never returned.
          this.logger.warn({ file: this.eventsFile, line: lineNo, bytes: data.length - offset }, 'dropping a torn last line of the event journal (the agent stopped while writing it)');
          break;
        }
        throw corrupt(this.eventsFile, `line ${lineNo} is not a journal event${parseError ? ` (${messageOf(parseError)})` : ''}`, parseError);
      }
      const previous = all.length > 0 ? all[all.length - 1]!.event.eventId : undefined;
      if (previous !== undefined && event.eventId <= previous) {
        throw corrupt(this.eventsFile, `line ${lineNo} has event id ${event.eventId}, not above the previous line's ${previous}`);
      }
      const bytes = end + 1 - offset;
      all.push({ event, bytes });
      goodBytes += bytes;
      offset = end + 1;
    }

    const lastInFile = all.length > 0 ? all[all.length - 1]!.event.eventId : 0;
    this.acked = ack.ackedEventId;
    this.last = Math.max(lastInFile, ack.lastEventId);
    this.stored = all.filter((s) => s.event.eventId > this.acked);
    this.pendingBytesValue = this.stored.reduce((sum, s) => sum + s.bytes, 0);
    this.fileBytes = goodBytes;

    try {
      this.fd = fs.openSync(this.eventsFile, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
      if (goodBytes < data.length) {
        fs.ftruncateSync(this.fd, goodBytes);
        fs.fdatasyncSync(this.fd);
      }
    } catch (err) {
      this.closeFd();
      throw new StevedoreError('STATE_DIR_UNWRITABLE', `cannot open the event journal ${this.eventsFile} for writing (${(err as NodeJS.ErrnoException).code ?? messageOf(err)}): check the permissions and free space of the state directory`, { cause: err });
    }
    this.maybeCompact();
  }

  /** Temporary files of an atomic replace that a crash interrupted; the real files are intact. */
  private removeStaleTempFiles(): void {
    for (const name of fs.readdirSync(this.dir)) {
      if (name.startsWith(`.${EVENTS_FILE}.tmp-`) || name.startsWith(`.${ACK_FILE}.tmp-`)) {
        fs.rmSync(path.join(this.dir, name), { force: true });
      }
    }
  }

  /** Appends an event with the next id; it is on disk (fdatasync) when this returns. Never refused for size; see pendingBytes. */
  append(event: Omit<JournalEvent, 'eventId'>): JournalEvent {
    if (this.fd === undefined) throw new StevedoreError('INTERNAL', `event journal ${this.eventsFile} is closed; events cannot be appended after close()`);
    const full: JournalEvent = { eventId: this.last + 1, timeMs: event.timeMs, jobId: event.jobId, attempt: event.attempt, body: event.body };
    const line = Buffer.from(`${JSON.stringify(full)}\n`, 'utf8');
    try {
      let written = 0;
      while (written < line.length) written += fs.writeSync(this.fd, line, written, line.length - written);
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      // Take back a partial line so that the next append does not follow garbage.
      try {
        fs.ftruncateSync(this.fd, this.fileBytes);
      } catch (truncErr) {
        this.logger.error({ err: truncErr, file: this.eventsFile }, 'cannot remove a partly written event from the journal');
      }
      const code = (err as NodeJS.ErrnoException).code;
      throw new StevedoreError(
        'STATE_DIR_UNWRITABLE',
        `cannot write to the event journal ${this.eventsFile} (${code ?? messageOf(err)})${code === 'ENOSPC' ? ': the disk is full; free space on the state directory\'s file system' : ': check the state directory\'s disk and permissions'}`,
        { cause: err },
      );
    }
    this.last = full.eventId;
    this.fileBytes += line.length;
    this.pendingBytesValue += line.length;
    this.stored.push({ event: full, bytes: line.length });
    for (const listener of this.listeners) {
      try {
        listener(full);
      } catch (err) {
        this.logger.error({ err, eventId: full.eventId }, 'event journal listener failed');
      }
    }
    return full;
  }

  /** Events not yet acknowledged, in id order. */
  pending(): JournalEvent[] {
    return this.stored.map((s) => s.event);
  }

  /**
   * Records that the coordinator holds every event up to `upToEventId`
   * (cumulative). Stale acks are ignored. An ack beyond lastEventId means
   * this journal was lost or replaced while the coordinator kept its events:
   * the id sequence then jumps past it, since the coordinator drops ids it
   * already holds.
   */
  ack(upToEventId: number): void {
    if (!Number.isSafeInteger(upToEventId) || upToEventId <= this.acked) return;
    // After close() an ack is dropped: the coordinator repeats it when the agent registers again.
    if (this.fd === undefined) return;
    if (upToEventId > this.last) {
      this.logger.warn({ ackedEventId: upToEventId, lastEventId: this.last }, 'the coordinator acknowledged events this journal never wrote (was the journal replaced?); new events continue after its ack');
    }
    const last = Math.max(this.last, upToEventId);
    try {
      writeFileAtomic(this.ackFile, `${JSON.stringify({ ackedEventId: upToEventId, lastEventId: last })}\n`, 0o600);
    } catch (err) {
      // Nothing is lost: the events stay pending here, and the coordinator's next ack tries again
      // (after a restart they are sent again and the coordinator drops what it holds).
      this.logger.error({ err, file: this.ackFile }, 'cannot record the coordinator\'s acknowledgement in the state directory (full or read-only?); the events stay pending until it can');
      return;
    }
    this.acked = upToEventId;
    this.last = last;
    let dropped = 0;
    while (dropped < this.stored.length && this.stored[dropped]!.event.eventId <= upToEventId) {
      this.pendingBytesValue -= this.stored[dropped]!.bytes;
      dropped++;
    }
    this.stored = this.stored.slice(dropped);
    this.maybeCompact();
  }

  private maybeCompact(): void {
    const ackedBytes = this.fileBytes - this.pendingBytesValue;
    if (ackedBytes < this.compactMinBytes || ackedBytes < this.pendingBytesValue) return;
    // The ack file already holds ackedEventId and lastEventId, so dropping the
    // acknowledged lines loses nothing, even if every line goes.
    const lines = this.stored.map((s) => Buffer.from(`${JSON.stringify(s.event)}\n`, 'utf8'));
    const text = Buffer.concat(lines);
    this.closeFd();
    try {
      writeFileAtomic(this.eventsFile, text, 0o600);
    } catch (err) {
      // The journal as it was stays in place (the rewrite goes to a temporary file first); compact later.
      this.logger.warn({ err, file: this.eventsFile }, 'cannot compact the event journal now (state directory full or read-only?); it stays as it is');
      return;
    } finally {
      this.fd = fs.openSync(this.eventsFile, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
    }
    this.stored = this.stored.map((s, i) => ({ event: s.event, bytes: lines[i]!.length }));
    this.fileBytes = text.length;
    this.pendingBytesValue = text.length;
    this.logger.debug({ file: this.eventsFile, droppedBytes: ackedBytes, keptBytes: this.fileBytes }, 'compacted the event journal');
  }

  /** Calls `listener` after each durable append. Returns a function that unsubscribes. */
  onAppend(listener: (e: JournalEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    fs.closeSync(fd);
  }

  /** Closes the file; safe to call twice. */
  close(): void {
    this.closeFd();
    this.listeners.clear();
  }
}
