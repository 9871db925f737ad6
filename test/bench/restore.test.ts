// The smoke version of the restore benchmark: Stevedore, rclone and awscli each restore a small
// committed checkpoint from both endpoints (the benchmark checks the bytes). Never checks speed.
import t from 'tap';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { restore, restoreBound, sha256CpuSecondsPerGib } from '../../bench/restore.ts';
import { compiledCli } from '../../bench/stevedore-cli-path.ts';

void t.test('every subject restores the checkpoint from the sink and from s3rver, with sane figures', async (t) => {
  const dir = t.testdir({});
  const result = await restore({ smoke: true, workDir: path.join(dir, 'work'), plotDir: path.join(dir, 'bench'), log: (line) => t.comment(line) });
  t.equal(result.id, 'restore');
  t.same(result.cases.map((c) => c.name.replace(/ \(.*$/, '')), ['24 MiB from S3 sink', '24 MiB from s3rver']);
  for (const c of result.cases) {
    t.same(c.subjects.map((s) => s.name), ['stevedore', 'rclone', 'awscli'], `${c.name}: every subject ran`);
    for (const s of c.subjects) for (const f of s.figures) t.ok(Number.isFinite(f.median) && f.median > 0, `${c.name}, ${s.name}: ${f.name} ${f.median} ${f.unit}`);
    t.equal(c.targets.length, 1, 'the 1.5x target is checked');
  }
  t.match(result.notes, /What the target asks of a client that verifies, in this run \(SHA-256 measured at [\d.]+ CPU s per GiB/);
  t.match(result.notes, /- 24 MiB from S3 sink: 1\.5x \w+ means at most [\d.]+ s/);
});

void t.test('the bound on a verifying restore: the peer\'s CPU plus the SHA-256, over the cores', (t) => {
  const perGib = sha256CpuSecondsPerGib(randomBytes(1024 * 1024), 64);
  t.ok(perGib > 0.05 && perGib < 60, `SHA-256 costs ${perGib} CPU s per GiB here`);
  const cores = os.cpus().length;
  // 4 GiB, rclone 3 s with 1.25 CPU s per GiB, SHA-256 1 s per GiB: 9 CPU s.
  const tight = restoreBound('4 GiB', 4, 'rclone', 3, 1.25, 1);
  t.ok(tight.includes('at most 2.00 s') && tight.includes('is 9.00 CPU s'), tight);
  t.equal(tight.includes('no client that verifies every byte can meet it'), 9 / cores > 2, tight);
  const loose = restoreBound('4 GiB', 4, 'rclone', 60, 1.25, 1);
  t.ok(loose.endsWith('within what the target allows.'), loose);
  t.end();
});

void t.test('a full run measures the JavaScript build: the compiled benchmark CLI imports dist/ and runs', (t) => {
  const file = compiledCli((line) => t.comment(line));
  t.notOk(readFileSync(file, 'utf8').includes('../src/'), 'no import of the sources is left');
  let usage = '';
  try {
    execFileSync(process.execPath, [file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    usage = String((err as { stderr?: string }).stderr);
  }
  t.match(usage, /usage: node bench\/stevedore-cli\.ts upload\|restore/, 'it loads its modules from dist/ and answers');
  t.end();
});
