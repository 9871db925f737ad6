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
import { z } from 'zod';
import { StevedoreError } from '../util/errors.ts';

export const MANIFEST_FORMAT = 'stevedore.checkpoint.v1';
export const MANIFEST_SUFFIX = '_stevedore/manifest.json';

export interface ManifestFile {
  /** Path relative to the checkpoint ('' parts never; "/" separated). For a single-file checkpoint, its name. */
  path: string;
  size: number;
  /** Lower-case hex SHA-256 of the content. */
  sha256: string;
  /** Full object key holding the content (may belong to an earlier checkpoint). */
  key: string;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
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

const fileSchema = z.object({
  path: z.string().min(1).max(4096).refine((p) => !p.startsWith('/') && !p.split('/').includes('..'), 'must be a relative path without ".."'),
  size: z.number().int().min(0),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  key: z.string().min(1).max(1024),
});

const manifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
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
