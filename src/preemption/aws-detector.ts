// Spot interruption notices from the EC2 instance metadata service (IMDSv2).
// Each poll asks three things at once: spot/instance-action (the two-minute
// notice), events/recommendations/rebalance (an early hint) and the Auto
// Scaling target lifecycle state. A notice seen again is the same notice: the
// metadata service moves the notice's time on every answer, so a notice is
// known by its action, never by its time. Nothing the service answers, however
// broken, throws out of here or becomes a notice; it is logged, rate-limited.
import type { Clock, Timer } from '../util/clock.ts';
import type { Logger } from '../util/logger.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import type { Notice, PreemptionDetector } from './notice.ts';
import { metadataRequest, ProblemLog, type DetectorOptions, type MetadataResponse } from './metadata-http.ts';

export interface AwsDetectorOptions extends DetectorOptions {
  /** Lifetime asked for each token; default 21600 s (the most IMDS grants). */
  tokenTtlSeconds?: number;
  /** Attempts per request on a timeout, a network error, a 5xx or a 401; default 3. */
  attempts?: number;
}

export const AWS_DEFAULT_POLL_MS = 2000;
export const AWS_DEFAULT_REQUEST_TIMEOUT_MS = 2000;
/** The deadline used when the service gives none that can be believed. */
export const AWS_NOTICE_WINDOW_MS = 120_000;
/** Notice times further ahead than this are not believed (the documented window is about two minutes). */
const MAX_BELIEVABLE_AHEAD_MS = 15 * 60_000;
const DEFAULT_TOKEN_TTL_SECONDS = 21_600;
const RETRY_DELAY_MS = 200;
/** A failure of the same kind is logged at most once per this period. */
const LOG_EVERY_MS = 60_000;

const SPOT_ACTIONS = new Set(['terminate', 'stop', 'hibernate']);
/** InService, Terminated, Warmed:Stopped, ... */
const LIFECYCLE_STATE_RE = /^[A-Z][A-Za-z]{0,40}(?::[A-Z][A-Za-z]{0,40})?$/;
const IMDS_TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$/;

const PATHS = {
  token: '/latest/api/token',
  instanceAction: '/latest/meta-data/spot/instance-action',
  rebalance: '/latest/meta-data/events/recommendations/rebalance',
  lifecycle: '/latest/meta-data/autoscaling/target-lifecycle-state',
} as const;

/**
 * Logs a recurring failure at most once a minute per check (with how many were
 * left out), and its recovery only after a failure that was logged: a service
 * that flaps between good and bad answers cannot flood the log.
 */
type Fetched = { kind: 'ok'; response: MetadataResponse } | { kind: 'failed'; reason: string };

export class AwsDetector implements PreemptionDetector {
  readonly cloud = 'aws' as const;
  private readonly baseUrl: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly pollMs: number;
  private readonly timeoutMs: number;
  private readonly tokenTtlSeconds: number;
  private readonly attempts: number;
  /** One rate-limited problem log per check (token, spot/instance-action, ...). */
  private readonly problems = new Map<string, ProblemLog>();
  private readonly seen = new Set<string>();
  private readonly abort = new AbortController();
  private token: { value: string; refreshAtMs: number } | undefined;
  private tokenFetch: Promise<string | undefined> | undefined;
  private onNotice: ((notice: Notice) => void) | undefined;
  private timer: Timer | undefined;
  private polling: Promise<void> | undefined;
  private closed = false;

