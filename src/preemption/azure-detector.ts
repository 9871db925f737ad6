// Preemption notices on Azure: Scheduled Events polled about every second
// (docs/cloud-metadata.md). A `Preempt` or `Terminate` event that names this
// VM becomes a notice whose id is the EventId and whose deadline is the
// event's NotBefore; the same event seen again (the document is read every
// second, and its incarnation moves when the event starts) is not a new
// notice. `acknowledge` sends the StartRequest that lets the platform go ahead
// at once: the drain calls it only after the final checkpoint is durable.
// The first call after boot can take up to two minutes, so it alone gets a
// long timeout. Whatever the endpoint answers (garbage, 500s, nothing at all),
// the poll logs it at most once a minute and goes on.
import type { Notice, PreemptionDetector } from './notice.ts';
import { metadataRequest, parseBaseUrl, positiveMs, ProblemLog } from './metadata-http.ts';
import type { DetectorOptions } from './metadata-http.ts';
import type { Clock } from '../util/clock.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';

export const AZURE_SCHEDULED_EVENTS_PATH = '/metadata/scheduledevents';
export const AZURE_API_VERSION = '2020-07-01';
export const AZURE_DEFAULT_POLL_MS = 1_000;
export const AZURE_DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/** The first call after boot can take up to 2 minutes; a little more. */
export const AZURE_DEFAULT_FIRST_CALL_TIMEOUT_MS = 130_000;
/** A Preempt event gives at least 30 s: the deadline when NotBefore is empty or unreadable. */
export const AZURE_DEFAULT_WINDOW_MS = 30_000;

/** The event types that take the VM away. */
const DRAINING_TYPES = new Set(['Preempt', 'Terminate']);
/** Failures are logged at most this often. */
const PROBLEM_LOG_INTERVAL_MS = 60_000;
const AZURE_ADVICE = 'polling on. Preemption notices cannot be seen until Scheduled Events answers: check that this node is an Azure VM and that the metadata base URL is right';

export interface AzureDetectorOptions extends DetectorOptions {
  /**
   * Timeout of the first request only, in ms (default 130 s): the first call
   * after boot can take up to 2 minutes. Later polls use requestTimeoutMs.
   */
  firstCallTimeoutMs?: number;
}

/**
 * Warnings about an endpoint that does not answer well, at most one per
 * interval (with the number left out), and one line when it answers again.
 */

interface ScheduledEvent {
  EventId: string;
  EventType: string;
  EventStatus: string;
  Resources: string[];
  NotBefore: string;
}

type Document = { incarnation: number; events: unknown[] };

const RFC_1123 = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/** ms since the epoch for an RFC 1123 date such as "Mon, 11 Apr 2022 22:26:58 GMT"; undefined for anything else. */
export function parseRfc1123(text: string): number | undefined {
  if (!RFC_1123.test(text.trim())) return undefined;
  const ms = Date.parse(text);
  return Number.isFinite(ms) ? ms : undefined;
}

/** The Scheduled Events document in a body, or why the body is not one. */
export function parseDocument(body: string): Document | string {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return `Azure Scheduled Events answered with something that is not JSON: ${JSON.stringify(body.slice(0, 80))}`;
  }
  if (typeof doc !== 'object' || doc === null) return 'Azure Scheduled Events answered with JSON that is not a Scheduled Events document';
  const { DocumentIncarnation: incarnation, Events: events } = doc as { DocumentIncarnation?: unknown; Events?: unknown };
  if (typeof incarnation !== 'number' || !Number.isInteger(incarnation) || !Array.isArray(events)) {
    return 'Azure Scheduled Events answered with JSON that is not a Scheduled Events document (no DocumentIncarnation number or no Events list)';
  }
  return { incarnation, events: events as unknown[] };
}

