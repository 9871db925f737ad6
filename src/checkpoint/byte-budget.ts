// The memory the agent may hold in upload buffers, shared by every job on the
// node. Each part buffer is taken from the budget before the bytes are read
// and given back once the part is sent, so that the bytes in flight never
// exceed the limit, however many jobs and files upload at once.
//
// Waiters are served in arrival order: a large request at the head of the
// queue is not overtaken by smaller ones (it would starve otherwise). A single
// request larger than the whole limit is granted alone, when nothing else is
// in use, so that an unusually large part (a file past 10,000 parts of the
// preferred size) cannot deadlock.
//
// acquireBuffer() also hands out the part buffer, reusing the ones given back:
// V8 frees a buffer's memory only when a full collection finds it dead, which
// an idle JavaScript heap rarely triggers, so a fresh 16 MiB buffer per part
// left as much memory waiting for the collector as the upload held in flight.
// The kept buffers are let go only once nothing has been in use for a while
// (keepIdleMs): a checkpoint still being written often has no part in flight
// for a moment, and buffers dropped then were allocated again at once while
// the dropped ones still waited for the collector.
import { systemClock, type Clock, type Timer } from '../util/clock.ts';
import { StevedoreError } from '../util/errors.ts';

interface Waiter {
  bytes: number;
  grant: (release: () => void) => void;
  fail: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/** How long kept buffers outlive the last bytes in use. */
export const DEFAULT_KEEP_IDLE_MS = 5000;

export class ByteBudget {
  readonly limit: number;
  private used = 0;
  private readonly waiters: Waiter[] = [];
  /** Buffers given back, by length, for the next requests of that length. */
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  private readonly clock: Clock;
  private readonly keepIdleMs: number;
  private dropTimer: Timer | undefined;

  constructor(limitBytes: number, opts: { clock?: Clock; keepIdleMs?: number } = {}) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes <= 0) {
      throw new StevedoreError('CONFIG_INVALID', `upload memory budget must be a positive whole number of bytes, got ${String(limitBytes)}; set it to at least one part size (for example 64Mi)`);
    }
    this.limit = limitBytes;
    this.clock = opts.clock ?? systemClock;
    this.keepIdleMs = opts.keepIdleMs ?? DEFAULT_KEEP_IDLE_MS;
  }

  /** Bytes currently held by granted requests. */
  get inUse(): number {
    return this.used;
  }

  /**
   * Waits until `bytes` fit in the budget, takes them and resolves with the
   * function that gives them back (calling it more than once is harmless).
   * Rejects with the signal's reason when the signal aborts first.
   */
  acquire(bytes: number, signal?: AbortSignal): Promise<() => void> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      return Promise.reject(new StevedoreError('INTERNAL', `byte budget: cannot take ${String(bytes)} bytes; a request is a whole number of bytes, 0 or more`));
    }
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    if (this.waiters.length === 0 && this.fits(bytes)) return Promise.resolve(this.take(bytes));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = { bytes, grant: resolve, fail: reject, signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => {
          const index = this.waiters.indexOf(waiter);
          if (index >= 0) this.waiters.splice(index, 1);
          reject(abortReason(signal));
          // The head may have been the one blocking smaller requests behind it.
          this.drain();
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.waiters.push(waiter);
    });
  }

  /** Bytes of buffers given back and kept for reuse (never more than the limit less the bytes in use). */
  get pooledBytes(): number {
    return this.freeBytes;
  }

  /**
   * acquire() with a buffer of `bytes` to fill (its content is whatever an
   * earlier holder left). Buffers given back are reused by later requests of
   * the same length while the budget is busy: in-use and kept bytes together
   * stay within the limit, and the kept ones are dropped once nothing has been
   * in use for keepIdleMs. The buffer must not be touched after release().
   */
  async acquireBuffer(bytes: number, signal?: AbortSignal): Promise<{ buffer: Buffer; release: () => void }> {
    const releaseBytes = await this.acquire(bytes, signal);
    const buffer = this.reuse(bytes) ?? this.allocate(bytes);
    let released = false;
    return {
      buffer,
      release: () => {
        if (released) return;
        released = true;
        this.keep(buffer);
        releaseBytes();
      },
    };
  }

  private reuse(bytes: number): Buffer | undefined {
    const list = this.free.get(bytes);
    const buffer = list?.pop();
    if (buffer === undefined) return undefined;
    if (list?.length === 0) this.free.delete(bytes);
    this.freeBytes -= bytes;
    return buffer;
  }

  private allocate(bytes: number): Buffer {
    // Kept buffers of other lengths give way first: in use and kept stay within the limit.
    for (const [length, list] of this.free) {
      if (this.used + this.freeBytes <= this.limit) break;
      this.freeBytes -= length * list.length;
      this.free.delete(length);
    }
    return Buffer.allocUnsafe(bytes);
  }

  private keep(buffer: Buffer): void {
    // `used` still counts this buffer: kept and in use after its release stay within the limit.
    if (this.used + this.freeBytes > this.limit) return;
    const list = this.free.get(buffer.length);
    if (list) list.push(buffer);
    else this.free.set(buffer.length, [buffer]);
    this.freeBytes += buffer.length;
  }

  private dropKept(): void {
    this.free.clear();
    this.freeBytes = 0;
  }

  private fits(bytes: number): boolean {
    return this.used + bytes <= this.limit || (this.used === 0 && bytes > this.limit);
  }

  private take(bytes: number): () => void {
    this.used += bytes;
    this.dropTimer?.cancel();
    this.dropTimer = undefined;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= bytes;
      if (this.used === 0 && this.waiters.length === 0 && this.freeBytes > 0) this.scheduleDrop();
      this.drain();
    };
  }

  private scheduleDrop(): void {
    this.dropTimer?.cancel();
    this.dropTimer = this.clock.setTimeout(
      () => {
        this.dropTimer = undefined;
        if (this.used === 0) this.dropKept();
      },
      this.keepIdleMs,
      { unref: true },
    );
  }

  private drain(): void {
    for (;;) {
      const head = this.waiters[0];
      if (!head || !this.fits(head.bytes)) return;
      this.waiters.shift();
      if (head.signal && head.onAbort) head.signal.removeEventListener('abort', head.onAbort);
      head.grant(this.take(head.bytes));
    }
  }
}

function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new StevedoreError('INTERNAL', 'byte budget: the wait was cancelled', { cause: reason });
}
