import t from 'tap';
import type { JobInfo } from '../../src/client/control-client.ts';
import {
  CLEAR_LINE, WatchRenderer, formatProgressLine, formatProgressShort, outputMode, useColor, type ProgressInfo,
} from '../../src/cli/progress.ts';

const MiB = 1024 * 1024;

function progress(p: Partial<ProgressInfo>): ProgressInfo {
  return { phase: 'pull', doneBytes: 0, totalBytes: 0, detail: 'trainer:1', updatedMs: 0, finished: false, ...p };
}

function job(state: string, p: ProgressInfo | null, attempt = 1): JobInfo {
  return {
    jobId: 'demo-1',
    state,
    message: state === 'succeeded' ? 'exit code 0' : '',
    attempts: [{ attempt, nodeId: 'node-a', state: state === 'succeeded' ? 'ATTEMPT_STATE_SUCCEEDED' : 'ATTEMPT_STATE_PULLING', progress: p }],
  } as unknown as JobInfo;
}

/** A pull of 290 MiB seen by polls once a second, then the restore, then the end. */
const SNAPSHOTS: [number, JobInfo][] = [
  [0, job('scheduled', null)],
  [1000, job('running', progress({ doneBytes: 0, totalBytes: 290 * MiB, updatedMs: 1000 }))],
  [2000, job('running', progress({ doneBytes: 12 * MiB, totalBytes: 290 * MiB, updatedMs: 2000 }))],
  [3000, job('running', progress({ doneBytes: 12 * MiB, totalBytes: 290 * MiB, updatedMs: 2000 }))],
  [4000, job('running', progress({ doneBytes: 180 * MiB, totalBytes: 290 * MiB, updatedMs: 16000 }))],
  [5000, job('running', progress({ doneBytes: 290 * MiB, totalBytes: 290 * MiB, updatedMs: 17000, finished: true }))],
  [6000, job('running', progress({ phase: 'restore', detail: 'step-000012', doneBytes: 512 * 1024, totalBytes: 3 * MiB, updatedMs: 18000 }))],
  [7000, job('running', progress({ phase: 'restore', detail: 'step-000012', doneBytes: 3 * MiB, totalBytes: 3 * MiB, updatedMs: 19000, finished: true }))],
];
const END = job('succeeded', progress({ phase: 'restore', detail: 'step-000012', doneBytes: 3 * MiB, totalBytes: 3 * MiB, updatedMs: 19000, finished: true }));

function render(r: WatchRenderer): string {
  return SNAPSHOTS.map(([now, j]) => r.frame(j, now)).join('') + r.end(END, 8000);
}

void t.test('one progress line', (t) => {
  t.equal(formatProgressLine(progress({ doneBytes: 180 * MiB, totalBytes: 290 * MiB })), 'pulling trainer:1  [#######.....]   62%  180/290 MiB');
  t.equal(formatProgressLine(progress({ doneBytes: 180 * MiB, totalBytes: 290 * MiB }), { rateBytesPerSec: 12 * MiB }), 'pulling trainer:1  [#######.....]   62%  180/290 MiB  12 MiB/s');
  t.equal(formatProgressLine(progress({ phase: 'input', detail: 'https://data/x.tar', doneBytes: 3.5 * MiB })), 'downloading https://data/x.tar  3.5 MiB', 'no total yet: no bar');
  t.equal(formatProgressLine(progress({ phase: 'upload', detail: 'step-8', doneBytes: 2 * MiB, totalBytes: 2 * MiB, finished: true })), 'uploaded step-8  [############]  100%  2.0/2.0 MiB');
  t.equal(formatProgressLine(progress({ doneBytes: MiB, totalBytes: 4 * MiB, finished: true })), 'pulling trainer:1  [###.........]   25%  1.0/4.0 MiB  stopped', 'ended short of its total');
  t.equal(formatProgressLine(progress({ doneBytes: MiB, totalBytes: 4 * MiB }), { color: true }), 'pulling trainer:1  [\x1b[32m###\x1b[0m.........]   25%  1.0/4.0 MiB');
  t.equal(formatProgressShort(progress({ doneBytes: MiB, totalBytes: 4 * MiB })), 'pull 25%');
  t.equal(formatProgressShort(progress({ doneBytes: MiB, totalBytes: 4 * MiB, finished: true })), '-');
  t.equal(formatProgressShort(null), '-');
  t.end();
});