  constructor(opts: AwsDetectorOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.clock = opts.clock;
    this.logger = opts.logger.child({ detector: 'aws' });
    this.pollMs = opts.pollMs ?? AWS_DEFAULT_POLL_MS;
    this.timeoutMs = opts.requestTimeoutMs ?? AWS_DEFAULT_REQUEST_TIMEOUT_MS;
    this.tokenTtlSeconds = opts.tokenTtlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
    this.attempts = opts.attempts ?? 3;
    const bad = (what: string): never => {
      throw new StevedoreError('CONFIG_INVALID', `AWS detector option ${what}`);
    };
    if (!/^https?:\/\/[^/]/.test(this.baseUrl)) bad(`baseUrl must be an http:// URL such as http://169.254.169.254, not ${JSON.stringify(opts.baseUrl)}`);
    if (!(this.tokenTtlSeconds >= 1 && this.tokenTtlSeconds <= 21_600)) bad(`tokenTtlSeconds must be 1 to 21600 (what IMDS grants), not ${this.tokenTtlSeconds}`);
    if (!(this.pollMs > 0)) bad(`pollMs must be a positive number of milliseconds, not ${this.pollMs}`);
    if (!(this.timeoutMs > 0)) bad(`requestTimeoutMs must be a positive number of milliseconds, not ${this.timeoutMs}`);
    if (!(Number.isInteger(this.attempts) && this.attempts >= 1)) bad(`attempts must be a whole number, at least 1, not ${this.attempts}`);
  }

  private problemLog(check: string): ProblemLog {
    let log = this.problems.get(check);
    if (!log) {
      log = new ProblemLog(this.logger, this.clock, { fields: { check }, intervalMs: LOG_EVERY_MS });
      this.problems.set(check, log);
    }
    return log;
  }

  start(onNotice: (notice: Notice) => void): void {
    if (this.onNotice || this.closed) return;
    this.onNotice = onNotice;
    this.logger.info({ baseUrl: this.baseUrl, pollMs: this.pollMs }, 'watching the EC2 metadata service for spot interruption notices');
    this.schedule(0);
  }

  /** EC2 has no acknowledgement step. */
  async acknowledge(): Promise<void> {}

  async close(): Promise<void> {
    if (this.closed) {
      await this.polling;
      return;
    }
    this.closed = true;
    this.timer?.cancel();
    this.abort.abort(new Error('the AWS detector is closing'));
    await this.polling;
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    this.timer = this.clock.setTimeout(() => {
      this.polling = this.pollOnce().finally(() => this.schedule(this.pollMs));
    }, ms);
  }

  /** One round of the three checks; never rejects. */
  private async pollOnce(): Promise<void> {
    try {
      await Promise.all([this.checkInstanceAction(), this.checkRebalance(), this.checkLifecycle()]);
    } catch (err) {
      // Each check catches its own failures; this is the last guard.
      this.fail('poll', `spot notice poll failed unexpectedly: ${messageOf(err)}`);
    }
  }

  /** Logs a failing check (rate-limited); quiet once closing, when failures are expected. */
  private fail(key: string, message: string): void {
    if (!this.closed) this.problemLog(key).report(message, 'left_out');
  }

  private emit(notice: Notice): void {
    if (this.closed || this.seen.has(notice.id)) return;
    this.seen.add(notice.id);
    this.logger.warn({ notice }, notice.advisory ? 'EC2 rebalance recommendation: this spot instance is at elevated risk of interruption' : `EC2 notice: the instance will ${notice.kind === 'asg-terminated' ? 'be terminated by Auto Scaling' : notice.kind} at ${new Date(notice.deadlineMs).toISOString()}`);
    try {
      this.onNotice?.(notice);
    } catch (err) {
      this.logger.error({ err, noticeId: notice.id }, 'the preemption notice handler threw');
    }
  }

  private async checkInstanceAction(): Promise<void> {
    const key = 'spot/instance-action';
    const fetched = await this.get(PATHS.instanceAction);
    if (fetched.kind === 'failed') return this.fail(key, `cannot read ${key} from the EC2 metadata service: ${fetched.reason}; spot notices may be missed until it answers again`);
    const { status, body } = fetched.response;
    if (status === 404) return this.problemLog(key).recovered(`${key} answers again: no interruption scheduled`);
    if (status !== 200) return this.fail(key, `${key} answered HTTP ${status}; expected 200 or 404`);
    const parsed = parseInstanceAction(body);
    if (typeof parsed === 'string') return this.fail(key, `${key} answered a body that is not a spot notice (${parsed}): ${clip(body)}`);
    this.problemLog(key).recovered(`${key} answers again`);
    const now = this.clock.now();
    this.emit({
      id: `aws:instance-action:${parsed.action}`,
      source: 'aws',
      kind: parsed.action,
      deadlineMs: believableDeadline(parsed.timeMs, now),
      receivedMs: now,
      advisory: false,
    });
  }

