import t from 'tap';
import type { Test } from 'tap';
import pino from 'pino';
import { AwsDetector, believableDeadline, parseInstanceAction, AWS_NOTICE_WINDOW_MS, type AwsDetectorOptions } from '../../src/preemption/aws-detector.ts';
import { metadataRequest } from '../../src/preemption/metadata-http.ts';
import type { Notice } from '../../src/preemption/notice.ts';
import { systemClock, type Clock, type Timer } from '../../src/util/clock.ts';
import { throwsCode } from '../helpers/assert.ts';
import { startFakeImds, imdsTime, type FakeImds, type ImdsMode, type ImdsModeScope } from '../helpers/fake-imds.ts';

/** Real timers; a time the test can move (shared by the fake and the detector). */
class OffsetClock implements Clock {
  offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    return systemClock.setTimeout(fn, ms);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return systemClock.sleep(ms, signal);
  }
}

interface LogLine {
  level: number;
  msg: string;
  check?: string;
}

async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface Setup {
  imds: FakeImds;
  clock: OffsetClock;
  detector: AwsDetector;
  notices: Notice[];
  logs: LogLine[];
  /** Waits until the fake has answered `n` more instance-action polls. */
  polls(n: number, timeoutMs?: number): Promise<void>;
}

async function setup(t: Test, opts: Partial<AwsDetectorOptions> & { slowMs?: number } = {}): Promise<Setup> {
  const clock = new OffsetClock();
  const imds = await startFakeImds({ now: () => clock.now(), slowMs: opts.slowMs });
  const logs: LogLine[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as LogLine) });
  const detector = new AwsDetector({ baseUrl: imds.url, clock, logger, pollMs: 20, ...opts });
  const notices: Notice[] = [];
  t.teardown(async () => {
    await detector.close();
    await imds.close();
  });
  const polls = async (n: number, timeoutMs = 5000): Promise<void> => {
    const count = (): number => imds.requests.filter((r) => r === 'GET /latest/meta-data/spot/instance-action').length;
    const target = count() + n;
    await waitFor(`${n} polls`, () => count() >= target, timeoutMs);
  };
  return { imds, clock, detector, notices, logs, polls };
}

void t.test('the fake IMDS speaks the documented wire format', async (t) => {
  const clock = new OffsetClock();
  const imds = await startFakeImds({ now: () => clock.now() });
  t.teardown(() => imds.close());
  const req = (method: 'GET' | 'PUT', path: string, headers: Record<string, string> = {}) =>
    metadataRequest({ method, url: `${imds.url}${path}`, headers, timeoutMs: 2000 });

  const noTtl = await req('PUT', '/latest/api/token');
  t.equal(noTtl.status, 400, 'token without TTL: 400');
  t.match(noTtl.headers['content-type'], /text\/html/);
  t.match(noTtl.body, /<html/);
  t.equal((await req('PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': '0' })).status, 400, 'TTL 0: 400');
  t.equal((await req('PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': '21601' })).status, 400, 'TTL over 6 h: 400');
  const forwarded = await req('PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': '60', 'X-Forwarded-For': '10.0.0.1' });
  t.equal(forwarded.status, 403, 'X-Forwarded-For refused');
  t.equal(imds.tokensIssued, 0);

  const tokenReply = await req('PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': '60' });
  t.equal(tokenReply.status, 200);
  t.equal(tokenReply.headers['x-aws-ec2-metadata-token-ttl-seconds'], '60', 'TTL echoed');
  const token = tokenReply.body;
  t.ok(token.length > 20);
  t.equal(imds.tokensIssued, 1);
  const withToken = { 'X-aws-ec2-metadata-token': token };

  const noToken = await req('GET', '/latest/meta-data/spot/instance-action');
  t.equal(noToken.status, 401, 'GET without a token: 401');
  t.match(noToken.body, /401 - Unauthorized/);
  t.equal((await req('GET', '/latest/meta-data/spot/instance-action', { 'X-aws-ec2-metadata-token': 'forged' })).status, 401, 'unknown token: 401');

  const nothing = await req('GET', '/latest/meta-data/spot/instance-action', withToken);
  t.equal(nothing.status, 404, 'nothing scheduled: 404');
  t.match(nothing.body, /404 - Not Found/);
  t.equal((await req('GET', '/latest/meta-data/spot/termination-time', withToken)).status, 404);
  t.equal((await req('GET', '/latest/meta-data/events/recommendations/rebalance', withToken)).status, 404);
  const lifecycle = await req('GET', '/latest/meta-data/autoscaling/target-lifecycle-state', withToken);
  t.equal(lifecycle.body, 'InService');

  imds.scheduleSpotAction('terminate');
  const first = await req('GET', '/latest/meta-data/spot/instance-action', withToken);
  t.equal(first.status, 200);
  t.equal(first.headers['content-type'], 'application/json');
  const firstDoc = JSON.parse(first.body) as { action: string; time: string };
  t.equal(firstDoc.action, 'terminate');
  t.match(firstDoc.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  t.ok(Math.abs(Date.parse(firstDoc.time) - (clock.now() + 120_000)) < 2000, 'time is request time + 2 min');
  clock.offset += 5000;
  const second = JSON.parse((await req('GET', '/latest/meta-data/spot/instance-action', withToken)).body) as { time: string };
  t.ok(Date.parse(second.time) >= Date.parse(firstDoc.time) + 4000, 'the time moves on every request');
  const legacy = await req('GET', '/latest/meta-data/spot/termination-time', withToken);
  t.equal(legacy.body, second.time, 'legacy termination-time: the bare timestamp');

  imds.scheduleSpotAction('stop', { movingTime: false });
  const fixed1 = (await req('GET', '/latest/meta-data/spot/instance-action', withToken)).body;
  clock.offset += 5000;
  t.equal((await req('GET', '/latest/meta-data/spot/instance-action', withToken)).body, fixed1, 'movingTime false: the same body');

  imds.scheduleRebalance();
  const rebalance = await req('GET', '/latest/meta-data/events/recommendations/rebalance', withToken);
  t.same(JSON.parse(rebalance.body), { noticeTime: imdsTime(clock.now()) });

  imds.setLifecycleState(undefined);
  t.equal((await req('GET', '/latest/meta-data/autoscaling/target-lifecycle-state', withToken)).status, 404, 'not in an ASG: 404');

  clock.offset += 61_000;
  t.equal((await req('GET', '/latest/meta-data/spot/instance-action', withToken)).status, 401, 'expired token: 401');

  imds.setMode('500');
  t.equal((await req('PUT', '/latest/api/token', { 'X-aws-ec2-metadata-token-ttl-seconds': '60' })).status, 500);
  t.ok(imds.requests.includes('PUT /latest/api/token'));
});

