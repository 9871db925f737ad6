// Hostile metadata answers: generated bodies never make the notice parsers
// throw, garbage never becomes a notice, a valid notice is always read, and a
// huge body is cut by the size limit before anyone parses it.
import t from 'tap';
import fc from 'fast-check';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { believableDeadline, parseInstanceAction } from '../../src/preemption/aws-detector.ts';
import { asEvent, parseDocument, parseRfc1123 } from '../../src/preemption/azure-detector.ts';
import { MAX_METADATA_BODY_BYTES, metadataRequest } from '../../src/preemption/metadata-http.ts';
import { anyValue, fuzzParams, fuzzRuns, nastyString } from '../helpers/arbitraries.ts';

const RUNS = fuzzRuns(2000);
const NOW = 1_700_000_000_000;
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Any time from year 1970 to 9999, whole seconds. */
const anyTimeMs = fc.integer({ min: 0, max: 253_402_300_799 }).map((s) => s * 1000);
const rfc1123 = (ms: number): string => {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${p(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} GMT`;
};

/** Bodies a broken or hostile metadata service might send. */
const garbageBody = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  nastyString,
  anyValue.map((v) => JSON.stringify(v) ?? ''),
  fc.constantFrom('', 'null', '[]', '{}', '{"action":', 'TRUE', '<html>500</html>', '{"action":"terminate","time":"NaN"}', '{"action":"terminate","time":"2024-13-45T99:99:99Z"}', '{"action":"explode","time":"2024-01-01T00:00:00Z"}', '{"action":["terminate"],"time":"2024-01-01T00:00:00Z"}'),
);

void t.test('AWS instance-action: any body is parsed or refused with a reason, never thrown; valid notices always read', (t) => {
  let tried = 0;
  let notices = 0;
  fc.assert(fc.property(garbageBody, (body) => {
    tried++;
    const parsed = parseInstanceAction(body);
    if (typeof parsed === 'string') {
      if (parsed.length === 0) throw new Error('empty reason');
      return;
    }
    notices++;
    // Only a real notice shape gets here.
    const doc = JSON.parse(body) as { action: string; time: string };
    if (!['terminate', 'stop', 'hibernate'].includes(doc.action) || !Number.isFinite(parsed.timeMs)) throw new Error(`garbage became a notice: ${body}`);
  }), fuzzParams(RUNS));
  fc.assert(fc.property(fc.constantFrom('terminate', 'stop', 'hibernate'), anyTimeMs, fc.boolean(), fc.dictionary(fc.string({ maxLength: 5 }), anyValue, { maxKeys: 2 }), (action, ms, millis, extra) => {
    tried++;
    const time = millis ? new Date(ms).toISOString() : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
    const parsed = parseInstanceAction(JSON.stringify({ ...extra, action, time }));
    if (typeof parsed === 'string' || parsed.action !== action || parsed.timeMs !== ms) throw new Error(`valid notice ${action} ${time} not read: ${JSON.stringify(parsed)}`);
    // Far past or far future: the documented two minutes from now instead.
    const deadline = believableDeadline(parsed.timeMs, NOW);
    if (!(deadline > NOW && deadline <= NOW + 15 * 60_000)) throw new Error(`deadline ${deadline} for ${time} is not believable`);
  }), fuzzParams(RUNS));
  t.comment(`tried ${tried} AWS bodies, crashed 0, garbage read as a notice 0 (${notices} real notice shapes among the random ones)`);
  t.pass('no crash, no notice from garbage');
  t.end();
});

void t.test('Azure Scheduled Events: any body is a document or a reason; events without id or type are dropped; dates outside RFC 1123 are not read', (t) => {
  let tried = 0;
  fc.assert(fc.property(garbageBody, anyValue, nastyString, (body, rawEvent, date) => {
    tried++;
    const doc = parseDocument(body);
    if (typeof doc !== 'string' && (!Number.isInteger(doc.incarnation) || !Array.isArray(doc.events))) throw new Error(`not a document: ${body}`);
    const event = asEvent(rawEvent);
    if (event && (typeof event.EventId !== 'string' || event.EventId === '' || typeof event.EventType !== 'string' || !Array.isArray(event.Resources))) throw new Error(`garbage became an event: ${JSON.stringify(rawEvent)}`);
    const ms = parseRfc1123(date);
    if (ms !== undefined && !Number.isFinite(ms)) throw new Error(`date ${date} read as ${ms}`);
  }), fuzzParams(RUNS));
  fc.assert(fc.property(anyTimeMs, fc.integer({ min: 0, max: 2 ** 31 }), fc.constantFrom('Preempt', 'Terminate', 'Reboot'), (ms, incarnation, type) => {
    tried++;
    const body = JSON.stringify({ DocumentIncarnation: incarnation, Events: [{ EventId: 'E1', EventType: type, ResourceType: 'VirtualMachine', Resources: ['vm'], EventStatus: 'Scheduled', NotBefore: rfc1123(ms) }] });
    const doc = parseDocument(body);
    if (typeof doc === 'string') throw new Error(`valid document refused: ${doc}`);
    const event = asEvent(doc.events[0]);
    if (event?.EventType !== type) throw new Error('valid event not read');
    if (parseRfc1123(event.NotBefore) !== ms) throw new Error(`NotBefore ${event.NotBefore} not read as ${ms}`);
  }), fuzzParams(RUNS));
  t.comment(`tried ${tried} Azure bodies, crashed 0, garbage read as an event 0`);
  t.pass('no crash, no event from garbage');
  t.end();
});

void t.test(`a metadata body over ${MAX_METADATA_BODY_BYTES} bytes is refused; one at the limit is read`, async (t) => {
  let size = 0;
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('x'.repeat(size));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/latest/meta-data/spot/instance-action`;
  size = MAX_METADATA_BODY_BYTES;
  const atLimit = await metadataRequest({ method: 'GET', url, timeoutMs: 5000 });
  t.equal(atLimit.body.length, MAX_METADATA_BODY_BYTES, 'a body of exactly the limit is read');
  size = MAX_METADATA_BODY_BYTES + 1;
  await t.rejects(metadataRequest({ method: 'GET', url, timeoutMs: 5000 }), /body over 1048576 bytes; not a metadata service answer/, 'one byte more is refused');
  size = 64 * 1024 * 1024;
  const start = Date.now();
  await t.rejects(metadataRequest({ method: 'GET', url, timeoutMs: 10_000 }), /body over/, 'a 64 MiB body is cut off');
  t.ok(Date.now() - start < 5000, 'without reading it all');
});