void t.test('mode: json wins, then a terminal that is not dumb; colour obeys NO_COLOR', (t) => {
  t.equal(outputMode({ json: true, isTTY: true, env: {} }), 'json');
  t.equal(outputMode({ json: false, isTTY: true, env: { TERM: 'xterm' } }), 'tty');
  t.equal(outputMode({ json: false, isTTY: true, env: { TERM: 'dumb' } }), 'plain');
  t.equal(outputMode({ json: false, isTTY: false, env: { TERM: 'xterm' } }), 'plain');
  t.equal(useColor({ isTTY: true, env: { TERM: 'xterm' } }), true);
  t.equal(useColor({ isTTY: true, env: { TERM: 'xterm', NO_COLOR: '1' } }), false);
  t.equal(useColor({ isTTY: true, env: { TERM: 'dumb' } }), false);
  t.equal(useColor({ isTTY: false, env: {} }), false);
  t.end();
});

void t.test('tty: each operation redrawn in place, ended with a newline, then the final state', (t) => {
  const out = render(new WatchRenderer({ mode: 'tty' }));
  t.equal(
    out,
    `${CLEAR_LINE}pulling trainer:1  [............]    0%  0/290 MiB` +
      `${CLEAR_LINE}pulling trainer:1  [............]    4%  12/290 MiB  12 MiB/s` +
      `${CLEAR_LINE}pulling trainer:1  [#######.....]   62%  180/290 MiB  12 MiB/s` +
      `${CLEAR_LINE}pulled trainer:1  [############]  100%  290/290 MiB\n` +
      `${CLEAR_LINE}restoring step-000012  [##..........]   16%  0.5/3.0 MiB` +
      `${CLEAR_LINE}restored step-000012  [############]  100%  3.0/3.0 MiB\n` +
      'demo-1 succeeded: exit code 0\n',
  );
  t.end();
});

void t.test('tty: an operation replaced before its end keeps its last line', (t) => {
  const r = new WatchRenderer({ mode: 'tty' });
  const a = r.frame(job('running', progress({ doneBytes: 1, totalBytes: 4, updatedMs: 1 })), 0);
  const b = r.frame(job('running', progress({ phase: 'upload', detail: 'step-2', doneBytes: 1, totalBytes: 2, updatedMs: 2 })), 1000);
  const c = r.end(job('failed', progress({ phase: 'upload', detail: 'step-2', doneBytes: 1, totalBytes: 2, updatedMs: 2 })), 2000);
  t.equal(a + b + c, `${CLEAR_LINE}pulling trainer:1  [###.........]   25%  1/4 B\n${CLEAR_LINE}uploading step-2  [######......]   50%  1/2 B\ndemo-1 failed\n`);
  t.end();
});

void t.test('plain: whole lines without escape codes, at most one per operation every 5 s, and its end', (t) => {
  const out = render(new WatchRenderer({ mode: 'plain' }));
  t.equal(
    out,
    'pulling trainer:1  [............]    0%  0/290 MiB\n' +
      // 2000 and 4000 are within 5 s of the first line; 5000 is its end.
      'pulled trainer:1  [############]  100%  290/290 MiB\n' +
      'restoring step-000012  [##..........]   16%  0.5/3.0 MiB\n' +
      'restored step-000012  [############]  100%  3.0/3.0 MiB\n' +
      'demo-1 succeeded: exit code 0\n',
  );
  t.notOk(out.includes('\x1b') || out.includes('\r'), 'no escape codes, no carriage returns');
  const slow = new WatchRenderer({ mode: 'plain', plainIntervalMs: 1500 });
  t.match(render(slow), '0/290 MiB\npulling trainer:1  [#######.....]   62%  180/290 MiB  12 MiB/s\npulled', 'a shorter interval lets more lines through (the one at 2000 is within 1.5 s of the first)');
  t.end();
});

void t.test('json: one object per change, none for a poll that changed nothing', (t) => {
  const lines = render(new WatchRenderer({ mode: 'json' })).trimEnd().split('\n').map((l) => JSON.parse(l) as { timeMs: number; state: string; progress: ProgressInfo | null });
  t.same(lines.map((l) => l.timeMs), [0, 1000, 2000, 4000, 5000, 6000, 7000, 8000], 'the poll at 3000 changed nothing');
  t.same(lines[0], { timeMs: 0, jobId: 'demo-1', state: 'scheduled', message: '', attempt: 1, attemptState: 'pulling', nodeId: 'node-a', progress: null });
  t.same(lines[4]?.progress, { phase: 'pull', doneBytes: 290 * MiB, totalBytes: 290 * MiB, detail: 'trainer:1', updatedMs: 17000, finished: true });
  t.equal(lines.at(-1)?.state, 'succeeded');
  t.end();
});