void t.test('a terminate notice whose time moves on every poll reaches onNotice once', async (t) => {
  const s = await setup(t);
  s.detector.start((n) => s.notices.push(n));
  await s.polls(3);
  t.same(s.notices, [], 'nothing scheduled: no notice');
  s.imds.scheduleSpotAction('terminate');
  const scheduledAt = s.clock.now();
  await waitFor('the notice', () => s.notices.length > 0);
  await s.polls(10);
  t.equal(s.notices.length, 1, 'one notice after many polls with a moving time');
  const notice = s.notices[0]!;
  t.equal(notice.source, 'aws');
  t.equal(notice.kind, 'terminate');
  t.equal(notice.advisory, false);
  t.equal(notice.id, 'aws:instance-action:terminate');
  t.ok(notice.receivedMs >= scheduledAt && notice.receivedMs <= s.clock.now());
  t.ok(notice.deadlineMs > notice.receivedMs + 115_000 && notice.deadlineMs <= notice.receivedMs + 120_000, `deadline is the notice's time, about 2 min ahead (${notice.deadlineMs - notice.receivedMs} ms)`);
  t.ok(s.logs.some((l) => l.level === 40 && /EC2 notice: the instance will terminate/.test(l.msg)), 'the notice is logged');
});

void t.test('stop and hibernate: kind is the action, deadline the time given', async (t) => {
  for (const action of ['stop', 'hibernate'] as const) {
    const s = await setup(t);
    s.imds.scheduleSpotAction(action, { movingTime: false });
    const expected = Date.parse(imdsTime(s.clock.now() + 120_000));
    s.detector.start((n) => s.notices.push(n));
    await waitFor('the notice', () => s.notices.length > 0);
    t.equal(s.notices[0]!.kind, action);
    t.equal(s.notices[0]!.deadlineMs, expected, `${action}: deadline = the body's time`);
  }
});

void t.test('a different action is a different notice', async (t) => {
  const s = await setup(t);
  s.imds.scheduleSpotAction('hibernate');
  s.detector.start((n) => s.notices.push(n));
  await waitFor('the first notice', () => s.notices.length === 1);
  s.imds.scheduleSpotAction('terminate');
  await waitFor('the second notice', () => s.notices.length === 2);
  await s.polls(3);
  t.same(s.notices.map((n) => n.kind), ['hibernate', 'terminate']);
});

