// Exponential backoff with full jitter, and the list of gRPC status codes
// worth retrying. Everything else is a bug or a misconfiguration that a retry
// would only hide.
import { status } from '@grpc/grpc-js';

export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  multiplier?: number;
}

export class Backoff {
  private attempt = 0;
  private readonly options: BackoffOptions;
  private readonly multiplier: number;
  private readonly random: () => number;

  constructor(options: BackoffOptions, random: () => number = Math.random) {
    this.options = options;
    this.multiplier = options.multiplier ?? 2;
    this.random = random;
  }

  /** The next delay: uniformly random in [0, min(max, initial * multiplier^n)]. */
  next(): number {
    const cap = Math.min(this.options.maxMs, this.options.initialMs * this.multiplier ** this.attempt);
    this.attempt++;
    return Math.round(this.random() * cap);
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

export const RETRYABLE_CODES: ReadonlySet<status> = new Set([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
  status.ABORTED,
]);

export function isRetryable(code: number | undefined): boolean {
  return code !== undefined && RETRYABLE_CODES.has(code);
}
