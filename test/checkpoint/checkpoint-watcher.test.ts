import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import pino from 'pino';
import { CheckpointWatcher } from '../../src/checkpoint/checkpoint-watcher.ts';
import type * as WatcherModule from '../../src/checkpoint/checkpoint-watcher.ts';
import type { CheckpointCandidate, CommitRule } from '../../src/checkpoint/commit-rules.ts';
import { systemClock, type Clock, type Timer } from '../../src/util/clock.ts';
import { silentLogger, type Logger } from '../../src/util/logger.ts';
import { rejectsCode } from '../helpers/assert.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

/** Real timers; a time that the test can move forward (for quiescence). */
class OffsetClock implements Clock {
  private offset = 0;
  now(): number {
    return Date.now() + this.offset;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    return systemClock.setTimeout(fn, ms);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return systemClock.sleep(ms, signal);
  }
  advance(ms: number): void {
    this.offset += ms;
  }
}

/** Every result the watcher reported, in order; waits for a condition on the latest one. */
class Recorder {
  readonly results: CheckpointCandidate[][] = [];
  readonly listener = (candidates: CheckpointCandidate[]): void => {
    this.results.push(candidates);
  };

  get latest(): CheckpointCandidate[] {
    return this.results.at(-1) ?? [];
  }

  async until(what: string, check: (candidates: CheckpointCandidate[]) => boolean, timeoutMs = 15_000): Promise<CheckpointCandidate[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (check(this.latest)) return this.latest;
      if (Date.now() > end) throw new Error(`watcher did not report ${what} within ${timeoutMs} ms; latest: ${JSON.stringify(this.latest.map(brief))}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

function brief(c: CheckpointCandidate): unknown {
  return { name: c.name, complete: c.complete, files: c.files.map((f) => `${f.path}:${f.size}`) };
}

function find(candidates: CheckpointCandidate[], name: string): CheckpointCandidate | undefined {
  return candidates.find((c) => c.name === name);
}

function sizeOf(candidates: CheckpointCandidate[], name: string, file: string): number | undefined {
  return find(candidates, name)?.files.find((f) => f.path === file)?.size;
}

interface Setup {
  dir: string;
  watcher: CheckpointWatcher;
  seen: Recorder;
}

/**
 * A started watcher on a fresh directory. The periodic scan backs up missed
 * events as in production (where it runs every 2 s), so that a loaded machine
 * cannot make these tests flaky; the tests of the event path itself set a
 * period far longer than their time limit.
 */
async function setup(t: Test, rule: CommitRule, opts: { clock?: Clock; rescanMs?: number; logger?: Logger; dir?: string } = {}): Promise<Setup> {
  const dir = opts.dir ?? t.testdir();
  const watcher = new CheckpointWatcher({ dir, rule, clock: opts.clock ?? systemClock, logger: opts.logger ?? silentLogger(), rescanMs: opts.rescanMs ?? 1000 });
  const seen = new Recorder();
  watcher.onChange(seen.listener);
  t.teardown(() => watcher.close());
  await watcher.start();
  return { dir, watcher, seen };
}

function append(file: string, bytes: number, fill = 1): void {
  fs.appendFileSync(file, Buffer.alloc(bytes, fill));
}

void t.test('events alone report growth, new files and renames in a watched directory within moments', async (t) => {
  const dir = t.testdir({ 'step-000010': { '__0_0.distcp': '' } });
  const { seen } = await setup(t, { kind: 'dcp' }, { dir, rescanMs: 60_000 });
  const ckpt = path.join(dir, 'step-000010');
  t.same(seen.latest.map(brief), [{ name: 'step-000010', complete: false, files: ['__0_0.distcp:0'] }], 'the first scan finds what was there');
  for (let i = 1; i <= 3; i++) {
    append(path.join(ckpt, '__0_0.distcp'), 10_000);
    await seen.until(`${i * 10_000} bytes`, (c) => sizeOf(c, 'step-000010', '__0_0.distcp') === i * 10_000, 10_000);
  }
  fs.writeFileSync(path.join(ckpt, '.metadata.tmp'), 'meta');
  fs.renameSync(path.join(ckpt, '.metadata.tmp'), path.join(ckpt, '.metadata'));
  await seen.until('the commit', (c) => find(c, 'step-000010')?.complete === true, 10_000);
  t.pass('no periodic scan was needed');
});

void t.test('DCP: shards grow visibly, .metadata.tmp is left out, the rename to .metadata completes the checkpoint', async (t) => {
  const dir = path.join(t.testdir(), 'not', 'yet', 'there');
  const { seen } = await setup(t, { kind: 'dcp' }, { dir });
  t.ok(fs.statSync(dir).isDirectory(), 'start() creates the missing directory');
  t.same(seen.results, [[]], 'the first scan reports an empty directory');

  const ckpt = path.join(dir, 'step-000020');
  fs.mkdirSync(ckpt);
  fs.writeFileSync(path.join(dir, 'train.log'), 'a stray file\n');
  const shard = path.join(ckpt, '__0_0.distcp');
  for (let i = 1; i <= 4; i++) {
    append(shard, 64 * 1024, i);
    await seen.until(`the shard at ${i * 64} KiB`, (c) => sizeOf(c, 'step-000020', '__0_0.distcp') === i * 64 * 1024);
  }
  append(path.join(ckpt, '__1_0.distcp'), 100_000);
  fs.writeFileSync(path.join(ckpt, '.metadata.tmp'), 'metadata');
  const beforeRename = await seen.until('the second shard', (c) => sizeOf(c, 'step-000020', '__1_0.distcp') === 100_000);
  t.equal(find(beforeRename, 'step-000020')?.complete, false, 'not complete before .metadata exists');

  fs.renameSync(path.join(ckpt, '.metadata.tmp'), path.join(ckpt, '.metadata'));
  const done = await seen.until('the complete checkpoint', (c) => find(c, 'step-000020')?.complete === true);
  const c = find(done, 'step-000020');
  t.equal(c?.step, 20);
  t.equal(c?.kind, 'directory');
  t.same(c?.files.map((f) => [f.path, f.size]), [['.metadata', 8], ['__0_0.distcp', 256 * 1024], ['__1_0.distcp', 100_000]]);
  t.equal(c?.files[0]?.absPath, path.join(ckpt, '.metadata'));
  t.same(done.map((x) => x.name), ['step-000020'], 'the stray file is not a candidate');

  const sizes = seen.results.map((r) => sizeOf(r, 'step-000020', '__0_0.distcp')).filter((s) => s !== undefined);
  t.same([...new Set(sizes)], [65536, 131072, 196608, 262144], 'every size of the growing shard was reported, in order');
  t.notOk(seen.results.some((r) => r.some((x) => x.files.some((f) => f.path === '.metadata.tmp'))), '.metadata.tmp was never part of a candidate');
  const firstComplete = seen.results.findIndex((r) => find(r, 'step-000020')?.complete === true);
  t.ok(seen.results.slice(0, firstComplete).every((r) => sizeOf(r, 'step-000020', '.metadata') === undefined), 'never complete before .metadata appeared');
});

void t.test('Orbax: the temporary directory is never reported; the renamed directory is complete at once', async (t) => {
  const { dir, seen } = await setup(t, { kind: 'orbax' });
  const tmp = path.join(dir, '300.orbax-checkpoint-tmp-1712345678');
  fs.mkdirSync(path.join(tmp, 'default'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'default', '_METADATA'), '{}');
  append(path.join(tmp, 'default', 'array.zarr'), 50_000);
  fs.renameSync(tmp, path.join(dir, '300'));
  const done = await seen.until('step 300', (c) => find(c, '300') !== undefined);
  t.same(done.map(brief), [{ name: '300', complete: true, files: ['default/_METADATA:2', 'default/array.zarr:50000'] }]);
  t.equal(done[0]?.step, 300);
  t.notOk(seen.results.some((r) => r.some((x) => x.name.includes('orbax-checkpoint-tmp'))), 'the tmp directory never appeared');
});

void t.test('Hugging Face: complete once trainer_state.json exists and nothing changed for the quiescence period', async (t) => {
  const clock = new OffsetClock();
  const { dir, watcher, seen } = await setup(t, { kind: 'hf', quiescenceMs: 30_000 }, { clock });
  const ckpt = path.join(dir, 'checkpoint-500');
  fs.mkdirSync(ckpt);
  append(path.join(ckpt, 'model.safetensors'), 200_000);
  append(path.join(ckpt, 'optimizer.pt'), 100_000);
  fs.mkdirSync(path.join(dir, 'runs'));
  fs.writeFileSync(path.join(dir, 'runs', 'events.out.tfevents'), 'x');
  await seen.until('the weights', (c) => sizeOf(c, 'checkpoint-500', 'optimizer.pt') === 100_000);

  clock.advance(60_000);
  t.equal(find(await watcher.scanNow(), 'checkpoint-500')?.complete, false, 'quiet but without trainer_state.json: not complete');

  fs.writeFileSync(path.join(ckpt, 'trainer_state.json'), '{"global_step": 500}');
  await seen.until('trainer_state.json', (c) => sizeOf(c, 'checkpoint-500', 'trainer_state.json') !== undefined);
  t.equal(find(seen.latest, 'checkpoint-500')?.complete, false, 'just written: not quiet yet');
  clock.advance(29_000);
  t.equal(find(await watcher.scanNow(), 'checkpoint-500')?.complete, false, '29 s of 30: not yet');
  clock.advance(1_500);
  await watcher.scanNow();
  const done = await seen.until('complete', (c) => find(c, 'checkpoint-500')?.complete === true);
  t.same(done.map((c) => c.name), ['checkpoint-500'], 'runs/ is not a checkpoint');
  t.same(find(done, 'checkpoint-500')?.files.map((f) => f.path), ['model.safetensors', 'optimizer.pt', 'trainer_state.json']);

  append(path.join(ckpt, 'rng_state.pth'), 1000);
  await seen.until('a late file, which makes it incomplete again', (c) => find(c, 'checkpoint-500')?.complete === false);
  clock.advance(31_000);
  t.equal(find(await watcher.scanNow(), 'checkpoint-500')?.complete, true, 'quiet again: complete');
});

void t.test('quiescence completes with time alone, without events or a periodic scan', async (t) => {
  const { dir, seen } = await setup(t, { kind: 'hf', quiescenceMs: 300 }, { rescanMs: 60_000 });
  const ckpt = path.join(dir, 'checkpoint-7');
  fs.mkdirSync(ckpt);
  fs.writeFileSync(path.join(ckpt, 'trainer_state.json'), '{}');
  await seen.until('the directory', (c) => find(c, 'checkpoint-7') !== undefined);
  const done = await seen.until('complete', (c) => find(c, 'checkpoint-7')?.complete === true);
  const c = find(done, 'checkpoint-7');
  t.ok(c && Date.now() - c.lastChangeMs >= 300, 'reported complete only after 300 ms without change');
});

void t.test('Lightning: a .ckpt file renamed into place is complete; temporary files and the last.ckpt symlink are not checkpoints', async (t) => {
  const { dir, watcher, seen } = await setup(t, { kind: 'lightning' });
  const name = 'epoch=3-step=100.ckpt';
  const tmp = path.join(dir, `${name}.tmp`);
  append(tmp, 64 * 1024);
  t.same(await watcher.scanNow(), [], 'the temporary file is not a checkpoint');
  append(tmp, 64 * 1024);
  fs.renameSync(tmp, path.join(dir, name));
  fs.symlinkSync(name, path.join(dir, 'last.ckpt'));
  fs.writeFileSync(path.join(dir, 'hparams.yaml'), 'lr: 0.1\n');
  const done = await seen.until('the checkpoint file', (c) => find(c, name) !== undefined);
  t.same(done.map(brief), [{ name, complete: true, files: [`${name}:131072`] }]);
  t.equal(done[0]?.kind, 'file');
  t.equal(done[0]?.step, 100);
  t.equal(done[0]?.files[0]?.absPath, path.join(dir, name));
  t.notOk(seen.results.some((r) => r.some((c) => c.name !== name)), 'nothing else was ever reported');
});

void t.test('marker: complete when the job writes the marker last', async (t) => {
  const { dir, seen } = await setup(t, { kind: 'marker', marker: 'COMMIT' });
  const ckpt = path.join(dir, 'ckpt-3');
  fs.mkdirSync(path.join(ckpt, 'shards'), { recursive: true });
  append(path.join(ckpt, 'shards', 'a.bin'), 1000);
  await seen.until('the shard', (c) => sizeOf(c, 'ckpt-3', 'shards/a.bin') === 1000);
  t.equal(find(seen.latest, 'ckpt-3')?.complete, false);
  fs.writeFileSync(path.join(ckpt, 'COMMIT'), '');
  const done = await seen.until('complete', (c) => find(c, 'ckpt-3')?.complete === true);
  t.same(find(done, 'ckpt-3')?.files.map((f) => f.path), ['COMMIT', 'shards/a.bin']);
});

void t.test('quiescence: a file and a directory, each complete once unchanged long enough', async (t) => {
  const clock = new OffsetClock();
  const { dir, watcher, seen } = await setup(t, { kind: 'quiescence', quiescenceMs: 10_000 }, { clock });
  append(path.join(dir, 'model.pt'), 5000);
  fs.mkdirSync(path.join(dir, 'snapshot'));
  append(path.join(dir, 'snapshot', 'w.bin'), 7000);
  fs.mkdirSync(path.join(dir, 'empty'));
  await seen.until('both', (c) => sizeOf(c, 'model.pt', 'model.pt') === 5000 && sizeOf(c, 'snapshot', 'w.bin') === 7000);
  t.notOk(seen.latest.some((c) => c.complete), 'nothing complete while fresh');
  clock.advance(10_000);
  const done = await watcher.scanNow();
  t.same(done.filter((c) => c.complete).map((c) => c.name).sort(), ['model.pt', 'snapshot']);
  t.equal(find(done, 'empty')?.complete, false, 'an empty directory is never complete');
});

void t.test('mkdir and write files within milliseconds, many times over, from another process: nothing is missed', async (t) => {
  const { dir, seen } = await setup(t, { kind: 'dcp' });
  const count = 40;
  const writer = `
    const fs = require('node:fs'); const path = require('node:path');
    const dir = process.argv[1];
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    (async () => {
      for (let i = 1; i <= ${count}; i++) {
        const d = path.join(dir, 'step-' + String(i).padStart(6, '0'));
        fs.mkdirSync(d);
        fs.writeFileSync(path.join(d, '__0_0.distcp'), Buffer.alloc(1000 + i));
        fs.mkdirSync(path.join(d, 'extra'));
        fs.writeFileSync(path.join(d, 'extra', 'rng.pt'), Buffer.alloc(i));
        fs.writeFileSync(path.join(d, '.metadata.tmp'), 'm' + i);
        fs.renameSync(path.join(d, '.metadata.tmp'), path.join(d, '.metadata'));
        if (i % 4 === 0) await sleep(Math.floor(Math.random() * 5));
      }
    })();
  `;
  const child = spawn(process.execPath, ['-e', writer, dir], { stdio: 'inherit' });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  t.equal(code, 0, 'the writer finished');
  const done = await seen.until(`${count} complete checkpoints`, (c) => c.length === count && c.every((x) => x.complete && x.files.length === 3));
  t.same(done.map((c) => c.step), Array.from({ length: count }, (_, i) => count - i), 'newest first');
  for (const c of done) {
    const i = c.step ?? 0;
    t.same(c.files.map((f) => [f.path, f.size]), [['.metadata', `m${i}`.length], ['__0_0.distcp', 1000 + i], ['extra/rng.pt', i]], `${c.name} has every file at its final size`);
  }
});

void t.test('a file rewritten in place is reported with its new size, mtime and inode', async (t) => {
  const { dir, seen } = await setup(t, { kind: 'marker', marker: 'COMMIT' });
  const ckpt = path.join(dir, 'step-1');
  fs.mkdirSync(ckpt);
  const weights = path.join(ckpt, 'weights.bin');
  fs.writeFileSync(weights, Buffer.alloc(4000, 1));
  fs.writeFileSync(path.join(ckpt, 'COMMIT'), '');
  const first = find(await seen.until('the first version', (c) => sizeOf(c, 'step-1', 'weights.bin') === 4000 && find(c, 'step-1')?.complete === true), 'step-1')?.files.find((f) => f.path === 'weights.bin');

  fs.writeFileSync(weights, Buffer.alloc(2500, 2));
  await seen.until('the shorter rewrite', (c) => sizeOf(c, 'step-1', 'weights.bin') === 2500);

  const stamp = new Date(Date.now() + 5000);
  fs.writeFileSync(weights, Buffer.alloc(2500, 3));
  fs.utimesSync(weights, stamp, stamp);
  const sameSize = await seen.until('the same-size rewrite', (c) => find(c, 'step-1')?.files.find((f) => f.path === 'weights.bin')?.mtimeMs === stamp.getTime());
  t.equal(sizeOf(sameSize, 'step-1', 'weights.bin'), 2500);

  const tmp = path.join(ckpt, 'weights.bin.new');
  fs.writeFileSync(tmp, Buffer.alloc(2500, 4));
  fs.utimesSync(tmp, stamp, stamp);
  fs.renameSync(tmp, weights);
  const replaced = await seen.until('the replaced file', (c) => {
    const f = find(c, 'step-1')?.files.find((x) => x.path === 'weights.bin');
    return f !== undefined && f.ino !== first?.ino && !find(c, 'step-1')?.files.some((x) => x.path === 'weights.bin.new');
  });
  t.equal(find(replaced, 'step-1')?.complete, true);
});

void t.test('deleting an entry removes it from the candidates', async (t) => {
  const { dir, seen } = await setup(t, { kind: 'dcp' });
  for (const step of ['step-1', 'step-2']) {
    fs.mkdirSync(path.join(dir, step));
    fs.writeFileSync(path.join(dir, step, '.metadata'), 'm');
  }
  await seen.until('two checkpoints', (c) => c.length === 2 && c.every((x) => x.files.length === 1));
  fs.rmSync(path.join(dir, 'step-1'), { recursive: true });
  const after = await seen.until('one checkpoint', (c) => c.length === 1);
  t.same(after.map((c) => c.name), ['step-2']);
  fs.rmSync(path.join(dir, 'step-2', '.metadata'));
  const emptied = await seen.until('the incomplete one', (c) => find(c, 'step-2')?.complete === false);
  t.same(find(emptied, 'step-2')?.files, [], 'a deleted file leaves the candidate');
});

void t.test('listeners hear only about changes; a late listener gets the next result; close is safe twice', async (t) => {
  const { dir, watcher, seen } = await setup(t, { kind: 'dcp' });
  fs.mkdirSync(path.join(dir, 'step-5'));
  fs.writeFileSync(path.join(dir, 'step-5', '.metadata'), 'm');
  await seen.until('the checkpoint', (c) => sizeOf(c, 'step-5', '.metadata') === 1);
  await new Promise((r) => setTimeout(r, 200)); // let the scans of the writes' events finish
  const before = seen.results.length;
  await watcher.scanNow();
  await watcher.scanNow();
  t.equal(seen.results.length, before, 'unchanged scans are not reported');

  const late = new Recorder();
  const off = watcher.onChange(late.listener);
  const now = await watcher.scanNow();
  t.same(late.results, [now], 'a new listener gets the next result even when unchanged');
  t.equal(seen.results.length, before, 'the others still hear nothing');
  off();
  fs.writeFileSync(path.join(dir, 'step-5', 'x'), 'x');
  await seen.until('the new file', (c) => find(c, 'step-5')?.files.length === 2);
  t.equal(late.results.length, 1, 'a removed listener hears nothing more');

  await watcher.close();
  await watcher.close();
  const count = seen.results.length;
  fs.mkdirSync(path.join(dir, 'step-6'));
  await new Promise((r) => setTimeout(r, 300));
  t.equal(seen.results.length, count, 'nothing is reported after close');
});

void t.test('a checkpoint path that is a file is refused with what to check', async (t) => {
  const dir = path.join(t.testdir({ 'ckpt': 'not a directory' }), 'ckpt');
  const watcher = new CheckpointWatcher({ dir, rule: { kind: 'dcp' }, clock: systemClock, logger: silentLogger() });
  t.teardown(() => watcher.close());
  await rejectsCode(t, watcher.start(), 'CHECKPOINT_DIR_UNUSABLE', /ckpt as the checkpoint directory.*Check that it is a directory/);
  await rejectsCode(t, watcher.scanNow(), 'CHECKPOINT_DIR_UNUSABLE', /cannot read the checkpoint directory/);
});

/** chokidar replaced by an emitter the test drives: for what a real inotify cannot be made to do on demand. */
class FakeChokidar extends EventEmitter {
  closed = false;
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

async function watcherWithFakeChokidar(t: Test, onWatch: (fake: FakeChokidar) => void): Promise<{ fake: FakeChokidar; Watcher: typeof CheckpointWatcher }> {
  const fake = new FakeChokidar();
  const { CheckpointWatcher: Watcher } = await t.mockImport<typeof WatcherModule>('../../src/checkpoint/checkpoint-watcher.ts', {
    chokidar: {
      watch: () => {
        setImmediate(() => onWatch(fake));
        return fake;
      },
    },
  });
  return { fake, Watcher };
}

async function manualSetup(t: Test): Promise<{ fake: FakeChokidar; clock: FakeClock; dir: string; watcher: CheckpointWatcher; seen: Recorder }> {
  const { fake, Watcher } = await watcherWithFakeChokidar(t, (f) => f.emit('ready'));
  const dir = t.testdir();
  const clock = new FakeClock(1_800_000_000_000);
  const watcher = new Watcher({ dir, rule: { kind: 'dcp' }, clock, logger: silentLogger(), rescanMs: 3_600_000 });
  t.teardown(() => watcher.close());
  const seen = new Recorder();
  watcher.onChange(seen.listener);
  await watcher.start();
  return { fake, clock, dir, watcher, seen };
}

void t.test('a new directory is scanned at once and again 100 ms later, for files the file watcher never reports', async (t) => {
  const { fake, clock, dir, seen } = await manualSetup(t);
  const ckpt = path.join(dir, 'step-4');
  fs.mkdirSync(ckpt);
  fake.emit('all', 'addDir', ckpt);
  await seen.until('the new, empty directory, at once', (c) => find(c, 'step-4')?.files.length === 0);
  fs.writeFileSync(path.join(ckpt, '.metadata'), 'm');
  clock.advance(99);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(find(seen.latest, 'step-4')?.complete, false, 'no scan before 100 ms');
  clock.advance(1);
  const done = await seen.until('the file written after the first scan, with no event for it', (c) => find(c, 'step-4')?.complete === true);
  t.same(find(done, 'step-4')?.files.map((f) => f.path), ['.metadata']);
});

void t.test('repeated events are harmless; a last write without an event of its own is found 100 ms after the last event', async (t) => {
  const { fake, clock, dir, seen } = await manualSetup(t);
  const ckpt = path.join(dir, 'step-8');
  const shard = path.join(ckpt, '__0_0.distcp');
  fs.mkdirSync(ckpt);
  append(shard, 100);
  fake.emit('all', 'add', shard);
  fake.emit('all', 'add', shard);
  fake.emit('all', 'change', shard);
  clock.advance(50);
  await seen.until('the first bytes, 50 ms after the first event', (c) => sizeOf(c, 'step-8', '__0_0.distcp') === 100);
  const reports = seen.results.length;

  clock.advance(30);
  append(shard, 100);
  fake.emit('all', 'change', shard); // at 80 ms: the trailing scan moves to 180 ms
  clock.advance(50);
  await seen.until('the second write', (c) => sizeOf(c, 'step-8', '__0_0.distcp') === 200);
  t.equal(seen.results.length, reports + 1, 'one report per scan that found a change');

  append(shard, 100); // chokidar dropped this write's event (its 50 ms throttle)
  clock.advance(49);
  await new Promise((r) => setTimeout(r, 50));
  t.equal(sizeOf(seen.latest, 'step-8', '__0_0.distcp'), 200, 'not yet: 99 ms after the last event');
  clock.advance(1);
  await seen.until('the write without an event', (c) => sizeOf(c, 'step-8', '__0_0.distcp') === 300);
});

void t.test('close() while start() waits for the file watcher ends the wait', async (t) => {
  let watching: () => void = () => undefined;
  const watchCalled = new Promise<void>((resolve) => {
    watching = resolve;
  });
  const { fake, Watcher } = await watcherWithFakeChokidar(t, () => watching());
  const watcher = new Watcher({ dir: t.testdir(), rule: { kind: 'dcp' }, clock: systemClock, logger: silentLogger() });
  const started = Date.now();
  const starting = watcher.start();
  await watchCalled;
  await watcher.close();
  await starting;
  t.ok(Date.now() - started < 5000, 'start() returned without waiting for its 10 s limit');
  t.ok(fake.closed, 'the file watcher is closed');
});

void t.test('close() before start() got to watching: nothing is watched', async (t) => {
  let watchCalls = 0;
  const { Watcher } = await watcherWithFakeChokidar(t, () => {
    watchCalls++;
  });
  const watcher = new Watcher({ dir: t.testdir(), rule: { kind: 'dcp' }, clock: systemClock, logger: silentLogger() });
  const starting = watcher.start();
  await watcher.close();
  await starting;
  await new Promise((r) => setImmediate(r));
  t.equal(watchCalls, 0);
});

void t.test('out of inotify watches: a warning that names fs.inotify.max_user_watches, and periodic scans carry on', async (t) => {
  const enospc = (): Error => Object.assign(new Error('ENOSPC: System limit for number of file watchers reached'), { code: 'ENOSPC' });
  const { fake, Watcher } = await watcherWithFakeChokidar(t, (f) => {
    f.emit('error', enospc());
    f.emit('error', enospc());
    f.emit('ready');
  });
  const lines: { level: number; msg: string }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
      done();
    },
  });
  const dir = t.testdir();
  const watcher = new Watcher({ dir, rule: { kind: 'dcp' }, clock: systemClock, logger: pino({ level: 'info' }, sink), rescanMs: 100 });
  t.teardown(() => watcher.close());
  const seen = new Recorder();
  watcher.onChange(seen.listener);
  await watcher.start();
  fs.mkdirSync(path.join(dir, 'step-9'));
  fs.writeFileSync(path.join(dir, 'step-9', '.metadata'), 'm');
  await seen.until('the checkpoint, by periodic scans alone', (c) => find(c, 'step-9')?.complete === true);
  const warnings = lines.filter((l) => l.level === 40 && l.msg.includes('fs.inotify.max_user_watches'));
  t.equal(warnings.length, 1, 'one warning, not one per error');
  await watcher.close();
  t.ok(fake.closed, 'the file watcher is closed');
});