/** One listed event with the fields the detector reads, or undefined when it has no EventId or EventType. */
export function asEvent(value: unknown): ScheduledEvent | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const e = value as Record<string, unknown>;
  if (typeof e.EventId !== 'string' || e.EventId === '' || typeof e.EventType !== 'string') return undefined;
  const resources = Array.isArray(e.Resources) ? (e.Resources as unknown[]).filter((r): r is string => typeof r === 'string') : [];
  return {
    EventId: e.EventId,
    EventType: e.EventType,
    EventStatus: typeof e.EventStatus === 'string' ? e.EventStatus : '',
    Resources: resources,
    NotBefore: typeof e.NotBefore === 'string' ? e.NotBefore : '',
  };
}



/**
 * Polls Azure Scheduled Events. Options: `pollMs` (default 1 s) between polls;
 * `requestTimeoutMs` (default 5 s) for each poll but the first and for the
 * acknowledgement; `firstCallTimeoutMs` (default 130 s) for the first poll;
 * `vmName`: only events whose Resources name this VM count (compared without
 * regard to case); unset, every event counts.
 */
export class AzureDetector implements PreemptionDetector {
  readonly cloud = 'azure' as const;
  private readonly url: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly pollMs: number;
  private readonly requestTimeoutMs: number;
  private readonly firstCallTimeoutMs: number;
  private readonly vmName: string | undefined;
  private readonly abort = new AbortController();
  private readonly problems: ProblemLog;
  private loop: Promise<void> | undefined;
  private onNotice: ((notice: Notice) => void) | undefined;
  private lastIncarnation: number | undefined;
  /** EventIds already handled (made a notice, or were ignored and logged once). */
  private readonly seen = new Set<string>();

  constructor(opts: AzureDetectorOptions) {
    this.url = `${parseBaseUrl('Azure', opts.baseUrl)}${AZURE_SCHEDULED_EVENTS_PATH}?api-version=${AZURE_API_VERSION}`;
    this.clock = opts.clock;
    this.logger = opts.logger;
    this.pollMs = positiveMs('Azure', 'pollMs', opts.pollMs, AZURE_DEFAULT_POLL_MS);
    this.requestTimeoutMs = positiveMs('Azure', 'requestTimeoutMs', opts.requestTimeoutMs, AZURE_DEFAULT_REQUEST_TIMEOUT_MS);
    this.firstCallTimeoutMs = positiveMs('Azure', 'firstCallTimeoutMs', opts.firstCallTimeoutMs, AZURE_DEFAULT_FIRST_CALL_TIMEOUT_MS);
    this.vmName = opts.vmName === undefined || opts.vmName === '' ? undefined : opts.vmName.toLowerCase();
    this.problems = new ProblemLog(this.logger, this.clock, { advice: AZURE_ADVICE, intervalMs: PROBLEM_LOG_INTERVAL_MS });
  }

  start(onNotice: (notice: Notice) => void): void {
    if (this.onNotice || this.abort.signal.aborted) {
      this.logger.warn('Azure preemption detector: start called twice or after close; ignored');
      return;
    }
    this.onNotice = onNotice;
    this.logger.info({ url: this.url, vmName: this.vmName ?? '(any)', pollMs: this.pollMs }, 'polling Azure Scheduled Events for preemption');
    this.loop = this.run();
  }

  /** Approves the event (StartRequests) so that the platform goes ahead now. Throws PREEMPTION_ACK_FAILED on anything but a 200. */
  async acknowledge(notice: Notice): Promise<void> {
    if (notice.source !== 'azure') return;
    const body = JSON.stringify({ StartRequests: [{ EventId: notice.id }] });
    let reply;
    try {
      reply = await metadataRequest({
        method: 'POST',
        url: this.url,
        headers: { Metadata: 'true', 'Content-Type': 'application/json' },
        body,
        timeoutMs: this.requestTimeoutMs,
        clock: this.clock,
      });
    } catch (err) {
      throw new StevedoreError(
        'PREEMPTION_ACK_FAILED',
        `could not acknowledge Azure event ${notice.id}: ${messageOf(err)}. The platform goes ahead at the event's NotBefore anyway; ` +
          'if this repeats, check that Scheduled Events is reachable at the metadata base URL',
        { cause: err },
      );
    }
    if (reply.status !== 200) {
      throw new StevedoreError(
        'PREEMPTION_ACK_FAILED',
        `Azure Scheduled Events refused the acknowledgement of event ${notice.id} with HTTP ${reply.status} ${JSON.stringify(reply.body.slice(0, 200))}. ` +
          "The platform goes ahead at the event's NotBefore anyway; if this repeats, check the metadata base URL and that the event still exists",
      );
    }
    this.logger.info({ eventId: notice.id }, 'acknowledged the Azure event: the platform may go ahead');
  }

