// The Azure detector against a faithful stand-in for Scheduled Events on
// loopback: polls with the header, one notice per event, the acknowledgement,
// the slow first call, and bad answers that never throw, never make a notice,
// and are logged sparingly.
import t from 'tap';
import type { Test } from 'tap';
import { AzureDetector, AZURE_DEFAULT_WINDOW_MS, parseRfc1123 } from '../../src/preemption/azure-detector.ts';
import type { AzureDetectorOptions } from '../../src/preemption/azure-detector.ts';
import { metadataRequest } from '../../src/preemption/metadata-http.ts';
import type { Notice } from '../../src/preemption/notice.ts';
import { systemClock } from '../../src/util/clock.ts';
import { createLogger } from '../../src/util/logger.ts';
import { rejectsCode, throwsCode } from '../helpers/assert.ts';
import { rfc1123, startFakeAzureEvents } from '../helpers/fake-azure-events.ts';
import type { FakeAzureEvents, FakeAzureEventsOptions } from '../helpers/fake-azure-events.ts';

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
  fake: FakeAzureEvents;
  detector: AzureDetector;
  notices: Notice[];
  logs: LogLine[];
}

async function setup(
  t: Test,
  opts: Partial<AzureDetectorOptions> & { fake?: FakeAzureEventsOptions; before?: (fake: FakeAzureEvents) => void } = {},
): Promise<Setup> {
  const { fake: fakeOptions, before, ...detectorOptions } = opts;
  const fake = await startFakeAzureEvents(fakeOptions);
  before?.(fake);
  const logs: LogLine[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (line: string) => logs.push(JSON.parse(line) as LogLine) } });
  const detector = new AzureDetector({ baseUrl: fake.baseUrl, clock: systemClock, logger, pollMs: 100, requestTimeoutMs: 1_000, ...detectorOptions });
  const notices: Notice[] = [];
  detector.start((notice) => notices.push(notice));
  t.teardown(async () => {
    await detector.close();
    await fake.close();
  });
  return { fake, detector, notices, logs };
}

const warnings = (logs: LogLine[]): LogLine[] => logs.filter((line) => line.level >= WARN && !/^Azure notice/.test(line.msg));
const gets = (fake: FakeAzureEvents) => fake.requests.filter((r) => r.method === 'GET');

void t.test('the stand-in is faithful to documented Scheduled Events', async (t) => {
  const fake = await startFakeAzureEvents();
  t.teardown(() => fake.close());
  const url = `${fake.baseUrl}/metadata/scheduledevents?api-version=2020-07-01`;
  const call = (method: 'GET' | 'POST', headers: Record<string, string>, body?: string, at = url) =>
    metadataRequest({ method, url: at, headers, timeoutMs: 5_000, ...(body === undefined ? {} : { body }) });

  const noHeader = await call('GET', {});
  t.equal(noHeader.status, 400, 'without Metadata: true: 400');
  t.match(noHeader.body, /metadata header/);
  t.equal((await call('GET', { Metadata: 'true' }, undefined, `${fake.baseUrl}/metadata/scheduledevents`)).status, 400, 'without api-version: 400');
  t.equal((await call('GET', { Metadata: 'true', 'X-Forwarded-For': '10.0.0.1' })).status, 400, 'X-Forwarded-For: 400');

  const empty = await call('GET', { Metadata: 'true' });
  t.equal(empty.status, 200);
  t.match(empty.headers['content-type'], /^application\/json/);
  t.same(JSON.parse(empty.body), { DocumentIncarnation: 1, Events: [] });

  const event = fake.addEvent({ EventType: 'Preempt' });
  const listed = JSON.parse((await call('GET', { Metadata: 'true' })).body) as { DocumentIncarnation: number; Events: Record<string, unknown>[] };
  t.equal(listed.DocumentIncarnation, 2, 'the incarnation moves when the list changes');
  t.match(listed.Events[0], { EventId: event.EventId, EventStatus: 'Scheduled', EventType: 'Preempt', ResourceType: 'VirtualMachine', Resources: ['vm1'], EventSource: 'Platform', DurationInSeconds: -1 });
  t.match(listed.Events[0]?.NotBefore, /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/, 'NotBefore in RFC 1123');

  for (const bad of ['not json', '{}', '{"StartRequests": []}', '{"StartRequests": [{"Id": "x"}]}']) {
    t.equal((await call('POST', { Metadata: 'true' }, bad)).status, 400, `malformed acknowledgement ${bad}: 400`);
  }
  t.same(fake.acknowledgements, []);
  const ack = await call('POST', { Metadata: 'true' }, JSON.stringify({ StartRequests: [{ EventId: event.EventId }] }));
  t.equal(ack.status, 200);
  t.same(fake.acknowledgements, [event.EventId], 'the acknowledgement is recorded');
  t.match(fake.events()[0], { EventStatus: 'Started', NotBefore: '' }, 'the event starts');
  t.equal(fake.documentIncarnation(), 3);
  fake.removeEvent(event.EventId);
  t.same(fake.events(), [], 'finished events disappear');
});

