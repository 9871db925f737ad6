// The clock is injected wherever time matters (leases, heartbeats, backoff,
// grace periods) so that tests can drive it.

export interface Clock {
  now(): number;
  /** `unref`: the timer does not keep the process alive (a cleanup that may as well not happen at exit). */
  setTimeout(fn: () => void, ms: number, opts?: { unref?: boolean }): Timer;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export interface Timer {
  cancel(): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms, opts) {
    const handle = setTimeout(fn, ms);
    if (opts?.unref === true) handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
  sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason as Error);
        return;
      }
      const onAbort = (): void => {
        clearTimeout(handle);
        reject(signal?.reason as Error);
      };
      const handle = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};