  private async checkRebalance(): Promise<void> {
    const key = 'rebalance';
    const fetched = await this.get(PATHS.rebalance);
    if (fetched.kind === 'failed') return this.fail(key, `cannot read the rebalance recommendation from the EC2 metadata service: ${fetched.reason}`);
    const { status, body } = fetched.response;
    if (status === 404) return this.problemLog(key).recovered('the rebalance recommendation answers again: none');
    if (status !== 200) return this.fail(key, `the rebalance recommendation answered HTTP ${status}; expected 200 or 404`);
    const noticeMs = parseRebalance(body);
    if (noticeMs === undefined) return this.fail(key, `the rebalance recommendation answered a body that is not one: ${clip(body)}`);
    this.problemLog(key).recovered('the rebalance recommendation answers again');
    const now = this.clock.now();
    this.emit({
      // One recommendation per instance: keyed on the signal, not on its time.
      id: 'aws:rebalance',
      source: 'aws-rebalance',
      kind: 'rebalance',
      // Nominal: a spot interruption, if one follows, comes with its own two-minute notice.
      deadlineMs: now + AWS_NOTICE_WINDOW_MS,
      receivedMs: now,
      advisory: true,
    });
  }

  private async checkLifecycle(): Promise<void> {
    const key = 'autoscaling/target-lifecycle-state';
    const fetched = await this.get(PATHS.lifecycle);
    if (fetched.kind === 'failed') return this.fail(key, `cannot read ${key} from the EC2 metadata service: ${fetched.reason}`);
    const { status, body } = fetched.response;
    // 404: the instance is not in an Auto Scaling group.
    if (status === 404) return this.problemLog(key).recovered(`${key} answers again`);
    if (status !== 200) return this.fail(key, `${key} answered HTTP ${status}; expected 200 or 404`);
    const state = body.trim();
    if (!LIFECYCLE_STATE_RE.test(state)) return this.fail(key, `${key} answered a body that is not a lifecycle state: ${clip(body)}`);
    this.problemLog(key).recovered(`${key} answers again`);
    if (state !== 'Terminated') return;
    const now = this.clock.now();
    this.emit({ id: 'aws:asg-terminated', source: 'aws', kind: 'asg-terminated', deadlineMs: now + AWS_NOTICE_WINDOW_MS, receivedMs: now, advisory: false });
  }

  /**
   * A GET with the token, up to `attempts` tries: a timeout, a network error,
   * a 5xx or a 401 (the token is then fetched again) are retried; any other
   * status is the answer.
   */
  private async get(path: string): Promise<Fetched> {
    let reason = 'not tried';
    for (let attempt = 1; attempt <= this.attempts && !this.closed; attempt++) {
      if (attempt > 1) {
        try {
          await this.clock.sleep(RETRY_DELAY_MS, this.abort.signal);
        } catch {
          break;
        }
      }
      const token = await this.getToken();
      if (token === undefined) {
        reason = 'no IMDSv2 token (see the previous warning about the token)';
        continue;
      }
      let response: MetadataResponse;
      try {
        response = await metadataRequest({
          method: 'GET',
          url: `${this.baseUrl}${path}`,
          headers: { 'X-aws-ec2-metadata-token': token },
          timeoutMs: this.timeoutMs,
          signal: this.abort.signal,
          clock: this.clock,
        });
      } catch (err) {
        reason = messageOf(err);
        continue;
      }
      if (response.status === 401) {
        // Expired or revoked: fetch a new one on the next try.
        if (this.token?.value === token) this.token = undefined;
        reason = 'HTTP 401 (the IMDSv2 token was refused)';
        continue;
      }
      if (response.status >= 500) {
        reason = `HTTP ${response.status}`;
        continue;
      }
      // The token was accepted: the token service works (again).
      this.problemLog('token').recovered('IMDSv2 tokens are issued and accepted again');
      return { kind: 'ok', response };
    }
    return { kind: 'failed', reason: this.closed ? 'the detector is closing' : `${reason} (after ${this.attempts} attempts)` };
  }

