import t from 'tap';
import { AttemptProgress, PullProgressTotals, urlForDisplay } from '../../src/agent/attempt-progress.ts';
import type { AttemptProgressBody, JournalEvent } from '../../src/agent/event-journal.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

function setup(intervalMs?: number): { clock: FakeClock; progress: AttemptProgress; sent: (AttemptProgressBody & { atMs: number })[]; start: number } {
  const clock = new FakeClock();
  const sent: (AttemptProgressBody & { atMs: number })[] = [];
  const sink = {
    append(e: Omit<JournalEvent, 'eventId'>): void {
      if (!('progress' in e.body) || e.jobId !== 'job-1' || e.attempt !== 2) throw new Error(`not a progress event of job-1 attempt 2: ${JSON.stringify(e)}`);
      sent.push({ ...e.body.progress, atMs: e.timeMs });
    },
  };
  const progress = new AttemptProgress({ jobId: 'job-1', attempt: 2, sink, clock, ...(intervalMs !== undefined ? { intervalMs } : {}) });
  return { clock, progress, sent, start: clock.now() };
}

void t.test('callbacks every 10 ms give at most one event per second per phase, the newest snapshot, and the final one', (t) => {
  const { clock, progress, sent, start } = setup();
  const total = 300;
  for (let i = 1; i <= total; i++) {
    progress.update('pull', { doneBytes: i * 1000, totalBytes: total * 1000, detail: 'trainer:1' });
    clock.advance(10);
  }
  progress.finish('pull');
  const updates = sent.filter((e) => !e.finished);
  t.equal(sent.at(-1)?.finished, true, 'the last event is the final one');
  t.equal(sent.filter((e) => e.finished).length, 1, 'one final event');
  t.same(sent.at(-1), { phase: 'pull', doneBytes: 300_000, totalBytes: 300_000, detail: 'trainer:1', updatedMs: start + 3000, finished: true, atMs: start + 3000 });
  // 300 callbacks over 3 seconds: the first at once, then the newest one each second.
  t.same(updates.map((e) => e.atMs - start), [0, 1000, 2000, 3000]);
  t.same(updates.map((e) => e.doneBytes), [1000, 100_000, 200_000, 300_000], 'each event carries the newest snapshot at its time');
  for (let i = 1; i < updates.length; i++) t.ok((updates[i]?.atMs ?? 0) - (updates[i - 1]?.atMs ?? 0) >= 1000, 'at least a second apart');
  t.end();
});

void t.test('a kept snapshot goes out when the interval has passed, even without another callback', (t) => {
  const { clock, progress, sent, start } = setup();
  progress.update('upload', { doneBytes: 1, totalBytes: 10, detail: 'step-1' });
  progress.update('upload', { doneBytes: 5, totalBytes: 10, detail: 'step-1' });
  t.equal(sent.length, 1);
  clock.advance(999);
  t.equal(sent.length, 1, 'not before the interval');
  clock.advance(1);
  t.same(sent.map((e) => [e.doneBytes, e.atMs - start, e.finished]), [[1, 0, false], [5, 1000, false]]);
  t.end();
});

void t.test('the final event is never throttled away, and phases are throttled apart', (t) => {
  const { clock, progress, sent } = setup();
  progress.update('restore', { doneBytes: 1, totalBytes: 4, detail: 'step-8' });
  progress.update('input', { doneBytes: 7, totalBytes: 0, detail: 'https://data/x.tar' });
  progress.update('restore', { doneBytes: 3, totalBytes: 4, detail: 'step-8' });
  progress.finish('restore', { doneBytes: 4, totalBytes: 4, detail: 'step-8' });
  clock.advance(5000);
  t.same(sent.map((e) => [e.phase, e.doneBytes, e.finished]), [['restore', 1, false], ['input', 7, false], ['restore', 4, true]], 'the kept restore snapshot is replaced by the final one');
  progress.finish('pull');
  t.equal(sent.length, 3, 'a phase that reported nothing has nothing to finish');
  t.end();
});

void t.test('after close nothing is sent; a journal that refuses does not throw', (t) => {
  const clock = new FakeClock();
  const progress = new AttemptProgress({ jobId: 'j', attempt: 1, clock, sink: { append: () => { throw new Error('journal closed'); } } });
  t.doesNotThrow(() => progress.update('pull', { doneBytes: 1, totalBytes: 2, detail: 'x' }));
  progress.update('pull', { doneBytes: 2, totalBytes: 2, detail: 'x' });
  progress.close();
  t.doesNotThrow(() => clock.advance(2000));
  t.end();
});

void t.test('pull totals add up the layers that report their size', (t) => {
  const totals = new PullProgressTotals();
  t.same(totals.update({ status: 'Pulling from library/trainer', id: '1' }), { doneBytes: 0, totalBytes: 0 });
  totals.update({ status: 'Pulling fs layer', id: 'aaaaaaaaaaaa' });
  totals.update({ status: 'Pulling fs layer', id: 'bbbbbbbbbbbb' });
  t.same(totals.update({ status: 'Downloading', id: 'aaaaaaaaaaaa', current: 100, total: 1000 }), { doneBytes: 100, totalBytes: 1000 });
  t.same(totals.update({ status: 'Downloading', id: 'bbbbbbbbbbbb', current: 50, total: 500 }), { doneBytes: 150, totalBytes: 1500 });
  t.same(totals.update({ status: 'Download complete', id: 'bbbbbbbbbbbb' }), { doneBytes: 600, totalBytes: 1500 });
  t.same(totals.update({ status: 'Extracting', id: 'bbbbbbbbbbbb', current: 10, total: 500 }), { doneBytes: 600, totalBytes: 1500 }, 'extraction does not count twice');
  t.same(totals.update({ status: 'Downloading', id: 'aaaaaaaaaaaa', current: 1000, total: 1000 }), { doneBytes: 1500, totalBytes: 1500 });
  t.same(totals.update({ status: 'Digest: sha256:abc' }), { doneBytes: 1500, totalBytes: 1500 });
  t.end();
});

void t.test('input URLs are shown without credentials or query', (t) => {
  t.equal(urlForDisplay('https://user:secret@data.example/set.tar?X-Amz-Signature=abc'), 'https://data.example/set.tar');
  t.equal(urlForDisplay('s3://bucket/key.tar.gz'), 's3://bucket/key.tar.gz');
  t.end();
});
