import t from 'tap';
import type { LogLine } from '../../src/engine/container-engine.ts';
import { LogLineSplitter, sinceParameter, timestampKey, timestampMs } from '../../src/engine/log-stream.ts';

function frame(stream: 1 | 2, payload: string): Buffer {
  const body = Buffer.from(payload, 'utf8');
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

const T1 = '2026-11-21T23:28:16.000000001Z';
const T2 = '2026-11-21T23:28:16.000000002Z';
const T3 = '2026-11-21T23:28:17.500000000Z';

const collect = (since?: string): { lines: LogLine[]; splitter: LogLineSplitter } => {
  const lines: LogLine[] = [];
  return { lines, splitter: new LogLineSplitter((line) => lines.push(line), since) };
};

const texts = (lines: LogLine[]): string[] => lines.map((l) => `${l.stream}@${l.timestamp}:${l.text}`);

void t.test('frames cut at every byte still give whole lines, streams apart', (t) => {
  const bytes = Buffer.concat([frame(1, `${T1} héllo\n`), frame(2, `${T2} oops\n`), frame(1, `${T3} bye\n`)]);
  const { lines, splitter } = collect();
  for (let i = 0; i < bytes.length; i++) splitter.push(bytes.subarray(i, i + 1));
  splitter.flush();
  t.same(texts(lines), [`stdout@${T1}:héllo`, `stderr@${T2}:oops`, `stdout@${T3}:bye`]);
  t.equal(lines[2]?.timeMs, Date.parse('2026-11-21T23:28:17.500Z'));
  t.end();
});

void t.test('partial messages are joined up to the newline and the last one is flushed at the end', (t) => {
  const { lines, splitter } = collect();
  splitter.push(Buffer.concat([frame(1, `${T1} first half, `), frame(2, `${T2} err\n`), frame(1, `${T2} second half\n`), frame(1, `${T3} tail`)]));
  t.same(texts(lines), [`stderr@${T2}:err`, `stdout@${T1}:first half, second half`]);
  splitter.flush();
  t.same(texts(lines).slice(2), [`stdout@${T3}:tail`]);
  t.end();
});

void t.test('several lines in one message become several lines; empty lines are kept', (t) => {
  const { lines, splitter } = collect();
  splitter.push(frame(1, `${T1} a\n\nb\n`));
  splitter.flush();
  t.same(lines.map((l) => l.text), ['a', '', 'b']);
  t.end();
});

void t.test('since drops lines at or before it, to the nanosecond', (t) => {
  const { lines, splitter } = collect(T1);
  splitter.push(Buffer.concat([frame(1, `${T1} old\n`), frame(1, `${T2} new\n`), frame(2, `${T3} newer\n`)]));
  t.same(lines.map((l) => l.text), ['new', 'newer']);
  t.end();
});

void t.test('timestamps convert to nanoseconds, milliseconds and the engine since parameter', (t) => {
  t.equal(timestampKey('1970-01-01T00:00:01.5Z'), 1_500_000_000n);
  t.equal(timestampKey('1970-01-01T01:00:00+01:00'), 0n);
  t.equal(timestampMs(T3), Date.parse('2026-11-21T23:28:17.500Z'));
  t.equal(sinceParameter('1970-01-01T00:00:02.000000042Z'), '2.000000042');
  t.throws(() => timestampKey('yesterday'), RangeError);
  t.end();
});
