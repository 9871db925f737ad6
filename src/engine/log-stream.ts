// Turns the Docker log stream (multiplexed stdout/stderr frames, each holding
// one log message prefixed by its RFC 3339 timestamp) into whole lines.
//
// Frame: 1 byte stream (1 stdout, 2 stderr), 3 zero bytes, 4 bytes big-endian
// payload size, payload. Frames may be cut anywhere by the transport. A message
// without a trailing newline is a partial line (a line longer than the engine's
// buffer, or the container's last output); it is joined with the following
// messages of the same stream until a newline, and flushed at the end.
import type { LogLine } from './container-engine.ts';

const HEADER_BYTES = 8;
const NEWLINE = 0x0a;
const SPACE = 0x20;

interface Pending {
  timestamp: string;
  parts: Buffer[];
}

export class LogLineSplitter {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly pending: Record<LogLine['stream'], Pending | undefined> = { stdout: undefined, stderr: undefined };
  private readonly afterKey: bigint | undefined;
  private readonly emit: (line: LogLine) => void;

  /** `since`: a timestamp; lines at or before it are dropped. */
  constructor(emit: (line: LogLine) => void, since?: string) {
    this.emit = emit;
    this.afterKey = since === undefined ? undefined : timestampKey(since);
  }

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    while (this.buffer.length >= HEADER_BYTES) {
      const size = this.buffer.readUInt32BE(4);
      if (this.buffer.length < HEADER_BYTES + size) break;
      const kind = this.buffer[0];
      const payload = this.buffer.subarray(HEADER_BYTES, HEADER_BYTES + size);
      this.buffer = this.buffer.subarray(HEADER_BYTES + size);
      if (kind === 1) this.message('stdout', payload);
      else if (kind === 2) this.message('stderr', payload);
    }
  }

  /** Delivers partial lines still held: call when the stream has ended. */
  flush(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const pending = this.pending[stream];
      this.pending[stream] = undefined;
      if (pending) this.deliver(stream, pending.timestamp, Buffer.concat(pending.parts));
    }
  }

  private message(stream: LogLine['stream'], payload: Buffer): void {
    const space = payload.indexOf(SPACE);
    if (space <= 0) return;
    const timestamp = payload.subarray(0, space).toString('latin1');
    let text = payload.subarray(space + 1);
    for (;;) {
      const newline = text.indexOf(NEWLINE);
      if (newline < 0) break;
      const pending = this.pending[stream];
      this.pending[stream] = undefined;
      const piece = text.subarray(0, newline);
      this.deliver(stream, pending?.timestamp ?? timestamp, pending ? Buffer.concat([...pending.parts, piece]) : piece);
      text = text.subarray(newline + 1);
    }
    if (text.length > 0) {
      const pending = this.pending[stream];
      if (pending) pending.parts.push(Buffer.from(text));
      else this.pending[stream] = { timestamp, parts: [Buffer.from(text)] };
    }
  }

  private deliver(stream: LogLine['stream'], timestamp: string, text: Buffer): void {
    if (this.afterKey !== undefined && timestampKey(timestamp) <= this.afterKey) return;
    this.emit({ timeMs: timestampMs(timestamp), timestamp, stream, text: text.toString('utf8') });
  }
}

const TIMESTAMP_RE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/;

/** Nanoseconds since the epoch of an RFC 3339 timestamp with up to nine fractional digits. */
export function timestampKey(timestamp: string): bigint {
  const match = TIMESTAMP_RE.exec(timestamp);
  if (!match) throw new RangeError(`not an RFC 3339 timestamp: ${JSON.stringify(timestamp)}`);
  const seconds = Date.parse(`${match[1]}${match[3]}`) / 1000;
  return BigInt(seconds) * 1_000_000_000n + BigInt((match[2] ?? '').padEnd(9, '0'));
}

export function timestampMs(timestamp: string): number {
  return Number(timestampKey(timestamp) / 1_000_000n);
}

/** The engine's `since` parameter for a timestamp: seconds.nanoseconds since the epoch. */
export function sinceParameter(timestamp: string): string {
  const key = timestampKey(timestamp);
  return `${key / 1_000_000_000n}.${String(key % 1_000_000_000n).padStart(9, '0')}`;
}