  /** The current token, fetched or refreshed when needed; one fetch at a time. undefined: none could be had. */
  private async getToken(): Promise<string | undefined> {
    if (this.token && this.clock.now() < this.token.refreshAtMs) return this.token.value;
    this.tokenFetch ??= this.fetchToken().finally(() => {
      this.tokenFetch = undefined;
    });
    return this.tokenFetch;
  }

  private async fetchToken(): Promise<string | undefined> {
    const key = 'token';
    const requestedMs = this.clock.now();
    let response: MetadataResponse;
    try {
      response = await metadataRequest({
        method: 'PUT',
        url: `${this.baseUrl}${PATHS.token}`,
        headers: { 'X-aws-ec2-metadata-token-ttl-seconds': String(this.tokenTtlSeconds) },
        timeoutMs: this.timeoutMs,
        signal: this.abort.signal,
        clock: this.clock,
      });
    } catch (err) {
      this.fail(key, `cannot get an IMDSv2 token: ${messageOf(err)}; check that the instance metadata service is enabled (and its hop limit is at least 2 inside a container)`);
      return undefined;
    }
    const token = response.body.trim();
    if (response.status !== 200 || !/^[\x21-\x7e]{1,1024}$/.test(token)) {
      this.fail(key, `the IMDSv2 token request answered HTTP ${response.status}${response.status === 200 ? ' without a usable token' : ''}; check that the instance metadata service is enabled with IMDSv2`);
      return undefined;
    }
    // The service echoes the TTL it granted; trust the shorter of that and the one asked for.
    const granted = Number(response.headers['x-aws-ec2-metadata-token-ttl-seconds']);
    const ttlMs = (Number.isFinite(granted) && granted >= 1 ? Math.min(granted, this.tokenTtlSeconds) : this.tokenTtlSeconds) * 1000;
    // Refresh well before the end: a tenth of the lifetime early, at most a minute.
    const earlyMs = Math.min(60_000, ttlMs / 10);
    this.token = { value: token, refreshAtMs: requestedMs + ttlMs - earlyMs };
    return token;
  }
}

/** The notice in an instance-action body, or a reason why the body is not one. */
export function parseInstanceAction(body: string): { action: string; timeMs: number } | string {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return 'not JSON';
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'not a JSON object';
  const { action, time } = doc as Record<string, unknown>;
  if (typeof action !== 'string' || !SPOT_ACTIONS.has(action)) return 'action is not terminate, stop or hibernate';
  if (typeof time !== 'string' || !IMDS_TIME_RE.test(time)) return 'time is not a UTC timestamp';
  const timeMs = Date.parse(time);
  if (!Number.isFinite(timeMs)) return 'time is not a UTC timestamp';
  return { action, timeMs };
}

function parseRebalance(body: string): number | undefined {
  try {
    const doc: unknown = JSON.parse(body);
    if (typeof doc !== 'object' || doc === null) return undefined;
    const noticeTime = (doc as Record<string, unknown>).noticeTime;
    if (typeof noticeTime !== 'string' || !IMDS_TIME_RE.test(noticeTime)) return undefined;
    const ms = Date.parse(noticeTime);
    return Number.isFinite(ms) ? ms : undefined;
  } catch {
    return undefined;
  }
}

/** The notice's time, unless it is already past or absurdly far: then the documented two minutes from now. */
export function believableDeadline(timeMs: number, nowMs: number): number {
  if (timeMs <= nowMs || timeMs > nowMs + MAX_BELIEVABLE_AHEAD_MS) return nowMs + AWS_NOTICE_WINDOW_MS;
  return timeMs;
}

function clip(body: string): string {
  const oneLine = body.replace(/[^\x20-\x7e]/g, '?');
  return JSON.stringify(oneLine.length > 120 ? `${oneLine.slice(0, 120)}...` : oneLine);
}
