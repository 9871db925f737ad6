// The checkpoints the upload and restore benchmarks move: a few large shards
// and many small files, like a sharded training checkpoint. Every file is a
// repeating 1 MiB random block read from its own rotation, so files differ
// from each other (no tool can deduplicate them), generating GiBs is as fast
// as the disk takes them, and the S3 sink can serve the same bytes back on a
// GET without storing them (SyntheticContent).
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { SyntheticContent } from './s3-sink.ts';

export const MIB = 1024 * 1024;
export const GIB = 1024 * MIB;
export const BLOCK_BYTES = MIB;

export interface CheckpointFile {
  /** "/"-separated path inside the checkpoint directory. */
  path: string;
  size: number;
  /** Offset into the block of the file's first byte. */
  rotation: number;
}

export interface CheckpointLayout {
  /** The checkpoint directory's name (a step, as trainers name them). */
  name: string;
  files: CheckpointFile[];
  totalBytes: number;
}

/**
 * `shards` large files plus `smallFiles` files of `smallBytes` each (in a
 * subdirectory), `totalBytes` in all: the shards take what the small files leave.
 */
export function checkpointLayout(totalBytes: number, opts: { shards: number; smallFiles: number; smallBytes: number; name?: string }): CheckpointLayout {
  const smallTotal = opts.smallFiles * opts.smallBytes;
  const shardBytes = Math.floor((totalBytes - smallTotal) / opts.shards);
  if (shardBytes <= 0) throw new Error(`a ${totalBytes}-byte checkpoint cannot hold ${opts.smallFiles} files of ${opts.smallBytes} bytes and ${opts.shards} shards`);
  const files: CheckpointFile[] = [];
  const rotation = (i: number): number => (i * 7919 + 13) % BLOCK_BYTES;
  for (let i = 0; i < opts.shards; i++) {
    const size = i === opts.shards - 1 ? totalBytes - smallTotal - shardBytes * (opts.shards - 1) : shardBytes;
    files.push({ path: `__${i}_0.distcp`, size, rotation: rotation(files.length) });
  }
  for (let i = 0; i < opts.smallFiles; i++) files.push({ path: `extra_state/rank_${String(i).padStart(4, '0')}.pt`, size: opts.smallBytes, rotation: rotation(files.length) });
  return { name: opts.name ?? 'step-000100', files, totalBytes };
}

/** A random block for one run: every subject of the run moves the same bytes. */
export function randomBlock(): Buffer {
  return crypto.randomBytes(BLOCK_BYTES);
}

/** Writes the checkpoint into `parent/<layout.name>` and returns that directory. */
export function writeCheckpoint(parent: string, layout: CheckpointLayout, block: Buffer): string {
  const dir = path.join(parent, layout.name);
  const doubled = Buffer.concat([block, block]);
  for (const f of layout.files) {
    const file = path.join(dir, ...f.path.split('/'));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const fd = fs.openSync(file, 'w');
    try {
      for (let pos = 0; pos < f.size; ) {
        const from = (f.rotation + pos) % block.length;
        const length = Math.min(block.length, f.size - pos);
        fs.writeSync(fd, doubled, from, length);
        pos += length;
      }
    } finally {
      fs.closeSync(fd);
    }
  }
  return dir;
}

/** What the S3 sink needs to serve the checkpoint's files back: any key ending in /<name>/<path> of a file. */
export function syntheticContent(layout: CheckpointLayout, block: Buffer): SyntheticContent {
  const byPath = new Map(layout.files.map((f) => [f.path, f.rotation]));
  const marker = `/${layout.name}/`;
  return {
    block,
    rotationOf(key) {
      const i = key.lastIndexOf(marker);
      return i < 0 ? undefined : byPath.get(key.slice(i + marker.length));
    },
  };
}

/** Total size of the regular files under a directory (recursively), and their count. */
export function treeSize(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    bytes += fs.statSync(path.join(entry.parentPath, entry.name)).size;
    files++;
  }
  return { bytes, files };
}