void t.test('a notice time in the past or absurdly far: now + 120 s', async (t) => {
  const past = await setup(t);
  past.imds.scheduleSpotAction('terminate', { movingTime: false });
  past.clock.offset += 10 * 60_000; // the body's time is now 8 minutes ago
  past.detector.start((n) => past.notices.push(n));
  await waitFor('the notice', () => past.notices.length > 0);
  const p = past.notices[0]!;
  t.equal(p.deadlineMs, p.receivedMs + AWS_NOTICE_WINDOW_MS, 'past: now + 120 s');

  const far = await setup(t);
  far.imds.scheduleSpotAction('terminate', { movingTime: false });
  far.clock.offset -= 60 * 60_000; // the body's time is now an hour and two minutes ahead
  far.detector.start((n) => far.notices.push(n));
  await waitFor('the notice', () => far.notices.length > 0);
  const f = far.notices[0]!;
  t.equal(f.deadlineMs, f.receivedMs + AWS_NOTICE_WINDOW_MS, 'far: now + 120 s');

  t.equal(believableDeadline(1_000_000, 1_000_000), 1_120_000, 'exactly now: clamped');
  t.equal(believableDeadline(1_090_000, 1_000_000), 1_090_000, '90 s ahead: kept');
  t.equal(believableDeadline(1_000_000 + 16 * 60_000, 1_000_000), 1_120_000, '16 min ahead: clamped');
});

void t.test('instance-action bodies that are not notices', (t) => {
  t.same(parseInstanceAction('{"action": "terminate", "time": "2017-09-18T08:22:00Z"}'), { action: 'terminate', timeMs: Date.parse('2017-09-18T08:22:00Z') });
  for (const body of ['', '{', '[]', 'null', '"terminate"', '{"action":"reboot","time":"2017-09-18T08:22:00Z"}', '{"action":"terminate"}', '{"action":"terminate","time":"tomorrow"}', '{"action":"terminate","time":"2017-13-45T99:99:99Z"}', '{"action":"terminate","time":1505722920}']) {
    t.type(parseInstanceAction(body), 'string', `not a notice: ${body}`);
  }
  t.end();
});

void t.test('a rebalance recommendation is one advisory notice; the interruption after it is another', async (t) => {
  const s = await setup(t);
  s.detector.start((n) => s.notices.push(n));
  s.imds.scheduleRebalance();
  await waitFor('the rebalance notice', () => s.notices.length === 1);
  await s.polls(5);
  t.equal(s.notices.length, 1);
  const r = s.notices[0]!;
  t.equal(r.source, 'aws-rebalance');
  t.equal(r.advisory, true);
  t.equal(r.kind, 'rebalance');
  s.imds.scheduleSpotAction('terminate');
  await waitFor('the interruption', () => s.notices.length === 2);
  await s.polls(5);
  t.equal(s.notices.length, 2);
  t.equal(s.notices[1]!.advisory, false);
  t.equal(s.notices[1]!.source, 'aws');
});

void t.test('Auto Scaling target lifecycle state Terminated: a notice with a 120 s deadline', async (t) => {
  const s = await setup(t);
  s.imds.setLifecycleState(undefined);
  s.detector.start((n) => s.notices.push(n));
  await s.polls(3);
  s.imds.setLifecycleState('InService');
  await s.polls(3);
  t.same(s.notices, [], 'not in an ASG, then InService: no notice');
  s.imds.setLifecycleState('Terminated');
  await waitFor('the notice', () => s.notices.length === 1);
  await s.polls(5);
  t.equal(s.notices.length, 1);
  const n = s.notices[0]!;
  t.equal(n.kind, 'asg-terminated');
  t.equal(n.source, 'aws');
  t.equal(n.advisory, false);
  t.equal(n.deadlineMs, n.receivedMs + 120_000);
});

void t.test('the token is fetched once, refreshed before its TTL runs out, never used expired', async (t) => {
  const s = await setup(t);
  s.detector.start((n) => s.notices.push(n));
  await s.polls(10);
  t.equal(s.imds.tokensIssued, 1, 'one token for many polls (and the three checks share it)');
  const firstPut = s.imds.requests.indexOf('PUT /latest/api/token');
  t.ok(firstPut >= 0);
  s.clock.offset += 21_600_000 - 30_000; // 30 s before the 6-hour token expires
  await waitFor('a refresh', () => s.imds.tokensIssued === 2);
  await s.polls(5);
  t.equal(s.imds.tokensIssued, 2, 'refreshed once');
  t.same(s.imds.log.filter((r) => r.status === 401), [], 'no request was refused');
  s.imds.scheduleSpotAction('terminate');
  await waitFor('the notice', () => s.notices.length === 1);
});

void t.test('a refused token (401) is fetched again and the poll goes on', async (t) => {
  const s = await setup(t);
  s.detector.start((n) => s.notices.push(n));
  await s.polls(3);
  s.imds.expireTokens();
  s.imds.scheduleSpotAction('stop');
  await waitFor('the notice', () => s.notices.length === 1);
  t.ok(s.imds.log.some((r) => r.status === 401), 'the fake refused the old token');
  t.ok(s.imds.tokensIssued >= 2, 'a new token was fetched');
  t.equal(s.notices[0]!.kind, 'stop');
});

