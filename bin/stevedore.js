#!/usr/bin/env node
// Entry point for `stevedore`. Runs the JavaScript build in dist/ (npm run build;
// installs and the container image have it) when it is there and newer than every
// file in src/, else the TypeScript sources directly (Node >= 22.18 strips types):
// a checkout being edited always runs what it holds. The build spares each process
// the type stripper (about 27 MB of resident memory).
//
// STEVEDORE_RUN_FROM=src or dist forces one (dist fails when there is no build).
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const srcMain = path.join(root, 'src', 'cli', 'main.ts');
const distMain = path.join(root, 'dist', 'cli', 'main.js');
const stamp = path.join(root, 'dist', 'BUILD_STAMP');

/** The newest modification time under `dir`, directories included (an added or renamed file changes its directory). */
function newestMs(dir) {
  let newest = statSync(dir).mtimeMs;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const child = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMs(child) : statSync(child).mtimeMs);
  }
  return newest;
}

function buildIsCurrent() {
  if (!existsSync(stamp) || !existsSync(distMain)) return false;
  if (!existsSync(srcMain)) return true;
  return statSync(stamp).mtimeMs >= newestMs(path.join(root, 'src'));
}

/** Which tree to run: 'dist' or 'src'. */
function runFrom(forced) {
  if (forced === 'src') return 'src';
  if (forced === 'dist') {
    if (!existsSync(distMain)) {
      process.stderr.write(`stevedore: STEVEDORE_RUN_FROM=dist but ${distMain} does not exist; run npm run build, or unset STEVEDORE_RUN_FROM\n`);
      process.exit(1);
    }
    return 'dist';
  }
  if (forced !== undefined && forced !== '') {
    process.stderr.write(`stevedore: STEVEDORE_RUN_FROM must be src or dist, not ${JSON.stringify(forced)}; unset it to choose by the build's age\n`);
    process.exit(2);
  }
  return buildIsCurrent() ? 'dist' : 'src';
}

const { main } = runFrom(process.env.STEVEDORE_RUN_FROM) === 'dist' ? await import('../dist/cli/main.js') : await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
