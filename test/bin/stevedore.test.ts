// bin/stevedore.js runs the build (dist/) while it is newer than every source file, else the sources.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const BIN = path.resolve(import.meta.dirname, '..', '..', 'bin', 'stevedore.js');

/** A package laid out like this one, whose two mains say which one ran. */
function layout(dir: string): void {
  mkdirSync(path.join(dir, 'bin'));
  copyFileSync(BIN, path.join(dir, 'bin', 'stevedore.js'));
  writeFileSync(path.join(dir, 'package.json'), '{"type": "module"}');
  mkdirSync(path.join(dir, 'src', 'cli'), { recursive: true });
  writeFileSync(path.join(dir, 'src', 'cli', 'main.ts'), "export async function main(argv: string[]): Promise<number> { console.log('src', argv.join(' ')); return 3; }\n");
  mkdirSync(path.join(dir, 'dist', 'cli'), { recursive: true });
  writeFileSync(path.join(dir, 'dist', 'cli', 'main.js'), "export async function main(argv) { console.log('dist', argv.join(' ')); return 4; }\n");
}

function run(dir: string, env: NodeJS.ProcessEnv = {}): { out: string; status: number | null; err: string } {
  const r = spawnSync(process.execPath, [path.join(dir, 'bin', 'stevedore.js'), 'status', '--json'], { encoding: 'utf8', env: { ...process.env, STEVEDORE_RUN_FROM: '', ...env } });
  return { out: r.stdout.trim(), status: r.status, err: r.stderr };
}

function age(dir: string, rel: string, offsetMs: number): void {
  const when = new Date(Date.now() + offsetMs);
  utimesSync(path.join(dir, rel), when, when);
}

void t.test('the sources without a build, the build while it is current, the sources again after an edit', (t) => {
  const dir = t.testdir();
  layout(dir);
  t.same(run(dir), { out: 'src status --json', status: 3, err: '' }, 'no stamp: the sources, with the arguments and the exit code');
  for (const rel of ['src/cli/main.ts', 'src/cli', 'src']) age(dir, rel, -60_000);
  writeFileSync(path.join(dir, 'dist', 'BUILD_STAMP'), 'now\n');
  t.equal(run(dir).out, 'dist status --json', 'a stamp newer than the sources: the build');
  age(dir, 'src/cli/main.ts', 60_000);
  t.equal(run(dir).out, 'src status --json', 'an edited source: the sources');
  t.end();
});

void t.test('STEVEDORE_RUN_FROM forces one, and says what is wrong', (t) => {
  const dir = t.testdir();
  layout(dir);
  t.equal(run(dir, { STEVEDORE_RUN_FROM: 'dist' }).out, 'dist status --json', 'dist without a stamp');
  writeFileSync(path.join(dir, 'dist', 'BUILD_STAMP'), 'now\n');
  t.equal(run(dir, { STEVEDORE_RUN_FROM: 'src' }).out, 'src status --json');
  const bad = run(dir, { STEVEDORE_RUN_FROM: 'build' });
  t.equal(bad.status, 2);
  t.match(bad.err, /STEVEDORE_RUN_FROM must be src or dist, not "build"/);
  rmSync(path.join(dir, 'dist'), { recursive: true });
  const none = run(dir, { STEVEDORE_RUN_FROM: 'dist' });
  t.equal(none.status, 1);
  t.match(none.err, /STEVEDORE_RUN_FROM=dist but .*dist\/cli\/main\.js does not exist; run npm run build/);
  t.equal(run(dir).out, 'src status --json', 'no build: the sources');
  t.end();
});