void t.test('the stand-in can be slow on its first call only', async (t) => {
  const fake = await startFakeAzureEvents({ firstCallDelayMs: 600 });
  t.teardown(() => fake.close());
  const get = () => metadataRequest({ method: 'GET', url: `${fake.baseUrl}/metadata/scheduledevents?api-version=2020-07-01`, headers: { Metadata: 'true' }, timeoutMs: 5_000 });
  let started = Date.now();
  t.equal((await get()).status, 200);
  t.ok(Date.now() - started >= 550, 'slow first call');
  started = Date.now();
  await get();
  t.ok(Date.now() - started < 300, 'quick after');
});

void t.test('polls every pollMs with Metadata: true and the api-version', async (t) => {
  const { fake, notices, logs } = await setup(t, { pollMs: 200 });
  await sleep(1_100);
  const polls = gets(fake);
  t.ok(polls.length >= 3 && polls.length <= 8, `about one poll per pollMs (${polls.length})`);
  t.ok(polls.every((r) => r.status === 200 && r.query['api-version'] === '2020-07-01'), 'each one accepted, with the api-version');
  t.same(notices, []);
  t.same(warnings(logs), []);
});

void t.test('a Preempt event for this VM: one notice, id the EventId, deadline its NotBefore', async (t) => {
  const { fake, notices } = await setup(t, { vmName: 'vm1' });
  await waitFor('a first poll', () => gets(fake).length > 0);
  const notBeforeMs = Math.floor(Date.now() / 1000) * 1000 + 30_000;
  const event = fake.addEvent({ EventType: 'Preempt', Resources: ['vm1'], NotBefore: rfc1123(notBeforeMs) });
  await waitFor('the notice', () => notices.length === 1);
  const notice = notices[0]!;
  t.same({ ...notice, receivedMs: 0 }, { id: event.EventId, source: 'azure', kind: 'Preempt', deadlineMs: notBeforeMs, receivedMs: 0, advisory: false });
  t.ok(Math.abs(notice.receivedMs - Date.now()) < 1_000);

  const polled = gets(fake).length;
  await waitFor('more polls of the same document', () => gets(fake).length >= polled + 3);
  fake.touch();
  await waitFor('polls of a new incarnation', () => gets(fake).length >= polled + 6);
  t.equal(notices.length, 1, 'the same event under the same or a new incarnation is the same notice');
});

void t.test('Terminate drains too; Reboot, Redeploy and Freeze do not; events for another VM do not', async (t) => {
  const { fake, notices, logs } = await setup(t, { vmName: 'VM1' });
  fake.addEvent({ EventType: 'Reboot' });
  fake.addEvent({ EventType: 'Redeploy' });
  fake.addEvent({ EventType: 'Freeze' });
  fake.addEvent({ EventType: 'Preempt', Resources: ['vm2'] });
  await waitFor('two polls', () => gets(fake).filter((r) => r.status === 200).length >= 2);
  await sleep(300);
  t.same(notices, [], 'no notice for those');
  t.ok(logs.some((line) => /Azure Freeze event for this VM; no drain/.test(line.msg)), 'the non-draining ones are logged');
  const terminate = fake.addEvent({ EventType: 'Terminate', Resources: ['vm2', 'vm1'] });
  await waitFor('the terminate notice', () => notices.length === 1);
  t.match(notices[0], { id: terminate.EventId, kind: 'Terminate', source: 'azure', advisory: false });
});

