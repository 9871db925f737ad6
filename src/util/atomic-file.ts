// Files that are either entirely old or entirely new after a crash: the data
// goes to a temporary file in the same directory, is flushed, and is renamed
// (or linked) over the target; then the directory itself is flushed so that
// the new name survives a power loss.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

function writeTemp(file: string, data: string | Uint8Array, mode: number): string {
  const temp = tempNameFor(file);
  const fd = fs.openSync(temp, 'wx', mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  return temp;
}

/** Flushes a directory so that names created or renamed in it are durable. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replaces `file` with `data` atomically and durably: readers (and a restart
 * after a crash) see either the old content or the new, never a mix.
 * Synchronous on purpose: callers use it for small state files whose write
 * must be complete before they go on.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): void {
  const temp = writeTemp(file, data, mode);
  try {
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
  fsyncDir(path.dirname(file));
}

/**
 * Creates `file` with `data` atomically unless it already exists. Returns true
 * when this call created it, false when the file was already there (the
 * existing file is left untouched). Two processes racing to create the same
 * file cannot both win.
 */
export function createFileAtomic(file: string, data: string | Uint8Array, mode = 0o600): boolean {
  const temp = writeTemp(file, data, mode);
  try {
    fs.linkSync(temp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    fs.rmSync(temp, { force: true });
  }
  fsyncDir(path.dirname(file));
  return true;
}
