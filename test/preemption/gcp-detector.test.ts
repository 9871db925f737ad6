// The GCP detector against a faithful stand-in for the metadata server on
// loopback: hanging GETs that follow ETags, one notice per event, and bad
// answers that never throw, never make a notice, and are logged sparingly.
import t from 'tap';
import type { Test } from 'tap';
import { GcpDetector, GCP_MAINTENANCE_WINDOW_MS, GCP_PREEMPTION_WINDOW_MS } from '../../src/preemption/gcp-detector.ts';
import { metadataRequest } from '../../src/preemption/metadata-http.ts';
import type { Notice } from '../../src/preemption/notice.ts';
import { systemClock } from '../../src/util/clock.ts';
import { createLogger } from '../../src/util/logger.ts';
import { throwsCode } from '../helpers/assert.ts';
import { startFakeGcpMetadata } from '../helpers/fake-gcp-metadata.ts';
import type { FakeGcpMetadata } from '../helpers/fake-gcp-metadata.ts';

interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

const WARN = 40;

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Setup {
  fake: FakeGcpMetadata;
  detector: GcpDetector;
  notices: Notice[];
  logs: LogLine[];
}

async function setup(t: Test, opts: { pollMs?: number; requestTimeoutMs?: number; before?: (fake: FakeGcpMetadata) => void } = {}): Promise<Setup> {
  const fake = await startFakeGcpMetadata();
  opts.before?.(fake);
  const logs: LogLine[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => logs.push(JSON.parse(line) as LogLine) } });
  const detector = new GcpDetector({
    baseUrl: fake.baseUrl,
    clock: systemClock,
    logger,
    pollMs: opts.pollMs ?? 1_000,
    requestTimeoutMs: opts.requestTimeoutMs ?? 1_000,
  });
  const notices: Notice[] = [];
  detector.start((notice) => notices.push(notice));
  t.teardown(async () => {
    await detector.close();
    await fake.close();
  });
  return { fake, detector, notices, logs };
}

const warnings = (logs: LogLine[]): LogLine[] => logs.filter((line) => line.level >= WARN && !/^GCP notice/.test(line.msg));

void t.test('the stand-in is faithful to the documented metadata server', async (t) => {
  const fake = await startFakeGcpMetadata();
  t.teardown(() => fake.close());
  const url = `${fake.baseUrl}/computeMetadata/v1/instance/preempted`;
  const get = (query = '', headers: Record<string, string> = { 'Metadata-Flavor': 'Google' }) =>
    metadataRequest({ method: 'GET', url: `${url}${query}`, headers, timeoutMs: 5_000 });

  const missing = await get('', {});
  t.equal(missing.status, 403, 'no Metadata-Flavor header: refused');
  t.match(missing.body, /Missing Metadata-Flavor:Google header/);
  const forwarded = await get('', { 'Metadata-Flavor': 'Google', 'X-Forwarded-For': '10.0.0.1' });
  t.equal(forwarded.status, 403, 'X-Forwarded-For: refused');

  const plain = await get();
  t.equal(plain.status, 200);
  t.equal(plain.body, 'FALSE');
  t.equal(plain.headers['metadata-flavor'], 'Google');
  t.equal(plain.headers['content-type'], 'application/text');
  t.equal(plain.headers.etag, fake.etagOf('instance/preempted'));

  const other = await get('?wait_for_change=true&last_etag=0');
  t.equal(other.body, 'FALSE', 'a different last_etag answers at once');

  const started = Date.now();
  const timedOut = await get(`?wait_for_change=true&last_etag=${plain.headers.etag}&timeout_sec=1`);
  t.ok(Date.now() - started >= 950, 'the same last_etag waits for timeout_sec');
  t.equal(timedOut.body, 'FALSE');
  t.equal(timedOut.headers.etag, plain.headers.etag, 'unchanged value, unchanged ETag');

  const waiting = get(`?wait_for_change=true&last_etag=${plain.headers.etag}`);
  await waitFor('the hanging GET', () => fake.hanging() === 1);
  fake.setPreempted(true);
  const changed = await waiting;
  t.equal(changed.body, 'TRUE', 'a change answers the hanging GET');
  t.not(changed.headers.etag, plain.headers.etag, 'with a new ETag');

  t.equal((await get('?wait_for_change=true&timeout_sec=0')).status, 400, 'timeout_sec must be positive');
  t.equal((await metadataRequest({ method: 'GET', url: `${fake.baseUrl}/computeMetadata/v1/instance/nothing`, headers: { 'Metadata-Flavor': 'Google' }, timeoutMs: 5_000 })).status, 404);
  fake.setFault('503', 1);
  t.equal((await get()).status, 503, '503 mode');
  t.equal((await get()).status, 200, 'for the given number of requests');
});