void t.test('without vmName every event counts', async (t) => {
  const { fake, notices } = await setup(t);
  const event = fake.addEvent({ EventType: 'Preempt', Resources: ['some-other-name'] });
  await waitFor('the notice', () => notices.length === 1);
  t.equal(notices[0]!.id, event.EventId);
});

void t.test('an empty or unreadable NotBefore: the deadline is 30 s after the notice', async (t) => {
  const { fake, notices } = await setup(t);
  const started = fake.addEvent({ EventType: 'Preempt', EventStatus: 'Started', NotBefore: '' });
  const iso = fake.addEvent({ EventType: 'Preempt', NotBefore: '2022-04-11T22:26:58Z' });
  const junk = fake.addEvent({ EventType: 'Preempt', NotBefore: 'soon' });
  await waitFor('three notices', () => notices.length === 3);
  t.same(notices.map((n) => n.id).sort(), [started.EventId, iso.EventId, junk.EventId].sort());
  for (const notice of notices) t.equal(notice.deadlineMs, notice.receivedMs + AZURE_DEFAULT_WINDOW_MS, `${notice.id}: received + 30 s`);
});

void t.test('RFC 1123 dates are read exactly; anything else is undefined', (t) => {
  t.equal(parseRfc1123('Mon, 11 Apr 2022 22:26:58 GMT'), Date.UTC(2022, 3, 11, 22, 26, 58));
  t.equal(parseRfc1123(''), undefined);
  t.equal(parseRfc1123('2022-04-11T22:26:58Z'), undefined);
  t.equal(parseRfc1123('Mon, 11 Apr 2022 22:26:58'), undefined);
  t.equal(parseRfc1123('Mon, 41 Apr 2022 22:26:58 GMT'), undefined);
  t.end();
});

