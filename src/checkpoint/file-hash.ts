// What the uploader knows about a local file: its identity at the moment its
// bytes were read (size, modification time, inode), and the SHA-256 of each
// of its parts.
//
// The signature is taken from the open file descriptor BEFORE the bytes are
// read: any write after it changes the modification time (or the size), so an
// unchanged signature later proves the bytes read are still the file's bytes.
// A file replaced by rename has another inode. The change time is part of it
// too: it cannot be set back (utimes sets it to now), so a rewrite whose
// modification time was restored afterwards still shows.
import { createHash } from 'node:crypto';
import type { BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';

export interface FileSignature {
  size: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  ino: bigint;
  dev: bigint;
}

export function signatureOf(st: BigIntStats): FileSignature {
  return { size: Number(st.size), mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, dev: st.dev };
}

export function sameSignature(a: FileSignature, b: FileSignature): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino && a.dev === b.dev;
}

/** The signature of a file now (follows no symlink of the last component either: lstat). */
export async function statSignature(absPath: string): Promise<FileSignature> {
  return signatureOf(await fs.lstat(absPath, { bigint: true }));
}

/** The modification time of a signature in milliseconds since the epoch. */
export function mtimeMsOf(sig: FileSignature): number {
  return Number(sig.mtimeNs / 1_000_000n);
}

export interface HashedFile {
  /** Lower-case hex SHA-256 of each part of `partSize` bytes, in order (one, of no bytes, for an empty file). */
  parts: string[];
  partSize: number;
  /** Bytes read and hashed (the file's size if it did not change during the read). */
  size: number;
  /** Taken before the first byte was read. */
  signature: FileSignature;
}

/**
 * Hashes a whole file part by part (the digests a manifest lists for it) with
 * a buffer of `bufferBytes` (default 1 MiB), reading sequentially until the
 * end of the file.
 */
export async function hashFile(absPath: string, opts: { partSize: number; bufferBytes?: number; signal?: AbortSignal }): Promise<HashedFile> {
  const handle = await fs.open(absPath, 'r');
  try {
    const signature = signatureOf(await handle.stat({ bigint: true }));
    const parts: string[] = [];
    let hash = createHash('sha256');
    let inPart = 0;
    const buffer = Buffer.allocUnsafe(Math.min(opts.bufferBytes ?? 1024 * 1024, opts.partSize));
    let size = 0;
    for (;;) {
      opts.signal?.throwIfAborted();
      // Never across a part boundary.
      const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, opts.partSize - inPart), size);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      size += bytesRead;
      inPart += bytesRead;
      if (inPart === opts.partSize) {
        parts.push(hash.digest('hex'));
        hash = createHash('sha256');
        inPart = 0;
      }
    }
    if (inPart > 0 || parts.length === 0) parts.push(hash.digest('hex'));
    return { parts, partSize: opts.partSize, size, signature };
  } finally {
    await handle.close();
  }
}

export interface HashedParts {
  /** Lower-case hex SHA-256 of each part asked for, in the order asked; undefined for a part the file ended within. */
  digests: (string | undefined)[];
  /** Taken before the first byte was read. */
  signature: FileSignature;
}

/**
 * Hashes some parts of a file (`parts`: 0-based part indexes; part i covers
 * bytes i * partSize up to the next part or `size`), with one buffer of
 * `bufferBytes` (default 1 MiB). A part the file ends within has no digest.
 */
export async function hashParts(absPath: string, opts: { partSize: number; size: number; parts: readonly number[]; bufferBytes?: number; signal?: AbortSignal }): Promise<HashedParts> {
  const handle = await fs.open(absPath, 'r');
  try {
    const signature = signatureOf(await handle.stat({ bigint: true }));
    const buffer = Buffer.allocUnsafe(Math.min(opts.bufferBytes ?? 1024 * 1024, opts.partSize));
    const digests: (string | undefined)[] = [];
    for (const i of opts.parts) {
      const start = i * opts.partSize;
      const end = Math.min(opts.size, start + opts.partSize);
      const hash = createHash('sha256');
      let pos = start;
      while (pos < end) {
        opts.signal?.throwIfAborted();
        const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, end - pos), pos);
        if (bytesRead === 0) break;
        hash.update(buffer.subarray(0, bytesRead));
        pos += bytesRead;
      }
      digests.push(pos === end ? hash.digest('hex') : undefined);
    }
    return { digests, signature };
  } finally {
    await handle.close();
  }
}

/**
 * Reads exactly `length` bytes at `position` into `buffer` (from offset 0).
 * Returns the signature taken before the read and the bytes actually read:
 * fewer than `length` means the file ended first.
 */
export async function readRange(absPath: string, buffer: Buffer, position: number, length: number): Promise<{ bytesRead: number; signature: FileSignature }> {
  const handle = await fs.open(absPath, 'r');
  try {
    const signature = signatureOf(await handle.stat({ bigint: true }));
    let done = 0;
    while (done < length) {
      const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return { bytesRead: done, signature };
  } finally {
    await handle.close();
  }
}
