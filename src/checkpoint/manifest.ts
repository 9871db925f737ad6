// The manifest: written last, it is what makes a checkpoint exist. A
// checkpoint exists for Stevedore if and only if its manifest exists.
//
// Layout under the job's destination s3://bucket/<prefix>/:
//   <prefix>/<checkpointId>/<relative path of each file>
//   <prefix>/<checkpointId>/_stevedore/manifest.json     (written last)
// <checkpointId> is the checkpoint's name (a directory such as step-000010, or a
// file such as epoch=3-step=100.ckpt); when a checkpoint of that name was already
// committed (a trainer that rewrites a directory in place), ".r2", ".r3", ...
// is appended. A file unchanged since an earlier committed checkpoint is not
// uploaded again: its entry's `key` points at the earlier object.
//
// Format v2 (written now) lists for each file the SHA-256 of each part as it
// was uploaded (`partSize`, `parts`): one digest per byte serves the manifest,
// the request signature and the server's checksum, and a restore verifies each
// ranged GET on its own. Format v1 (read and restored still) lists one
// SHA-256 of the whole file.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { StevedoreError } from '../util/errors.ts';

export const MANIFEST_FORMAT = 'stevedore.checkpoint.v2';
export const MANIFEST_FORMAT_V1 = 'stevedore.checkpoint.v1';
export type ManifestFormat = typeof MANIFEST_FORMAT | typeof MANIFEST_FORMAT_V1;
export const MANIFEST_SUFFIX = '_stevedore/manifest.json';

export interface ManifestFile {
  /** Path relative to the checkpoint ('' parts never; "/" separated). For a single-file checkpoint, its name. */
  path: string;
  size: number;
  /** Full object key holding the content (may belong to an earlier checkpoint). */
  key: string;
  /**
   * v2: bytes of each part (the last one may be shorter), and the lower-case hex SHA-256 of each part
   * in order: ceil(size / partSize) digests, one (of no bytes) for an empty file.
   */
  partSize?: number;
  parts?: string[];
  /** v1: lower-case hex SHA-256 of the whole content. */
  sha256?: string;
}

export interface Manifest {
  format: ManifestFormat;
  checkpointId: string;
  name: string;
  /** Parsed from the name when it carries one (step-000010, checkpoint-10, ...step=100...); null otherwise. */
  step: number | null;
  kind: 'directory' | 'file';
  jobId: string;
  attempt: number;
  nodeId: string;
  /** When the agent first saw the checkpoint, when its last byte was written, when it was committed (ms since epoch). */
  firstSeenMs: number;
  lastWriteMs: number;
  committedMs: number;
  totalBytes: number;
  /** Bytes actually uploaded for this checkpoint (the rest were reused). */
  uploadedBytes: number;
  files: ManifestFile[];
}

const HEX_SHA256 = /^[0-9a-f]{64}$/;

const fileSchema = z
  .object({
    path: z.string().min(1).max(4096).refine((p) => !p.startsWith('/') && !p.split('/').includes('..'), 'must be a relative path without ".."'),
    size: z.number().int().min(0),
    key: z.string().min(1).max(1024),
    partSize: z.number().int().min(1).optional(),
    parts: z.array(z.string().regex(HEX_SHA256)).max(100_000).optional(),
    sha256: z.string().regex(HEX_SHA256).optional(),
  })
  .refine((f) => (f.partSize === undefined) === (f.parts === undefined), 'partSize and parts go together')
  .refine((f) => f.partSize === undefined || f.parts?.length === partCount(f.size, f.partSize), 'parts must hold one digest per part of partSize bytes')
  .refine((f) => f.parts !== undefined || f.sha256 !== undefined, 'a file needs its part digests (parts) or its sha256');

const manifestSchema = z.object({
  format: z.enum([MANIFEST_FORMAT, MANIFEST_FORMAT_V1]),
  checkpointId: z.string().min(1).max(512),
  name: z.string().min(1).max(512),
  step: z.number().int().min(0).nullable(),
  kind: z.enum(['directory', 'file']),
  jobId: z.string(),
  attempt: z.number().int().min(0),
  nodeId: z.string(),
  firstSeenMs: z.number(),
  lastWriteMs: z.number(),
  committedMs: z.number(),
  totalBytes: z.number().int().min(0),
  uploadedBytes: z.number().int().min(0),
  files: z.array(fileSchema).max(100_000),
});