void t.test('acknowledge posts StartRequests with the EventId; a refusal or no answer is PREEMPTION_ACK_FAILED', async (t) => {
  const { fake, detector, notices } = await setup(t, { requestTimeoutMs: 300 });
  const event = fake.addEvent({ EventType: 'Preempt' });
  await waitFor('the notice', () => notices.length === 1);
  await detector.acknowledge(notices[0]!);
  const post = fake.requests.find((r) => r.method === 'POST');
  t.same(JSON.parse(post?.body ?? 'null'), { StartRequests: [{ EventId: event.EventId }] });
  t.equal(post?.query['api-version'], '2020-07-01');
  t.same(fake.acknowledgements, [event.EventId]);
  await waitFor('polls after the event started', () => gets(fake).length > 0 && fake.events()[0]?.EventStatus === 'Started');
  await sleep(300);
  t.equal(notices.length, 1, 'the started event is the same notice');

  fake.setFault('500', 1, 'POST');
  await rejectsCode(t, detector.acknowledge(notices[0]!), 'PREEMPTION_ACK_FAILED', /refused the acknowledgement of event .* HTTP 500.*goes ahead at the event's NotBefore anyway/);
  fake.setFault('hang', 1, 'POST');
  await rejectsCode(t, detector.acknowledge(notices[0]!), 'PREEMPTION_ACK_FAILED', /could not acknowledge Azure event .*timed out/);
  const before = fake.requests.length;
  await detector.acknowledge({ ...notices[0]!, source: 'gcp' });
  t.equal(fake.requests.filter((r) => r.method === 'POST').length, fake.requests.slice(0, before).filter((r) => r.method === 'POST').length, 'another cloud\'s notice: nothing to acknowledge');
});

void t.test('a slow first call is waited for: no warning, no overlapping polls', async (t) => {
  const { fake, notices, logs } = await setup(t, {
    requestTimeoutMs: 300,
    fake: { firstCallDelayMs: 1_500 },
    before: (fake) => fake.addEvent({ EventType: 'Preempt' }),
  });
  await sleep(1_200);
  t.equal(gets(fake).length, 1, 'one request while the first call is slow');
  await waitFor('the notice', () => notices.length === 1);
  t.same(warnings(logs), [], 'nothing to warn about');
});

void t.test('a first call that never answers: given up after firstCallTimeoutMs; later polls use requestTimeoutMs', async (t) => {
  const { fake, notices } = await setup(t, {
    firstCallTimeoutMs: 800,
    requestTimeoutMs: 300,
    before: (fake) => {
      fake.addEvent({ EventType: 'Preempt' });
      fake.setFault('hang', 2);
    },
  });
  await waitFor('the notice', () => notices.length === 1, 5_000);
  const [first, second, third] = gets(fake);
  t.ok(second!.at - first!.at >= 750, `the first call had its long timeout (${second!.at - first!.at} ms)`);
  t.ok(third!.at - second!.at < 700, `the second call only the short one (${third!.at - second!.at} ms)`);
  t.equal(notices.length, 1);
});

for (const fault of ['garbage', 'bad-shape', '500', 'hang'] as const) {
  void t.test(`${fault} from Scheduled Events: no throw, no notice, warnings rate-limited, recovery`, async (t) => {
    const { fake, notices, logs } = await setup(t, {
      firstCallTimeoutMs: 300,
      requestTimeoutMs: 200,
      before: (fake) => fake.setFault(fault),
    });
    await sleep(1_500);
    t.same(notices, [], 'no false notice');
    t.ok(gets(fake).length >= 3, `polling went on (${gets(fake).length} requests)`);
    const warned = warnings(logs);
    t.equal(warned.length, 1, 'one warning for all those failures');
    t.match(warned[0]?.msg, /polling on\. Preemption notices cannot be seen until Scheduled Events answers: check/);
    fake.setFault(undefined);
    const event = fake.addEvent({ EventType: 'Preempt' });
    await waitFor('the notice after recovery', () => notices.length === 1);
    t.equal(notices[0]!.id, event.EventId);
    t.ok(logs.some((line) => /answers again/.test(line.msg)), 'the recovery is logged');
  });
}

void t.test('a malformed event among good ones: the good ones still count', async (t) => {
  const { fake, notices, logs } = await setup(t);
  fake.addEvent({ EventType: 'Preempt', EventId: '' });
  const good = fake.addEvent({ EventType: 'Preempt' });
  await waitFor('the notice', () => notices.length === 1);
  t.equal(notices[0]!.id, good.EventId);
  t.equal(warnings(logs).length, 1, 'the malformed one is logged');
});

void t.test('close stops the polls, is safe twice; start after close is ignored', async (t) => {
  const { fake, detector, notices } = await setup(t);
  await waitFor('a poll', () => gets(fake).length > 0);
  await detector.close();
  await detector.close();
  const count = fake.requests.length;
  detector.start((notice) => notices.push(notice));
  fake.addEvent({ EventType: 'Preempt' });
  await sleep(400);
  t.equal(fake.requests.length, count, 'no request after close');
  t.same(notices, []);
});

void t.test('close during a slow first call returns at once', async (t) => {
  const { fake, detector } = await setup(t, { fake: { firstCallDelayMs: 10_000 } });
  await waitFor('the first call', () => gets(fake).length === 1);
  const started = Date.now();
  await detector.close();
  t.ok(Date.now() - started < 500);
});

void t.test('options are checked when the detector is made', (t) => {
  const base = { clock: systemClock, logger: createLogger({ level: 'silent' }) };
  throwsCode(t, () => new AzureDetector({ ...base, baseUrl: '169.254.169.254' }), 'CONFIG_INVALID', /not a URL/);
  throwsCode(t, () => new AzureDetector({ ...base, baseUrl: 'file:///x' }), 'CONFIG_INVALID', /http:\/\//);
  throwsCode(t, () => new AzureDetector({ ...base, baseUrl: 'http://169.254.169.254', pollMs: -5 }), 'CONFIG_INVALID', /pollMs/);
  throwsCode(t, () => new AzureDetector({ ...base, baseUrl: 'http://169.254.169.254', firstCallTimeoutMs: 0 }), 'CONFIG_INVALID', /firstCallTimeoutMs/);
  t.end();
});
