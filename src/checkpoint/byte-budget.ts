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
import { StevedoreError } from '../util/errors.ts';

interface Waiter {
  bytes: number;
  grant: (release: () => void) => void;
  fail: (err: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export class ByteBudget {
  readonly limit: number;
  private used = 0;
  private readonly waiters: Waiter[] = [];

  constructor(limitBytes: number) {
    if (!Number.isSafeInteger(limitBytes) || limitBytes <= 0) {
      throw new StevedoreError('CONFIG_INVALID', `upload memory budget must be a positive whole number of bytes, got ${String(limitBytes)}; set it to at least one part size (for example 64Mi)`);
    }
    this.limit = limitBytes;
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

  private fits(bytes: number): boolean {
    return this.used + bytes <= this.limit || (this.used === 0 && bytes > this.limit);
  }

  private take(bytes: number): () => void {
    this.used += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= bytes;
      this.drain();
    };
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