void t.test('hanging GETs with the header, following the ETag, each request outliving its timeout_sec', async (t) => {
  const { fake, notices, logs } = await setup(t, { pollMs: 1_000, requestTimeoutMs: 300 });
  // Two rounds of timeout_sec expiries on both watches.
  await sleep(2_600);
  const preempted = fake.requests.filter((r) => r.path === 'instance/preempted');
  t.ok(preempted.length >= 3 && preempted.length <= 5, `one request per timeout_sec, not a busy loop (${preempted.length})`);
  t.same(preempted[0]?.query, { wait_for_change: 'true', last_etag: '0', timeout_sec: '1' }, 'the first request reads the value at once');
  for (const r of preempted.slice(1)) {
    t.same(r.query, { wait_for_change: 'true', last_etag: fake.etagOf('instance/preempted'), timeout_sec: '1' }, 'later ones wait on the last ETag');
  }
  t.ok(fake.requests.every((r) => r.status === 200 || r.status === 0), 'no request refused, none given up before its timeout_sec');
  t.ok(fake.requests.some((r) => r.path === 'instance/maintenance-event'), 'maintenance-event is watched too');
  t.same(notices, []);
  t.same(warnings(logs), [], 'nothing to warn about');
});

void t.test('preempted = TRUE: one notice at once, with a 30 s deadline', async (t) => {
  const { fake, notices } = await setup(t, { pollMs: 5_000 });
  await waitFor('both hanging GETs', () => fake.hanging() === 2);
  const setAt = Date.now();
  fake.setPreempted(true);
  await waitFor('the notice', () => notices.length === 1);
  const notice = notices[0]!;
  t.ok(notice.receivedMs - setAt < 1_000, 'the hanging GET brings it at once, not a poll later');
  t.match(notice, { source: 'gcp', kind: 'preempted', advisory: false });
  t.equal(notice.deadlineMs, notice.receivedMs + GCP_PREEMPTION_WINDOW_MS);
  t.equal(notice.id, `gcp-preempted-${fake.etagOf('instance/preempted')}`);
  await waitFor('the next hanging GET on the new ETag', () =>
    fake.requests.some((r) => r.path === 'instance/preempted' && r.query.last_etag === fake.etagOf('instance/preempted')));
  t.equal(notices.length, 1, 'TRUE read again is the same notice');
});

void t.test('a timeout_sec expiry or a reconnect that reads TRUE again makes no second notice', async (t) => {
  const { fake, notices } = await setup(t, { pollMs: 1_000 });
  await waitFor('both hanging GETs', () => fake.hanging() === 2);
  fake.setPreempted(true);
  await waitFor('the notice', () => notices.length === 1);
  fake.setFault('reset', 2);
  await sleep(2_500);
  t.equal(notices.length, 1);
});

void t.test('already preempted when the agent starts: a notice from the first read', async (t) => {
  const { notices } = await setup(t, { before: (fake) => fake.setPreempted(true) });
  await waitFor('the notice', () => notices.length === 1);
  t.match(notices[0], { source: 'gcp', kind: 'preempted' });
});

