import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { EventJournal, type JournalEvent } from '../../src/agent/event-journal.ts';

const moduleUrl = pathToFileURL(path.resolve(import.meta.dirname, '../../src/agent/event-journal.ts')).href;

function stateEvent(jobId: string, state = 'RUNNING'): Omit<JournalEvent, 'eventId'> {
  return { timeMs: 1_700_000_000_000, jobId, attempt: 1, body: { stateChanged: { state, message: '', gpuUuids: ['GPU-1'], containerId: 'c1' } } };
}

function logEvent(jobId: string, text: string): Omit<JournalEvent, 'eventId'> {
  return { timeMs: 1_700_000_000_000, jobId, attempt: 1, body: { logs: { lines: [{ timeMs: 1, stream: 'stdout', text }] } } };
}

function capturingLogger(): { logger: pino.Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => records.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, records };
}

const ids = (events: JournalEvent[]): number[] => events.map((e) => e.eventId);

void t.test('ids start at 1, grow by one and survive a restart', (t) => {
  const dir = t.testdir();
  const j = EventJournal.open(dir);
  t.equal(j.lastEventId, 0);
  t.equal(j.ackedEventId, 0);
  const first = j.append(stateEvent('job-a', 'ACCEPTED'));
  t.same(first, { eventId: 1, ...stateEvent('job-a', 'ACCEPTED') });
  j.append(stateEvent('job-a', 'RUNNING'));
  j.append({ timeMs: 5, jobId: 'job-a', attempt: 1, body: { exited: { state: 'FAILED', exitCode: 137, error: { code: 'X', message: 'y' }, oomKilled: true } } });
  t.same(ids(j.pending()), [1, 2, 3]);
  j.close();

  const again = EventJournal.open(dir);
  t.equal(again.lastEventId, 3);
  t.same(again.pending()[2], { eventId: 3, timeMs: 5, jobId: 'job-a', attempt: 1, body: { exited: { state: 'FAILED', exitCode: 137, error: { code: 'X', message: 'y' }, oomKilled: true } } });
  t.equal(again.append(stateEvent('job-b')).eventId, 4);
  again.close();
  t.end();
});

void t.test('acks are cumulative, persisted, and stale ones are ignored', (t) => {
  const dir = t.testdir();
  const j = EventJournal.open(dir);
  for (let i = 0; i < 5; i++) j.append(stateEvent(`job-${i}`));
  j.ack(3);
  t.equal(j.ackedEventId, 3);
  t.same(ids(j.pending()), [4, 5]);
  j.ack(2);
  j.ack(3);
  t.equal(j.ackedEventId, 3, 'an older ack does not move the mark back');
  t.same(ids(j.pending()), [4, 5]);
  j.close();

  const again = EventJournal.open(dir);
  t.equal(again.ackedEventId, 3);
  t.same(ids(again.pending()), [4, 5]);
  again.ack(5);
  t.same(again.pending(), []);
  again.close();
  t.same(EventJournal.open(dir).pending(), []);
  t.end();
});

void t.test('pendingBytes counts what waits for an ack', (t) => {
  const dir = t.testdir();
  const j = EventJournal.open(dir);
  t.equal(j.pendingBytes, 0);
  j.append(logEvent('job-a', 'x'.repeat(10_000)));
  j.append(stateEvent('job-a'));
  t.equal(j.pendingBytes, fs.statSync(path.join(dir, 'events.jsonl')).size, 'all of the file is pending');
  t.ok(j.pendingBytes > 10_000);
  j.ack(1);
  t.ok(j.pendingBytes > 0 && j.pendingBytes < 1000, `only the state event is left: ${j.pendingBytes}`);
  j.close();
  t.equal(EventJournal.open(dir).pendingBytes, j.pendingBytes, 'the same after a restart');
  t.end();
});

void t.test('appends are never refused, however much piles up', (t) => {
  const j = EventJournal.open(t.testdir(), { compactMinBytes: 1 });
  const big = 'y'.repeat(1024 * 1024);
  for (let i = 0; i < 70; i++) j.append(logEvent('job-a', big));
  t.ok(j.pendingBytes > 64 * 1024 * 1024);
  t.equal(j.append(stateEvent('job-a', 'FAILED')).eventId, 71);
  j.close();
  t.end();
});

