// The smoke version of the time-to-durable benchmark: tiny checkpoints, sane figures (never speed).
import t from 'tap';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { timeToDurable } from '../../bench/time-to-durable.ts';
import { rcloneVersion } from '../../bench/time-to-durable-rclone.ts';

void t.test('Stevedore and the peers each make every checkpoint durable, and the figures say how long it took', async (t) => {
  const dir = t.testdir({});
  const result = await timeToDurable({ smoke: true, workDir: path.join(dir, 'work'), plotDir: path.join(dir, 'bench'), log: (line) => t.comment(line) });
  t.equal(result.id, 'time-to-durable');
  const c = result.cases[0];
  t.ok(c, 'one case');
  const names = c?.subjects.map((s) => s.name) ?? [];
  t.equal(names[0], 'stevedore');
  if (rcloneVersion()) t.same(names.slice(1), ['sync every 1 s', 'upload after close'], 'both peer strategies ran with rclone');
  for (const s of c?.subjects ?? []) {
    const ttd = s.figures.find((f) => f.name === 'time to durable');
    t.equal(ttd?.runs, 2, `${s.name}: two checkpoints`);
    t.ok((ttd?.median ?? 0) > 0 && (ttd?.max ?? Infinity) < 60, `${s.name}: a time to durable above 0 (${ttd?.median} s)`);
  }
  t.equal(c?.ratios.length, (names.length - 1) * 2, 'a ratio per peer and figure');
  t.equal(c?.targets.length, 1);
  for (const plot of result.plots ?? []) t.ok(existsSync(path.join(dir, plot)), `${plot} written`);
  const paced = result.cases[1];
  t.match(paced?.name, /at 32 MiB\/s$/, 'a second case with the writer paced below the link');
  const pacedOwn = paced?.subjects[0]?.figures.find((f) => f.name === 'time to durable');
  t.ok(pacedOwn && pacedOwn.runs === 1 && pacedOwn.median > 0, `stevedore made the paced checkpoint durable (${pacedOwn?.median} s)`);
  t.match(result.notes, /committed at \d+\.\d\d s/, 'the notes give Stevedore\'s tail step by step');
  t.match(result.notes, /size \/ ceiling - write time = \d+\.\d\d s/, 'and the lower bound of the disk-speed case');
});
