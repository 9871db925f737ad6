import t from 'tap';
import { compareCandidatesNewestFirst, evaluate, ruleFromSpec, type CheckpointCandidate, type CommitRule, type LocalFile, type ScannedEntry } from '../../src/checkpoint/commit-rules.ts';
import { COMMIT_RULES, type CheckpointSpec } from '../../src/spec/job-spec.ts';

const T0 = 1_800_000_000_000;

function file(relPath: string, size = 10, mtimeMs = T0 - 60_000): LocalFile {
  return { path: relPath, absPath: `/ckpt/x/${relPath}`, size, mtimeMs, ino: relPath.length };
}

function dir(name: string, files: LocalFile[], seenChangeMs = T0 - 60_000): ScannedEntry {
  return { name, kind: 'directory', absPath: `/ckpt/${name}`, files, seenChangeMs };
}

function single(name: string, size = 100, mtimeMs = T0 - 60_000, kind: ScannedEntry['kind'] = 'file'): ScannedEntry {
  return { name, kind, absPath: `/ckpt/${name}`, files: kind === 'file' ? [{ path: name, absPath: `/ckpt/${name}`, size, mtimeMs, ino: 7 }] : [], seenChangeMs: mtimeMs };
}

function spec(over: Partial<CheckpointSpec>): CheckpointSpec {
  return {
    path: '/checkpoints', destination: 's3://bucket/run', endpoint: 'default', rule: 'dcp', marker: 'COMMIT',
    quiescenceSeconds: 10, keep: 3, keepEvery: 0, signal: 'SIGUSR1', resume: true, ...over,
  };
}

void t.test('every rule of the job spec compiles, with its marker and quiescence in milliseconds', (t) => {
  t.same(ruleFromSpec(spec({ rule: 'dcp' })), { kind: 'dcp' });
  t.same(ruleFromSpec(spec({ rule: 'orbax' })), { kind: 'orbax' });
  t.same(ruleFromSpec(spec({ rule: 'hf', quiescenceSeconds: 30 })), { kind: 'hf', quiescenceMs: 30_000 });
  t.same(ruleFromSpec(spec({ rule: 'lightning' })), { kind: 'lightning' });
  t.same(ruleFromSpec(spec({ rule: 'marker', marker: '_SUCCESS' })), { kind: 'marker', marker: '_SUCCESS' });
  t.same(ruleFromSpec(spec({ rule: 'quiescence', quiescenceSeconds: 5 })), { kind: 'quiescence', quiescenceMs: 5000 });
  for (const rule of COMMIT_RULES) t.equal(ruleFromSpec(spec({ rule })).kind, rule, `${rule} has a rule of its own`);
  t.end();
});

void t.test('DCP: complete once .metadata exists; .metadata.tmp is never part of the checkpoint', (t) => {
  const rule: CommitRule = { kind: 'dcp' };
  const shards = [file('__0_0.distcp', 1000), file('__1_0.distcp', 1000)];
  const writing = evaluate(rule, dir('step-000010', shards), T0);
  t.equal(writing?.complete, false, 'shards alone: not complete');
  t.equal(writing?.step, 10);
  t.equal(writing?.kind, 'directory');

  const renaming = evaluate(rule, dir('step-000010', [file('.metadata.tmp', 50), ...shards]), T0);
  t.equal(renaming?.complete, false, '.metadata.tmp is not .metadata');
  t.same(renaming?.files.map((f) => f.path), ['__0_0.distcp', '__1_0.distcp'], 'the temporary name is left out');

  const done = evaluate(rule, dir('step-000010', [file('.metadata', 50), ...shards]), T0);
  t.equal(done?.complete, true);
  t.same(done?.files.map((f) => f.path), ['.metadata', '__0_0.distcp', '__1_0.distcp']);

  t.equal(evaluate(rule, dir('step-000011', [file('sub/.metadata')]), T0)?.complete, false, '.metadata must be at the top of the directory');
  t.equal(evaluate(rule, single('notes.txt'), T0), undefined, 'a stray file is not a checkpoint');
  t.equal(evaluate(rule, dir('.restore-tmp', [file('.metadata')]), T0), undefined, 'a hidden directory is not a checkpoint');
  t.equal(evaluate(rule, single('latest', 0, T0, 'other'), T0), undefined, 'a symlink is not a checkpoint');
  t.end();
});

void t.test('Orbax: the temporary directory is not a checkpoint; the renamed one is complete', (t) => {
  const rule: CommitRule = { kind: 'orbax' };
  const items = [file('default/_METADATA'), file('default/d/0.zarr')];
  t.equal(evaluate(rule, dir('100.orbax-checkpoint-tmp-1712345678', items), T0), undefined);
  const done = evaluate(rule, dir('100', items), T0);
  t.equal(done?.complete, true);
  t.equal(done?.step, 100);
  t.equal(evaluate(rule, dir('step_200', [...items, file('commit_success.txt')]), T0)?.complete, true, 'commit_success.txt (non-atomic filesystems)');
  t.equal(evaluate(rule, single('stray.log'), T0), undefined);
  t.end();
});