void t.test('maintenance events: TERMINATE drains with 60 s, MIGRATE is advisory, each event once', async (t) => {
  const { fake, notices } = await setup(t, { pollMs: 5_000 });
  await waitFor('both hanging GETs', () => fake.hanging() === 2);
  fake.setMaintenanceEvent('MIGRATE_ON_HOST_MAINTENANCE');
  await waitFor('the migrate notice', () => notices.length === 1);
  t.match(notices[0], { source: 'gcp', kind: 'MIGRATE_ON_HOST_MAINTENANCE', advisory: true });
  fake.setMaintenanceEvent('NONE');
  await waitFor('the hanging GET after NONE', () =>
    fake.requests.some((r) => r.path === 'instance/maintenance-event' && r.query.last_etag === fake.etagOf('instance/maintenance-event') && r.status === 0));
  fake.setMaintenanceEvent('TERMINATE_ON_HOST_MAINTENANCE');
  await waitFor('the terminate notice', () => notices.length === 2);
  const terminate = notices[1]!;
  t.match(terminate, { source: 'gcp', kind: 'TERMINATE_ON_HOST_MAINTENANCE', advisory: false });
  t.equal(terminate.deadlineMs, terminate.receivedMs + GCP_MAINTENANCE_WINDOW_MS);
  fake.setMaintenanceEvent('NONE');
  await sleep(200);
  fake.setMaintenanceEvent('TERMINATE_ON_HOST_MAINTENANCE');
  await waitFor('a second terminate notice for a second event', () => notices.length === 3);
  t.not(notices[2]!.id, terminate.id, 'a new event has a new id');
  t.equal(new Set(notices.map((n) => n.id)).size, 3);
});

void t.test('503 during host maintenance: retried after a short backoff, the notice still comes', async (t) => {
  const { fake, notices } = await setup(t, {
    before: (fake) => {
      fake.setPreempted(true);
      fake.setFault('503', 4);
    },
  });
  const started = Date.now();
  await waitFor('the notice', () => notices.length === 1, 5_000);
  t.ok(Date.now() - started < 3_000, 'short backoff');
  t.equal(fake.requests.filter((r) => r.status === 503).length, 4);
  t.equal(notices.length, 1);
});

for (const fault of ['garbage', '500', 'hang', 'reset'] as const) {
  void t.test(`${fault} from the metadata server: no throw, no notice, warnings rate-limited, recovery`, async (t) => {
    const { fake, notices, logs } = await setup(t, {
      pollMs: 1_000,
      requestTimeoutMs: 200,
      before: (fake) => fake.setFault(fault),
    });
    await sleep(fault === 'hang' ? 3_000 : 1_500);
    t.same(notices, [], 'no false notice');
    const failed = fake.requests.length;
    t.ok(failed >= 4, `retried (${failed} requests)`);
    t.ok(failed < 60, 'with a backoff, not a busy loop');
    const warned = warnings(logs);
    t.ok(warned.length >= 1 && warned.length <= 2, `at most one warning per watch (${warned.length})`);
    t.match(warned[0]?.msg, /retrying\. Preemption notices cannot be seen until the metadata server answers: check/);
    fake.setFault(undefined);
    fake.setPreempted(true);
    await waitFor('the notice after recovery', () => notices.length === 1, 8_000);
    t.match(notices[0], { kind: 'preempted', advisory: false });
  });
}

void t.test('close stops the watches, is safe twice; acknowledge is a no-op; start after close is ignored', async (t) => {
  const { fake, detector, notices } = await setup(t);
  await waitFor('both hanging GETs', () => fake.hanging() === 2);
  await detector.close();
  await detector.close();
  await sleep(100);
  t.equal(fake.hanging(), 0, 'the hanging GETs are given up');
  const count = fake.requests.length;
  detector.start((notice) => notices.push(notice));
  fake.setPreempted(true);
  await sleep(300);
  t.equal(fake.requests.length, count, 'no request after close');
  t.same(notices, []);
  await detector.acknowledge({ id: 'x', source: 'gcp', kind: 'preempted', deadlineMs: 0, receivedMs: 0, advisory: false });
});

void t.test('options are checked when the detector is made', (t) => {
  const base = { clock: systemClock, logger: createLogger({ level: 'silent' }) };
  throwsCode(t, () => new GcpDetector({ ...base, baseUrl: 'metadata.google.internal' }), 'CONFIG_INVALID', /not a URL/);
  throwsCode(t, () => new GcpDetector({ ...base, baseUrl: 'ftp://169.254.169.254' }), 'CONFIG_INVALID', /http:\/\//);
  throwsCode(t, () => new GcpDetector({ ...base, baseUrl: 'http://169.254.169.254', pollMs: 0 }), 'CONFIG_INVALID', /pollMs/);
  throwsCode(t, () => new GcpDetector({ ...base, baseUrl: 'http://169.254.169.254', requestTimeoutMs: -1 }), 'CONFIG_INVALID', /requestTimeoutMs/);
  t.end();
});
