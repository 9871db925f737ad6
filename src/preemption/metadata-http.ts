// One small HTTP client for the clouds' instance metadata services: a single
// request with a hard timeout, never a redirect, a bounded body. The detectors
// decide what a status means; this module only reports what came back or why
// nothing did.
import http from 'node:http';
import https from 'node:https';
import type { Clock } from '../util/clock.ts';
import { systemClock } from '../util/clock.ts';
import type { Logger } from '../util/logger.ts';
import { StevedoreError } from '../util/errors.ts';

/** What every cloud detector is built from (AwsDetector, GcpDetector, AzureDetector). */
export interface DetectorOptions {
  /** The metadata service, such as http://169.254.169.254 (tests: a loopback fake). No trailing path. */
  baseUrl: string;
  clock: Clock;
  logger: Logger;
  /** How often to poll, in ms; each detector has its own default. */
  pollMs?: number;
  /** One request's timeout, in ms; each detector has its own default. */
  requestTimeoutMs?: number;
  /** This VM's name, where the cloud names resources (Azure Scheduled Events). */
  vmName?: string;
}

export type MetadataMethod = 'GET' | 'PUT' | 'POST';

export interface MetadataRequestOptions {
  method: MetadataMethod;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** The whole exchange (connect, headers, body) must finish within this. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** For the timeout; default the system clock. */
  clock?: Clock;
}

export interface MetadataResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: string;
}

/** Bodies larger than this are refused: no metadata answer is anywhere near it. */
export const MAX_METADATA_BODY_BYTES = 1024 * 1024;

/**
 * One request to a metadata service. Resolves with any HTTP status (a 3xx is
 * returned as it is, never followed); rejects with an Error saying what
 * happened on a network error, a timeout, an abort, or a body over 1 MiB.
 */
export async function metadataRequest(opts: MetadataRequestOptions): Promise<MetadataResponse> {
  const clock = opts.clock ?? systemClock;
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch (err) {
    throw new Error(`metadata URL ${JSON.stringify(opts.url)} is not a valid URL`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new Error(`metadata URL ${opts.url} must be http:// or https://`);
  }
  const what = `${opts.method} ${url.href}`;
  if (opts.signal?.aborted) throw new Error(`${what} aborted before it started`, { cause: opts.signal.reason });

  return new Promise<MetadataResponse>((resolve, reject) => {
    let settled = false;
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined) headers['content-length'] = String(Buffer.byteLength(opts.body));
    const request = (url.protocol === 'https:' ? https : http).request(url, {
      method: opts.method,
      headers,
      // A fresh connection per request: a hung socket must not be reused.
      agent: false,
    });

    const finish = (err: Error | undefined, response?: MetadataResponse): void => {
      if (settled) return;
      settled = true;
      timer.cancel();
      opts.signal?.removeEventListener('abort', onAbort);
      if (err) {
        request.destroy();
        reject(err);
      } else {
        resolve(response!);
      }
    };
    const onAbort = (): void => finish(new Error(`${what} aborted`, { cause: opts.signal?.reason }));
    const timer = clock.setTimeout(() => finish(new Error(`${what} timed out after ${opts.timeoutMs} ms`)), opts.timeoutMs);
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    request.on('error', (err) => finish(new Error(`${what} failed: ${err.message}`, { cause: err })));
    request.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_METADATA_BODY_BYTES) {
          finish(new Error(`${what} answered with a body over ${MAX_METADATA_BODY_BYTES} bytes; not a metadata service answer`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('error', (err) => finish(new Error(`${what} failed while reading the answer: ${err.message}`, { cause: err })));
      res.on('close', () => {
        if (!res.complete) finish(new Error(`${what}: the connection closed before the answer was complete`));
      });
      res.on('end', () => {
        const out: Record<string, string> = {};
        for (const [name, value] of Object.entries(res.headers)) {
          if (value === undefined) continue;
          out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
        }
        finish(undefined, { status: res.statusCode ?? 0, headers: out, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    request.end(opts.body);
  });
}

/**
 * A failing metadata check, logged at most once a minute (the rest counted),
 * and once more when it answers again: a broken metadata service must not
 * flood the log, nor go unnoticed.
 */
export class ProblemLog {
  private lastWarnMs = -Infinity;
  private suppressed = 0;
  private warnedSinceRecovery = false;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly fields: Record<string, unknown>;
  private readonly intervalMs: number;
  private readonly advice: string;

  /** `advice` follows every problem in the log: what it means and what to check. */
  constructor(logger: Logger, clock: Clock, opts: { advice?: string; fields?: Record<string, unknown>; intervalMs?: number } = {}) {
    this.logger = logger;
    this.clock = clock;
    this.advice = opts.advice ?? '';
    this.fields = opts.fields ?? {};
    this.intervalMs = opts.intervalMs ?? 60_000;
  }

  report(problem: string, suppressedKey = 'suppressed'): void {
    const message = this.advice ? `${problem}; ${this.advice}` : problem;
    const now = this.clock.now();
    if (now - this.lastWarnMs < this.intervalMs) {
      this.suppressed++;
      return;
    }
    this.logger.warn({ ...this.fields, [suppressedKey]: this.suppressed }, message);
    this.lastWarnMs = now;
    this.suppressed = 0;
    this.warnedSinceRecovery = true;
  }

  recovered(message: string, suppressedKey?: string): void {
    if (!this.warnedSinceRecovery) return;
    this.warnedSinceRecovery = false;
    this.logger.info({ ...this.fields, ...(suppressedKey ? { [suppressedKey]: this.suppressed } : {}) }, message);
  }
}

/** A metadata base URL from the configuration: http(s), without a trailing slash. */
export function parseBaseUrl(cloud: string, baseUrl: string): string {
  let url: URL;
  try {
    url = new URL(baseUrl);
  } catch (err) {
    throw new StevedoreError('CONFIG_INVALID', `${cloud} metadata base URL ${JSON.stringify(baseUrl)} is not a URL: give one such as http://169.254.169.254`, { cause: err });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new StevedoreError('CONFIG_INVALID', `${cloud} metadata base URL ${baseUrl} must start with http:// or https://, such as http://169.254.169.254`);
  }
  return url.href.replace(/\/+$/, '');
}

/** A detector option in milliseconds: positive, or the default when unset. */
export function positiveMs(cloud: string, name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw new StevedoreError('CONFIG_INVALID', `${cloud} detector option ${name} must be a positive number of milliseconds, not ${value}`);
  }
  return value;
}
