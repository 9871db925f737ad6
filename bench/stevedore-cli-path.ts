// Which file the upload and restore benchmarks run as Stevedore's side. A full
// run measures what production runs: the JavaScript build (dist/, the code the
// agent's unit starts), through a copy of bench/stevedore-cli.ts transpiled
// with its imports pointed at dist/. Run from the TypeScript sources instead,
// every process would first load Node's type stripper and strip each module
// (about 0.2 CPU s per process here), a cost no installed agent has. The smoke
// run keeps the sources, as the footprint benchmark does.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';
import { build, COMPILER_OPTIONS, DIST_DIR, isBuildCurrent } from '../scripts/build.ts';

export const CLI_SOURCE = path.join(path.dirname(fileURLToPath(import.meta.url)), 'stevedore-cli.ts');

let compiled: string | undefined;

/** bench/stevedore-cli.ts transpiled to JavaScript that imports dist/ (built first when it is older than src/). */
export function compiledCli(log: (line: string) => void): string {
  if (compiled !== undefined) return compiled;
  if (!isBuildCurrent()) {
    const built = build();
    log(`built dist/ (${built.files} files in ${built.ms} ms)`);
  }
  const distUrl = pathToFileURL(DIST_DIR).href;
  const source = readFileSync(CLI_SOURCE, 'utf8').replace(/(['"])\.\.\/src\/([^'"]+)\.ts\1/g, (_m, quote: string, rel: string) => `${quote}${distUrl}/${rel}.js${quote}`);
  if (source.includes('../src/')) throw new Error(`${CLI_SOURCE}: an import of ../src/ was not pointed at dist/; import modules as '../src/<path>.ts'`);
  // The build's own options, so that the copy is compiled as dist/ is; no source map beside a temporary file.
  const out = ts.transpileModule(source, { compilerOptions: { ...COMPILER_OPTIONS, sourceMap: false }, fileName: CLI_SOURCE });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stevedore-bench-cli-'));
  // .mjs: the temporary directory has no package.json saying "type": "module".
  compiled = path.join(dir, 'stevedore-cli.mjs');
  writeFileSync(compiled, out.outputText);
  return compiled;
}

/** The file to run: the compiled copy in a full run, the sources in a smoke run. */
export function stevedoreCli(smoke: boolean, log: (line: string) => void): string {
  return smoke ? CLI_SOURCE : compiledCli(log);
}