void t.test('compaction drops acknowledged lines and keeps ids going up', (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'events.jsonl');
  const j = EventJournal.open(dir, { compactMinBytes: 1000 });
  for (let i = 1; i <= 20; i++) j.append(logEvent(`job-${i}`, 'z'.repeat(200)));
  const fullSize = fs.statSync(file).size;
  j.ack(15);
  const compacted = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as JournalEvent).eventId);
  t.same(compacted, [16, 17, 18, 19, 20], 'only unacknowledged events stay in the file');
  t.ok(fs.statSync(file).size < fullSize / 3);
  t.equal(j.append(stateEvent('job-x')).eventId, 21, 'appends continue after compaction');
  j.ack(21);
  t.equal(fs.statSync(file).size, 0, 'everything acknowledged: the file is empty');
  j.close();

  const again = EventJournal.open(dir, { compactMinBytes: 1000 });
  t.equal(again.lastEventId, 21, 'the last id is kept although no event is left');
  t.same(again.pending(), []);
  t.equal(again.append(stateEvent('job-y')).eventId, 22);
  again.close();
  t.same(fs.readdirSync(dir).sort(), ['ack', 'events.jsonl']);
  t.end();
});

void t.test('small acknowledged tails are not rewritten on every ack', (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'events.jsonl');
  const j = EventJournal.open(dir);
  for (let i = 0; i < 10; i++) j.append(stateEvent(`job-${i}`));
  const size = fs.statSync(file).size;
  j.ack(10);
  t.equal(fs.statSync(file).size, size, 'below compactMinBytes (1 MiB by default) the file stays');
  j.close();
  t.end();
});

void t.test('an ack beyond the last id (journal replaced) moves the id sequence past it', (t) => {
  const { logger, records } = capturingLogger();
  const dir = t.testdir();
  const j = EventJournal.open(dir, { logger });
  j.append(stateEvent('job-a'));
  j.ack(40);
  t.equal(j.lastEventId, 40);
  t.same(j.pending(), []);
  t.equal(j.append(stateEvent('job-a')).eventId, 41, 'the coordinator would drop ids it already holds');
  t.ok(records.some((r) => r.level === 40 && /never wrote/.test(String(r.msg))));
  j.close();
  t.equal(EventJournal.open(dir).lastEventId, 41);
  t.end();
});

void t.test('a torn last line is dropped with a warning and the journal goes on cleanly', (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'events.jsonl');
  const j = EventJournal.open(dir);
  j.append(stateEvent('job-a'));
  j.append(stateEvent('job-b'));
  j.close();
  const whole = `${JSON.stringify({ eventId: 3, ...stateEvent('job-c') })}\n`;
  fs.appendFileSync(file, whole.slice(0, 30));

  const { logger, records } = capturingLogger();
  const again = EventJournal.open(dir, { logger });
  t.same(ids(again.pending()), [1, 2]);
  t.equal(again.lastEventId, 2);
  t.match(records.find((r) => r.level === 40), { msg: /torn last line/, line: 3, file });
  t.equal(again.append(stateEvent('job-d')).eventId, 3);
  again.close();

  const third = EventJournal.open(dir);
  t.same(third.pending().map((e) => e.jobId), ['job-a', 'job-b', 'job-d'], 'no trace of the torn line is left');
  third.close();
  t.end();
});

void t.test('a damaged line before the last one is JOURNAL_CORRUPT naming the file and the line', (t) => {
  const dir = t.testdir();
  const file = path.join(dir, 'events.jsonl');
  const j = EventJournal.open(dir);
  for (let i = 0; i < 3; i++) j.append(stateEvent(`job-${i}`));
  j.close();
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines[1] = lines[1]!.slice(0, 20);
  fs.writeFileSync(file, lines.join('\n'));
  t.throws(() => EventJournal.open(dir), {
    code: 'JOURNAL_CORRUPT',
    message: new RegExp(`event journal ${file} is damaged: line 2 is not a journal event.*move the journal directory aside`),
  });
  t.end();
});

