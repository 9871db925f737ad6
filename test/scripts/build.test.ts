// The build: src/ transpiled file for file into a directory that runs on its own; its age against the sources.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, utimesSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { build, isBuildCurrent, sourceFiles, STAMP_FILE } from '../../scripts/build.ts';

void t.test('transpiles every source file to an ES module with .js imports, a source map and a stamp', (t) => {
  const dir = t.testdir({
    src: {
      'a.ts': "import type { B } from './lib/b.ts';\nimport { b } from './lib/b.ts';\nexport interface A { b: B }\nexport const a: number = b + 1;\nexport const later = async (): Promise<number> => (await import('./lib/b.ts')).b;\n",
      lib: { 'b.ts': 'export type B = number;\nexport const b: B = 41;\n', 'types.d.ts': 'export {};\n' },
    },
    'package.json': '{"type": "module"}',
  });
  const result = build({ srcDir: path.join(dir, 'src'), outDir: path.join(dir, 'dist') });
  t.equal(result.files, 2, 'declaration files are not built');
  t.same(sourceFiles(path.join(dir, 'src')), ['a.ts', path.join('lib', 'b.ts')]);
  const a = readFileSync(path.join(dir, 'dist', 'a.js'), 'utf8');
  t.match(a, /from "\.\/lib\/b\.js"/, 'relative imports end in .js');
  t.match(a, /import\("\.\/lib\/b\.js"\)/, 'dynamic imports too');
  t.notMatch(a, /interface|: number/, 'types are gone');
  t.ok(existsSync(path.join(dir, 'dist', 'a.js.map')));
  t.same((JSON.parse(readFileSync(path.join(dir, 'dist', 'a.js.map'), 'utf8')) as { sources: string[] }).sources, ['../src/a.ts'], 'the map points at the source');
  t.ok(existsSync(path.join(dir, 'dist', STAMP_FILE)));
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(path.join(dir, 'dist', 'a.js'))}); console.log(m.a, await m.later());`], { encoding: 'utf8' });
  t.equal(run.stdout.trim(), '42 41', `the output runs (${run.stderr})`);
  t.end();
});

void t.test('a build is current until a source file or directory is newer than its stamp', (t) => {
  const dir = t.testdir({ src: { 'a.ts': 'export const a = 1;\n', sub: { 'b.ts': 'export const b = 2;\n' } } });
  const opts = { srcDir: path.join(dir, 'src'), outDir: path.join(dir, 'dist') };
  t.notOk(isBuildCurrent(opts), 'no build yet');
  const past = new Date(Date.now() - 60_000);
  for (const p of ['src/a.ts', 'src/sub/b.ts', 'src/sub', 'src']) utimesSync(path.join(dir, p), past, past);
  build(opts);
  t.ok(isBuildCurrent(opts));
  const stamp = path.join(dir, 'dist', STAMP_FILE);
  const earlier = new Date(Date.now() - 30_000);
  utimesSync(stamp, earlier, earlier);
  writeFileSync(path.join(dir, 'src/sub/b.ts'), 'export const b = 3;\n');
  t.notOk(isBuildCurrent(opts), 'an edited file');
  build(opts);
  t.ok(isBuildCurrent(opts), 'built again');
  utimesSync(stamp, earlier, earlier);
  mkdirSync(path.join(dir, 'src/new'));
  writeFileSync(path.join(dir, 'src/new/c.ts'), 'export const c = 3;\n');
  utimesSync(path.join(dir, 'src/new/c.ts'), past, past);
  t.notOk(isBuildCurrent(opts), 'an added file, even one with an old time');
  t.end();
});

void t.test('a syntax error names the file and line, and the previous build stays', (t) => {
  const dir = t.testdir({ src: { 'ok.ts': 'export const ok = 1;\n' } });
  const opts = { srcDir: path.join(dir, 'src'), outDir: path.join(dir, 'dist') };
  build(opts);
  writeFileSync(path.join(dir, 'src', 'bad.ts'), 'export const x = 1;\nexport const = ;\n');
  t.throws(() => build(opts), /src\/bad\.ts:2: .*run npm run build again/);
  t.ok(existsSync(path.join(dir, 'dist', 'ok.js')), 'the previous build is untouched');
  t.notOk(existsSync(path.join(dir, 'dist', 'bad.js')));
  t.end();
});
