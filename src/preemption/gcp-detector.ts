// Preemption notices on Google Cloud: two hanging GETs on the metadata server,
// each following its value's ETag (docs/cloud-metadata.md):
// - instance/preempted: TRUE means the VM is powered off 30 s later;
// - instance/maintenance-event: TERMINATE_ON_HOST_MAINTENANCE (GPU hosts, 60 s
//   notice) drains the node; MIGRATE_ON_HOST_MAINTENANCE is only reported.
// A value is acted on when it changes, so a value read again (after a
// reconnect, a timeout_sec expiry or a 503) never makes a second notice.
// Whatever the server answers (503 during host maintenance, 500s, garbage,
// nothing at all), the watch logs it at most once a minute and tries again.
import type { Notice, PreemptionDetector } from './notice.ts';
import { metadataRequest, parseBaseUrl, positiveMs, ProblemLog } from './metadata-http.ts';
import type { DetectorOptions } from './metadata-http.ts';
import { Backoff } from '../util/backoff.ts';
import type { Clock } from '../util/clock.ts';
import { messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';

/** From preempted = TRUE to power-off. */
export const GCP_PREEMPTION_WINDOW_MS = 30_000;
/** From maintenance-event = TERMINATE_ON_HOST_MAINTENANCE to the host going down (GPU hosts). */
export const GCP_MAINTENANCE_WINDOW_MS = 60_000;
/** Default timeout_sec of one hanging GET. */
export const GCP_DEFAULT_WAIT_MS = 60_000;
/** Default time allowed past timeout_sec for the answer to arrive. */
export const GCP_DEFAULT_REQUEST_MARGIN_MS = 5_000;

const PREEMPTED = 'instance/preempted';
const MAINTENANCE = 'instance/maintenance-event';
/** Failures of one watch are logged at most this often. */
const PROBLEM_LOG_INTERVAL_MS = 60_000;
const GCP_ADVICE = 'retrying. Preemption notices cannot be seen until the metadata server answers: check that this node is a Google Cloud VM and that the metadata base URL is right';
/** An answer with an unchanged ETag sooner than this means the server did not wait: pause before asking again. */
const TOO_QUICK_MS = 1_000;

/**
 * Warnings about a metadata service that does not answer well, at most one per
 * interval (with the number left out), and one line when it answers again.
 */



type Reading = { kind: 'value'; value: string; etag: string | undefined } | { kind: 'problem'; problem: string; unavailable: boolean };

/**
 * Watches the GCP metadata server for preemption and host maintenance.
 * Options: `pollMs` is how long one hanging GET waits for a change
 * (timeout_sec, rounded up to whole seconds; default 60 s);
 * `requestTimeoutMs` is how long past that the answer may take before the
 * request is given up (default 5 s). `vmName` is not used.
 */
export class GcpDetector implements PreemptionDetector {
  readonly cloud = 'gcp' as const;
  private readonly baseUrl: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly waitSec: number;
  private readonly requestTimeoutMs: number;
  private readonly abort = new AbortController();
  private watches: Promise<void>[] = [];
  private onNotice: ((notice: Notice) => void) | undefined;
  private preempted = false;
  private maintenance: string | undefined;

  constructor(opts: DetectorOptions) {
    this.baseUrl = parseBaseUrl('GCP', opts.baseUrl);
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.waitSec = Math.max(1, Math.ceil(positiveMs('GCP', 'pollMs', opts.pollMs, GCP_DEFAULT_WAIT_MS) / 1000));
    this.requestTimeoutMs = positiveMs('GCP', 'requestTimeoutMs', opts.requestTimeoutMs, GCP_DEFAULT_REQUEST_MARGIN_MS);
  }

  start(onNotice: (notice: Notice) => void): void {
    if (this.onNotice || this.abort.signal.aborted) {
      this.logger.warn('GCP preemption detector: start called twice or after close; ignored');
      return;
    }
    this.onNotice = onNotice;
    this.logger.info({ baseUrl: this.baseUrl, waitSec: this.waitSec }, 'watching the GCP metadata server for preemption and host maintenance');
    this.watches = [
      this.watch(PREEMPTED, (value, etag) => this.onPreempted(value, etag)),
      this.watch(MAINTENANCE, (value, etag) => this.onMaintenance(value, etag)),
    ];
  }

  /** Google Cloud has no acknowledgement step. */
  async acknowledge(_notice: Notice): Promise<void> {}

  async close(): Promise<void> {
    this.abort.abort(new Error('the GCP preemption detector was closed'));
    await Promise.allSettled(this.watches);
  }

  /** False when the value is not one this path can have (garbage): the ETag is then not followed. */
  private onPreempted(value: string, etag: string | undefined): boolean {
    if (value === 'FALSE') {
      this.preempted = false;
      return true;
    }
    if (value !== 'TRUE') return false;
    if (this.preempted) return true;
    this.preempted = true;
    const now = this.clock.now();
    this.emit({
      id: `gcp-preempted-${etag ?? now}`,
      source: 'gcp',
      kind: 'preempted',
      receivedMs: now,
      deadlineMs: now + GCP_PREEMPTION_WINDOW_MS,
      advisory: false,
    });
    return true;
  }

  private onMaintenance(value: string, etag: string | undefined): boolean {
    if (!/^[A-Z][A-Z_]*$/.test(value)) return false;
    if (value === 'NONE') {
      this.maintenance = undefined;
      return true;
    }
    if (value === this.maintenance) return true;
    this.maintenance = value;
    const now = this.clock.now();
    if (value !== 'TERMINATE_ON_HOST_MAINTENANCE' && value !== 'MIGRATE_ON_HOST_MAINTENANCE') {
      this.logger.warn({ value }, 'GCP metadata server reports a maintenance event this agent does not know; no drain');
      return true;
    }
    this.emit({
      id: `gcp-maintenance-${value}-${etag ?? now}`,
      source: 'gcp',
      kind: value,
      receivedMs: now,
      deadlineMs: now + GCP_MAINTENANCE_WINDOW_MS,
      // A live migration keeps the VM running: worth reporting, not a drain.
      advisory: value === 'MIGRATE_ON_HOST_MAINTENANCE',
    });
    return true;
  }

  private emit(notice: Notice): void {
    this.logger.warn({ notice }, `GCP notice: ${notice.kind}${notice.advisory ? ' (advisory)' : ''}`);
    try {
      this.onNotice?.(notice);
    } catch (err) {
      this.logger.error({ err: messageOf(err), notice }, 'the preemption notice handler failed');
    }
  }

  /** One hanging GET after another on `path`, until close. */
  private async watch(path: string, apply: (value: string, etag: string | undefined) => boolean): Promise<void> {
    const signal = this.abort.signal;
    const problems = new ProblemLog(this.logger, this.clock, { advice: GCP_ADVICE, fields: { watch: path }, intervalMs: PROBLEM_LOG_INTERVAL_MS });
    const backoff = new Backoff({ initialMs: 200, maxMs: 5_000 });
    // Any ETag but the current one answers at once: the first request reads the value.
    let etag: string | undefined = '0';
    while (!signal.aborted) {
      const sentMs = this.clock.now();
      const reading = await this.read(path, etag);
      if (signal.aborted) return;
      if (reading.kind === 'problem') {
        problems.report(reading.problem);
        await this.pause(backoff.next() + (reading.unavailable ? 100 : 250));
        continue;
      }
      if (!apply(reading.value, reading.etag)) {
        problems.report(`GCP metadata server answered ${path} with ${JSON.stringify(reading.value.slice(0, 80))}, which is not a value it can have`);
        await this.pause(backoff.next() + 250);
        continue;
      }
      problems.recovered(`the GCP metadata server answers ${path} again`, 'suppressed');
      backoff.reset();
      const unchanged = reading.etag !== undefined && reading.etag === etag;
      etag = reading.etag;
      if (unchanged && this.clock.now() - sentMs < TOO_QUICK_MS) await this.pause(TOO_QUICK_MS);
    }
  }

  private async read(path: string, etag: string | undefined): Promise<Reading> {
    const query = new URLSearchParams({ wait_for_change: 'true' });
    if (etag !== undefined) query.set('last_etag', etag);
    query.set('timeout_sec', String(this.waitSec));
    let reply;
    try {
      reply = await metadataRequest({
        method: 'GET',
        url: `${this.baseUrl}/computeMetadata/v1/${path}?${query.toString()}`,
        headers: { 'Metadata-Flavor': 'Google' },
        timeoutMs: this.waitSec * 1000 + this.requestTimeoutMs,
        signal: this.abort.signal,
        clock: this.clock,
      });
    } catch (err) {
      return { kind: 'problem', problem: `GCP metadata server did not answer ${path}: ${messageOf(err)}`, unavailable: false };
    }
    if (reply.status === 503) {
      return { kind: 'problem', problem: `GCP metadata server is unavailable for ${path} (503, as during host maintenance)`, unavailable: true };
    }
    if (reply.status !== 200) {
      return { kind: 'problem', problem: `GCP metadata server answered ${path} with HTTP ${reply.status}`, unavailable: false };
    }
    return { kind: 'value', value: reply.body.trim(), etag: reply.headers.etag || undefined };
  }

  private async pause(ms: number): Promise<void> {
    try {
      await this.clock.sleep(ms, this.abort.signal);
    } catch {
      // closed
    }
  }
}