/** Parts of `partSize` bytes a file of `size` bytes is made of: at least one (an empty file is one empty part). */
export function partCount(size: number, partSize: number): number {
  return Math.max(1, Math.ceil(size / partSize));
}

/** The byte range (inclusive end) of part `index` (from 0); an empty range (end = start - 1) for an empty file. */
export function partRange(size: number, partSize: number, index: number): { start: number; end: number } {
  const start = index * partSize;
  return { start, end: Math.min(start + partSize, size) - 1 };
}

/** The v2 digests of `data` cut into parts of `partSize` bytes (tests and tools; the uploader hashes as it reads). */
export function partDigests(data: Buffer, partSize: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < partCount(data.length, partSize); i++) {
    const { start, end } = partRange(data.length, partSize, i);
    out.push(createHash('sha256').update(data.subarray(start, end + 1)).digest('hex'));
  }
  return out;
}

/** Whether `data` is the content a manifest entry lists (size, and part digests or, v1, the whole SHA-256). */
export function contentMatches(f: ManifestFile, data: Buffer): boolean {
  if (data.length !== f.size) return false;
  if (f.parts !== undefined && f.partSize !== undefined) {
    const digests = partDigests(data, f.partSize);
    return digests.length === f.parts.length && digests.every((d, i) => d === f.parts?.[i]);
  }
  return createHash('sha256').update(data).digest('hex') === f.sha256;
}

/**
 * What identifies a file's content for reuse and comparison: its size and
 * digests. A single part's digest is the whole file's SHA-256, so a one-part
 * v2 file and a v1 file with that SHA-256 are the same content; files of
 * several parts compare by part size and part digests (a v1 file of several
 * parts matches only another v1 file).
 */
export function contentId(f: Pick<ManifestFile, 'size' | 'partSize' | 'parts' | 'sha256'>): string {
  if (f.parts !== undefined && f.partSize !== undefined) {
    return f.parts.length === 1 ? `${f.size}:sha256:${f.parts[0]}` : `${f.size}:parts:${f.partSize}:${f.parts.join('')}`;
  }
  return `${f.size}:sha256:${f.sha256 ?? ''}`;
}

export function manifestKey(prefix: string, checkpointId: string): string {
  return joinKey(prefix, checkpointId, MANIFEST_SUFFIX);
}

export function fileKey(prefix: string, checkpointId: string, relPath: string): string {
  return joinKey(prefix, checkpointId, relPath);
}

export function joinKey(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}

/** The checkpoint id whose manifest a key is, or undefined. */
export function checkpointIdOfManifestKey(prefix: string, key: string): string | undefined {
  const head = prefix === '' ? '' : `${prefix}/`;
  if (!key.startsWith(head) || !key.endsWith(`/${MANIFEST_SUFFIX}`)) return undefined;
  const id = key.slice(head.length, key.length - MANIFEST_SUFFIX.length - 1);
  return id && !id.includes('/') ? id : undefined;
}

export function serializeManifest(m: Manifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

export function parseManifest(text: string, key: string): Manifest {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new StevedoreError('CHECKPOINT_CORRUPT', `manifest ${key} is not JSON`, { cause: err });
  }
  const result = manifestSchema.safeParse(doc);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new StevedoreError('CHECKPOINT_CORRUPT', `manifest ${key} is not a valid Stevedore manifest: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
  }
  return result.data;
}

/** The step a checkpoint name carries: step-000010, checkpoint-10, global_step10, epoch=3-step=100.ckpt. */
export function stepFromName(name: string): number | null {
  const patterns = [/(?:^|[^a-z])step[=_-]?(\d+)/i, /^checkpoint[-_](\d+)/i, /^ckpt[-_](\d+)/i, /^(\d+)$/];
  for (const re of patterns) {
    const m = re.exec(name);
    if (m?.[1]) return Number(m[1]);
  }
  return null;
}

/** Newest first: by step when both have one, else by commit time. */
export function compareNewestFirst(a: Manifest, b: Manifest): number {
  if (a.step !== null && b.step !== null && a.step !== b.step) return b.step - a.step;
  return b.committedMs - a.committedMs;
}
