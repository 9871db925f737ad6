// The smoke version of the upload benchmark: every subject (Stevedore and the three peers) uploads a
// small checkpoint to both endpoints and the record is complete. Never checks speed.
import t from 'tap';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { CEILING_SUBJECT } from '../../bench/ceiling.ts';
import { upload } from '../../bench/upload.ts';

void t.test('every subject uploads the checkpoint to the sink and to s3rver, with sane figures', async (t) => {
  const dir = t.testdir({});
  const result = await upload({ smoke: true, workDir: path.join(dir, 'work'), plotDir: path.join(dir, 'bench'), log: (line) => t.comment(line) });
  t.equal(result.id, 'upload');
  t.same(result.cases.map((c) => c.name.replace(/ \(.*$/, '')), ['24 MiB to S3 sink', '24 MiB to s3rver']);
  for (const c of result.cases) {
    const names = c.subjects.map((s) => s.name);
    t.same(names.filter((n) => n !== CEILING_SUBJECT), ['stevedore', 'rclone', 's3cmd', 'awscli'], `${c.name}: every subject ran`);
    for (const s of c.subjects) {
      for (const f of s.figures) t.ok(Number.isFinite(f.median) && f.median > 0, `${c.name}, ${s.name}: ${f.name} ${f.median} ${f.unit}`);
    }
    t.equal(c.ratios.filter((r) => r.figure === 'wall time').length, 3, 'a ratio to each peer');
    t.ok(c.targets.length >= 1, 'targets are checked');
  }
  t.ok(result.cases[0]?.subjects.some((s) => s.name === CEILING_SUBJECT), 'the raw loopback ceiling is measured on the sink');
  t.ok(existsSync(path.join(dir, result.plots?.[0] ?? 'none')), 'the plot is written');
  t.ok(!existsSync(path.join(dir, 'work', 'upload-data-25165824')), 'the data files are removed');
});