  async close(): Promise<void> {
    this.abort.abort(new Error('the Azure preemption detector was closed'));
    await this.loop;
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal;
    let timeoutMs = this.firstCallTimeoutMs;
    while (!signal.aborted) {
      const sentMs = this.clock.now();
      await this.pollOnce(timeoutMs);
      // The long timeout is for the first call only: a first call that never
      // answers must not hold up the polls after it.
      timeoutMs = this.requestTimeoutMs;
      if (signal.aborted) return;
      await this.pause(Math.max(0, this.pollMs - (this.clock.now() - sentMs)));
    }
  }

  private async pollOnce(timeoutMs: number): Promise<void> {
    let reply;
    try {
      reply = await metadataRequest({
        method: 'GET',
        url: this.url,
        headers: { Metadata: 'true' },
        timeoutMs,
        signal: this.abort.signal,
        clock: this.clock,
      });
    } catch (err) {
      if (!this.abort.signal.aborted) this.problems.report(`Azure Scheduled Events did not answer: ${messageOf(err)}`);
      return;
    }
    if (reply.status !== 200) {
      this.problems.report(`Azure Scheduled Events answered HTTP ${reply.status} ${JSON.stringify(reply.body.slice(0, 120))}`);
      return;
    }
    const doc = parseDocument(reply.body);
    if (typeof doc === 'string') {
      this.problems.report(doc);
      return;
    }
    this.problems.recovered('Azure Scheduled Events answers again', 'suppressed');
    if (doc.incarnation === this.lastIncarnation) return;
    this.lastIncarnation = doc.incarnation;
    const receivedMs = this.clock.now();
    for (const raw of doc.events) this.consider(raw, receivedMs);
  }

  private consider(raw: unknown, receivedMs: number): void {
    const event = asEvent(raw);
    if (!event) {
      this.problems.report(`Azure Scheduled Events listed an event without an EventId or EventType: ${JSON.stringify(raw).slice(0, 120)}`);
      return;
    }
    if (this.seen.has(event.EventId)) return;
    const forThisVm = this.vmName === undefined || event.Resources.some((r) => r.toLowerCase() === this.vmName);
    if (!forThisVm) {
      this.seen.add(event.EventId);
      this.logger.debug({ eventId: event.EventId, type: event.EventType, resources: event.Resources }, 'Azure event for other VMs; not ours');
      return;
    }
    this.seen.add(event.EventId);
    if (!DRAINING_TYPES.has(event.EventType)) {
      this.logger.info({ eventId: event.EventId, type: event.EventType, notBefore: event.NotBefore }, `Azure ${event.EventType} event for this VM; no drain`);
      return;
    }
    const notBefore = parseRfc1123(event.NotBefore);
    if (notBefore === undefined && event.NotBefore !== '') {
      this.logger.warn({ eventId: event.EventId, notBefore: event.NotBefore }, `Azure event NotBefore is not an RFC 1123 date; assuming ${AZURE_DEFAULT_WINDOW_MS / 1000} s`);
    }
    const notice: Notice = {
      id: event.EventId,
      source: 'azure',
      kind: event.EventType,
      receivedMs,
      deadlineMs: notBefore ?? receivedMs + AZURE_DEFAULT_WINDOW_MS,
      advisory: false,
    };
    this.logger.warn({ notice, status: event.EventStatus }, `Azure notice: ${event.EventType}`);
    try {
      this.onNotice?.(notice);
    } catch (err) {
      this.logger.error({ err: messageOf(err), notice }, 'the preemption notice handler failed');
    }
  }

  private async pause(ms: number): Promise<void> {
    try {
      await this.clock.sleep(ms, this.abort.signal);
    } catch {
      // closed
    }
  }
}