void t.test('ids that do not go up are JOURNAL_CORRUPT', (t) => {
  const dir = t.testdir();
  const line = (id: number): string => `${JSON.stringify({ eventId: id, ...stateEvent('job') })}\n`;
  fs.writeFileSync(path.join(dir, 'events.jsonl'), line(1) + line(2) + line(2) + line(3));
  t.throws(() => EventJournal.open(dir), { code: 'JOURNAL_CORRUPT', message: /line 3 has event id 2, not above the previous line's 2/ });
  t.end();
});

void t.test('a garbled ack file is JOURNAL_CORRUPT', (t) => {
  const dir = t.testdir({ ack: '{"ackedEventId": "x"' });
  t.throws(() => EventJournal.open(dir), { code: 'JOURNAL_CORRUPT', message: /ack is damaged/ });
  t.end();
});

void t.test('listeners hear each durable append until they unsubscribe', (t) => {
  const dir = t.testdir();
  const { logger, records } = capturingLogger();
  const j = EventJournal.open(dir, { logger });
  const heard: number[] = [];
  const off = j.onAppend((e) => {
    heard.push(e.eventId);
    const onDisk = fs.readFileSync(path.join(dir, 'events.jsonl'), 'utf8');
    t.ok(onDisk.includes(`"eventId":${e.eventId},`), `event ${e.eventId} is on disk when the listener runs`);
  });
  j.onAppend(() => {
    throw new Error('listener bug');
  });
  j.append(stateEvent('job-a'));
  j.append(stateEvent('job-a'));
  off();
  j.append(stateEvent('job-a'));
  t.same(heard, [1, 2]);
  t.equal(j.lastEventId, 3, 'a failing listener does not fail the append');
  t.ok(records.some((r) => r.level === 50 && r.msg === 'event journal listener failed'));
  j.close();
  t.end();
});

void t.test('close is safe twice; appending afterwards is an error', (t) => {
  const j = EventJournal.open(t.testdir());
  j.append(stateEvent('job-a'));
  j.close();
  j.close();
  t.throws(() => j.append(stateEvent('job-a')), { code: 'INTERNAL', message: /closed/ });
  t.end();
});

// A child process appends as fast as it can, printing each id once append() has
// returned, acknowledging now and then (which compacts); it is killed with
// SIGKILL at a random moment, several times over the same journal.
void t.test('kill -9 while appending never loses a returned event nor repeats an id', async (t) => {
  const dir = t.testdir();
  const childScript = `
import { EventJournal } from ${JSON.stringify(moduleUrl)};
const j = EventJournal.open(${JSON.stringify(dir)}, { compactMinBytes: 20000 });
for (;;) {
  const n = j.lastEventId + 1;
  const text = 'L'.repeat((n * 7919) % 30000);
  const e = j.append({ timeMs: n, jobId: 'job-' + n, attempt: 1, body: { logs: { lines: [{ timeMs: n, stream: 'stdout', text }] } } });
  process.stdout.write(e.eventId + '\\n');
  if (e.eventId % 37 === 0) j.ack(e.eventId - 5);
}`;
  let previousLast = 0;
  for (const stopAfter of [1, 40, 150, 400, 90, 700]) {
    const reported = await new Promise<number[]>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', childScript], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.split('\n').length - 1 >= stopAfter + Math.floor(Math.random() * 20)) child.kill('SIGKILL');
      });
      child.on('error', reject);
      child.on('close', (_code, signal) => {
        if (signal !== 'SIGKILL') reject(new Error(`child ended by itself (signal ${String(signal)})`));
        else resolve(out.split('\n').slice(0, -1).map(Number));
      });
    });
    t.ok(reported.length >= stopAfter, `round: the child reported ${reported.length} events before it was killed`);
    t.same(reported, reported.map((_, i) => previousLast + 1 + i), 'the child saw contiguous ids continuing the previous run');
    const maxReported = reported[reported.length - 1]!;

    const j = EventJournal.open(dir);
    t.ok(j.lastEventId === maxReported || j.lastEventId === maxReported + 1, `last id ${j.lastEventId} is the last returned one (${maxReported}) or the one being written`);
    const pending = j.pending();
    t.same(ids(pending), Array.from({ length: j.lastEventId - j.ackedEventId }, (_, i) => j.ackedEventId + 1 + i), 'pending ids run without gap or repeat from the ack to the last id');
    const intact = pending.every((e) => {
      const body = e.body as { logs: { lines: { text: string }[] } };
      return e.jobId === `job-${e.eventId}` && body.logs.lines[0]?.text.length === (e.eventId * 7919) % 30000;
    });
    t.ok(intact, 'every pending event is intact');
    const lost = reported.filter((id) => id > j.ackedEventId && !pending.some((e) => e.eventId === id));
    t.same(lost, [], 'no returned, unacknowledged event is missing');
    t.same(fs.readdirSync(dir).filter((f) => f !== 'ack' && f !== 'events.jsonl'), [], 'no temporary files are left');
    previousLast = j.lastEventId;
    j.close();
  }
});