void t.test('Hugging Face: checkpoint-N with trainer_state.json, unchanged for the quiescence period', (t) => {
  const rule: CommitRule = { kind: 'hf', quiescenceMs: 10_000 };
  const weights = file('model.safetensors', 5000, T0 - 60_000);
  const state = file('trainer_state.json', 300, T0 - 60_000);

  t.equal(evaluate(rule, dir('checkpoint-500', [weights], T0 - 60_000), T0)?.complete, false, 'no trainer_state.json: not complete, however quiet');
  t.equal(evaluate(rule, dir('checkpoint-500', [weights, state], T0 - 3000), T0)?.complete, false, 'a scan saw a change 3 s ago');
  const quiet = evaluate(rule, dir('checkpoint-500', [weights, state], T0 - 10_000), T0);
  t.equal(quiet?.complete, true, 'unchanged for 10 s');
  t.equal(quiet?.step, 500);
  t.equal(quiet?.lastChangeMs, T0 - 10_000);

  const freshMtime = evaluate(rule, dir('checkpoint-500', [weights, file('trainer_state.json', 300, T0 - 2000)], T0 - 60_000), T0);
  t.equal(freshMtime?.complete, false, 'a recent mtime holds quiescence back too');
  t.equal(freshMtime?.lastChangeMs, T0 - 2000, 'lastChangeMs is the later of mtime and the seen change');

  t.equal(evaluate(rule, dir('runs', [file('events.out.tfevents')]), T0), undefined, 'other directories of output_dir are not checkpoints');
  t.equal(evaluate(rule, dir('tmp-checkpoint-500', [weights, state]), T0), undefined);
  t.equal(evaluate(rule, single('config.json'), T0), undefined);
  t.end();
});

void t.test('an mtime ahead of the clock does not hold quiescence back forever', (t) => {
  const rule: CommitRule = { kind: 'quiescence', quiescenceMs: 1000 };
  const c = evaluate(rule, dir('run-a', [file('w.bin', 10, T0 + 3_600_000)], T0 - 5000), T0);
  t.equal(c?.lastChangeMs, T0 - 5000);
  t.equal(c?.complete, true);
  t.end();
});

void t.test('Lightning: a regular *.ckpt file; temporary names, hidden files, symlinks and directories are not checkpoints', (t) => {
  const rule: CommitRule = { kind: 'lightning' };
  const c = evaluate(rule, single('epoch=3-step=100.ckpt', 4096, T0 - 1000), T0);
  t.same(c, {
    name: 'epoch=3-step=100.ckpt', kind: 'file', step: 100, complete: true, lastChangeMs: T0 - 1000,
    files: [{ path: 'epoch=3-step=100.ckpt', absPath: '/ckpt/epoch=3-step=100.ckpt', size: 4096, mtimeMs: T0 - 1000, ino: 7 }],
  });
  t.equal(evaluate(rule, single('epoch=3-step=100.ckpt.tmp'), T0), undefined);
  t.equal(evaluate(rule, single('.epoch=3-step=100.ckpt'), T0), undefined);
  t.equal(evaluate(rule, single('last.ckpt', 0, T0, 'other'), T0), undefined, 'last.ckpt as a symlink');
  t.equal(evaluate(rule, dir('epoch=3.ckpt', [file('a')]), T0), undefined);
  t.equal(evaluate(rule, single('hparams.yaml'), T0), undefined);
  t.end();
});

void t.test('marker: complete when the marker file is at the top of the directory', (t) => {
  const rule: CommitRule = { kind: 'marker', marker: '_SUCCESS' };
  t.equal(evaluate(rule, dir('ckpt-7', [file('weights.bin')]), T0)?.complete, false);
  t.equal(evaluate(rule, dir('ckpt-7', [file('inner/_SUCCESS'), file('weights.bin')]), T0)?.complete, false, 'a nested marker does not count');
  const done = evaluate(rule, dir('ckpt-7', [file('_SUCCESS', 0), file('weights.bin')]), T0);
  t.equal(done?.complete, true);
  t.equal(done?.step, 7);
  t.same(done?.files.map((f) => f.path), ['_SUCCESS', 'weights.bin'], 'the marker is part of the checkpoint');
  t.equal(evaluate(rule, single('_SUCCESS'), T0), undefined, 'a file is not a directory checkpoint');
  t.end();
});

void t.test('quiescence: any file or directory, once unchanged long enough; an empty directory never', (t) => {
  const rule: CommitRule = { kind: 'quiescence', quiescenceMs: 5000 };
  t.equal(evaluate(rule, single('model.pt', 10, T0 - 4999), T0)?.complete, false);
  t.equal(evaluate(rule, single('model.pt', 10, T0 - 5000), T0)?.complete, true);
  t.equal(evaluate(rule, dir('snapshot', [file('a.bin')], T0 - 6000), T0)?.complete, true);
  t.equal(evaluate(rule, dir('snapshot', [file('a.bin')], T0 - 1000), T0)?.complete, false, 'a scan saw a change a second ago');
  const empty = evaluate(rule, dir('snapshot', [], T0 - 3_600_000), T0);
  t.equal(empty?.complete, false);
  t.equal(empty?.step, null);
  t.end();
});

void t.test('candidates sort newest first: by step, then by last change; steps before names without one', (t) => {
  const c = (name: string, step: number | null, lastChangeMs: number): CheckpointCandidate => ({ name, kind: 'directory', step, files: [], complete: true, lastChangeMs });
  const sorted = [c('b', null, 5), c('s10', 10, 1), c('s20-old', 20, 1), c('a', null, 9), c('s20-new', 20, 2), c('s2', 2, 100)].sort(compareCandidatesNewestFirst);
  t.same(sorted.map((x) => x.name), ['s20-new', 's20-old', 's10', 's2', 'a', 'b']);
  t.end();
});
