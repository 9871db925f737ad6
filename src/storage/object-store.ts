// The one interface to object storage. S3ObjectStore (src/storage/s3-object-store.ts)
// is its implementation, over @aws-sdk/client-s3; tests run it against a real
// S3-compatible server on loopback.
import type { Readable } from 'node:stream';

export interface ObjectInfo {
  key: string;
  size: number;
  etag: string;
  lastModifiedMs: number;
}

export interface MultipartUploadInfo {
  key: string;
  uploadId: string;
  initiatedMs: number;
}

export interface CompletedPart {
  partNumber: number;
  etag: string;
  /** Base64 SHA-256 of the part when it was sent with one (the upload then declares SHA-256 as its checksum). */
  checksumSha256?: string;
}

export interface GetOptions {
  /** Inclusive byte range. */
  range?: { start: number; end: number };
  /** The caller checks the bytes against its own digests: the SDK's response checksum validation is skipped. */
  verifiedByCaller?: boolean;
  signal?: AbortSignal;
}

export interface PutOptions {
  /** Fail with OBJECT_EXISTS when the key already exists (If-None-Match: *), where the endpoint supports it. */
  ifNoneMatch?: boolean;
  contentType?: string;
  /**
   * The body's SHA-256 (32 bytes), when the caller has it already: it is used
   * as the signed payload hash and as the flexible checksum, so that the body
   * is not hashed again.
   */
  sha256?: Buffer;
  signal?: AbortSignal;
}

export interface ObjectStore {
  /** Bucket and prefix this store is rooted at are part of every key the caller passes: keys are full object keys. */
  readonly bucket: string;

  /** Whether the endpoint honours If-None-Match on writes (probed once, then cached). */
  supportsConditionalWrites(): Promise<boolean>;

  putObject(key: string, body: Buffer | string, opts?: PutOptions): Promise<{ etag: string }>;
  getObject(key: string, opts?: GetOptions): Promise<Buffer>;
  getObjectStream(key: string, opts?: GetOptions): Promise<Readable>;
  /** undefined when the object does not exist. */
  headObject(key: string, opts?: { signal?: AbortSignal }): Promise<ObjectInfo | undefined>;
  /** Every object under the prefix (all pages), in key order. */
  listObjects(prefix: string, opts?: { signal?: AbortSignal }): Promise<ObjectInfo[]>;
  /** Deletes the keys (batched); a missing key is not an error. */
  deleteObjects(keys: string[], opts?: { signal?: AbortSignal }): Promise<void>;

  createMultipartUpload(key: string, opts?: { contentType?: string; signal?: AbortSignal }): Promise<string /* uploadId */>;
  /** `sha256`: the part's SHA-256 (32 bytes) when the caller has it (see PutOptions.sha256). */
  uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer, opts?: { sha256?: Buffer; signal?: AbortSignal }): Promise<CompletedPart>;
  completeMultipartUpload(key: string, uploadId: string, parts: CompletedPart[], opts?: { ifNoneMatch?: boolean; signal?: AbortSignal }): Promise<{ etag: string }>;
  abortMultipartUpload(key: string, uploadId: string, opts?: { signal?: AbortSignal }): Promise<void>;
  /** Multipart uploads in progress under the prefix. */
  listMultipartUploads(prefix: string, opts?: { signal?: AbortSignal }): Promise<MultipartUploadInfo[]>;
}

/** S3's multipart limits. */
export const MIN_PART_BYTES = 5 * 1024 * 1024;
export const MAX_PART_BYTES = 5 * 1024 * 1024 * 1024;
export const MAX_PARTS = 10_000;

/** The part size for a file of `size` bytes: at least `preferred`, and large enough for at most 10,000 parts. */
export function partSizeFor(size: number, preferred: number): number {
  const needed = Math.ceil(size / MAX_PARTS);
  const mib = 1024 * 1024;
  return Math.min(MAX_PART_BYTES, Math.max(MIN_PART_BYTES, preferred, Math.ceil(needed / mib) * mib));
}

/** Splits s3://bucket/some/prefix into its bucket and prefix (without trailing slash). */
export function parseS3Url(url: string): { bucket: string; prefix: string } | undefined {
  const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!match?.[1]) return undefined;
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  if (prefix.split('/').some((p) => p === '..' || p === '.')) return undefined;
  return { bucket: match[1], prefix };
}