const BAD: [ImdsMode, ImdsModeScope][] = [
  ['garbage', 'metadata'],
  ['garbage', 'all'],
  ['500', 'all'],
  ['500', 'metadata'],
  ['hang', 'all'],
  ['hang', 'metadata'],
  ['slow', 'all'],
  ['500', 'token'],
  ['garbage', 'token'],
  ['hang', 'token'],
];

for (const [mode, scope] of BAD) {
  void t.test(`bad answers (${mode}, ${scope}): no notice, nothing thrown, logged once per check; the notice comes when the service recovers`, async (t) => {
    const s = await setup(t, { requestTimeoutMs: 150, slowMs: 400 });
    s.imds.setMode(mode, scope);
    s.imds.scheduleSpotAction('terminate');
    s.imds.scheduleRebalance();
    s.imds.setLifecycleState('Terminated');
    s.detector.start((n) => s.notices.push(n));
    const count = (): number => s.imds.requests.length;
    const rounds = mode === 'hang' || mode === 'slow' ? 12 : 40;
    await waitFor(`${rounds} requests`, () => count() >= rounds, 15_000);
    t.same(s.notices, [], 'no notice from bad answers');
    const warnings = s.logs.filter((l) => l.level === 40);
    t.ok(warnings.length >= 1, 'the failure is logged');
    const perCheck = new Map<string, number>();
    for (const w of warnings) perCheck.set(w.check ?? '', (perCheck.get(w.check ?? '') ?? 0) + 1);
    for (const [check, n] of perCheck) t.equal(n, 1, `${check}: logged once, not on every poll`);

    s.imds.setMode('normal');
    await waitFor('the notices after recovery', () => s.notices.length === 3, 10_000);
    t.same(s.notices.map((n) => n.kind).sort(), ['asg-terminated', 'rebalance', 'terminate'], 'the detector kept polling');
    t.ok(s.logs.some((l) => l.level === 30 && /answers again|accepted again/.test(l.msg)), 'the recovery is logged');
  });
}

void t.test('close: stops polling, ends a hanging request at once, safe twice; acknowledge is a no-op', async (t) => {
  const s = await setup(t, { requestTimeoutMs: 10_000 });
  s.detector.start((n) => s.notices.push(n));
  await s.polls(2);
  s.imds.setMode('hang');
  await waitFor('a hanging request', () => s.imds.log.some((r) => r.status === 'no answer'));
  const started = Date.now();
  await s.detector.close();
  t.ok(Date.now() - started < 1000, 'close did not wait for the hanging request');
  await s.detector.close();
  const after = s.imds.requests.length;
  await new Promise((r) => setTimeout(r, 150));
  t.equal(s.imds.requests.length, after, 'no request after close');
  t.same(s.logs.filter((l) => l.level >= 40), [], 'closing is not a failure');
  await t.resolves(s.detector.acknowledge());
});

void t.test('a throwing notice handler does not stop the detector', async (t) => {
  const s = await setup(t);
  s.detector.start((n) => {
    s.notices.push(n);
    throw new Error('handler bug');
  });
  s.imds.scheduleRebalance();
  await waitFor('the first notice', () => s.notices.length === 1);
  s.imds.scheduleSpotAction('terminate');
  await waitFor('the second notice', () => s.notices.length === 2);
  t.ok(s.logs.some((l) => l.level === 50 && /handler threw/.test(l.msg)));
});

void t.test('options are checked when the detector is made', (t) => {
  const base = { baseUrl: 'http://169.254.169.254', clock: systemClock, logger: pino({ level: 'silent' }) };
  throwsCode(t, () => new AwsDetector({ ...base, baseUrl: 'file:///x' }), 'CONFIG_INVALID', /baseUrl must be an http:\/\/ URL/);
  throwsCode(t, () => new AwsDetector({ ...base, tokenTtlSeconds: 0 }), 'CONFIG_INVALID', /tokenTtlSeconds must be 1 to 21600/);
  throwsCode(t, () => new AwsDetector({ ...base, pollMs: 0 }), 'CONFIG_INVALID', /pollMs/);
  throwsCode(t, () => new AwsDetector({ ...base, requestTimeoutMs: -1 }), 'CONFIG_INVALID', /requestTimeoutMs/);
  throwsCode(t, () => new AwsDetector({ ...base, attempts: 0 }), 'CONFIG_INVALID', /attempts/);
  t.ok(new AwsDetector(base));
  t.end();
});
