// Fails when src/gen/ differs from what `npm run gen` would produce from proto/.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generate } from './gen-proto.ts';

const root = path.resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'stevedore-gen-'));
try {
  generate(tmp);
  try {
    execFileSync('diff', ['-r', tmp, path.join(root, 'src', 'gen')], { stdio: 'inherit' });
  } catch {
    console.error('src/gen/ is out of date with proto/: run `npm run gen` and commit the result.');
    process.exit(1);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
