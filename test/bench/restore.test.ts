// The smoke version of the restore benchmark: Stevedore, rclone and awscli each restore a small
// committed checkpoint from both endpoints (the benchmark checks the bytes). Never checks speed.
import t from 'tap';
import path from 'node:path';
import { restore } from '../../bench/restore.ts';

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
});
