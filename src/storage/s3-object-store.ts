// ObjectStore over @aws-sdk/client-s3, for AWS S3 and S3-compatible servers.
//
// Two layers of retries: the SDK's standard mode (maxAttempts of the endpoint,
// with backoff and jitter, on throttling, 5xx, resets and timeouts), and a few
// rounds of our own on top for what the SDK cannot retry (a response body cut
// off after the SDK returned it) or gave up on during a longer outage.
// Retried writes can meet their own earlier, unacknowledged success: a 412 or a
// NoSuchUpload after such a retry is resolved by looking at the object (see
// putObject and completeMultipartUpload).
//
// Every connection has a connection timeout and an idle timeout, so a stalled
// server costs one timeout and a retry, never a hang.
import crypto from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import type { CompletedPart, GetOptions, MultipartUploadInfo, ObjectInfo, ObjectStore, PutOptions } from './object-store.ts';
import { describeEndpoint, type S3EndpointConfig } from './s3-config.ts';
import { RangeReadUnsupported, S3RangeReader, type RangeDataHandler, type RangeReadable } from './s3-range-reader.ts';
import { Backoff } from '../util/backoff.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { StevedoreError, type ErrorCode } from '../util/errors.ts';
import { silentLogger, type Logger } from '../util/logger.ts';

export interface S3ObjectStoreOptions {
  bucket: string;
  config: S3EndpointConfig;
  logger?: Logger;
  /**
   * 'probe' (default): ask the endpoint once whether it honours If-None-Match on writes.
   * 'off': never rely on it; conditional writes check with HEAD first (not atomic).
   */
  conditionalWrites?: 'probe' | 'off';
  /** A connection that moves no byte either way for this long is dropped and the request retried. Default 30000 ms. */
  idleTimeoutMs?: number;
  /** Time to establish a connection. Default 10000 ms. */
  connectionTimeoutMs?: number;
  /** Rounds of our own retries over the SDK's, the first included. Default 3. */
  rounds?: number;
  clock?: Clock;
}

/** Where the conditional-write probe object goes; deleted right after. */
export const PROBE_PREFIX = '_stevedore/probe-';

const DELETE_BATCH = 1000;
/** Batches handed to readRange's receiver when the SDK reads. */
const RANGE_BATCH_BYTES = 1024 * 1024;
/** Success answers in a row the range reader cannot take (chunked, another range) before readRange stays with the SDK. */
const RANGE_READER_MISSES = 3;
/** Bodies up to this size are left to the SDK's own checksum when the caller gave no SHA-256 (the manifest, small objects). */
const SMALL_BODY_BYTES = 1024 * 1024;

function sha256Of(data: Buffer): Buffer {
  return crypto.createHash('sha256').update(data).digest();
}
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);
/** Connection failures the SDK has already retried: another round would only delay the answer. */
const NO_ROUND_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

interface SdkError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $response?: { statusCode?: number };
  cause?: unknown;
}

function sdkStatus(err: unknown): number | undefined {
  const e = err as SdkError | undefined;
  return e?.$metadata?.httpStatusCode ?? e?.$response?.statusCode;
}

function sdkName(err: unknown): string {
  const e = err as SdkError | undefined;
  return e?.Code ?? e?.name ?? '';
}

function networkCode(err: unknown): string | undefined {
  for (let e = err as SdkError | undefined, depth = 0; e && depth < 4; e = e.cause as SdkError | undefined, depth++) {
    if (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) return e.code;
    if (e.name === 'TimeoutError') return 'ETIMEDOUT';
    if (typeof e.message === 'string' && /socket hang up|aborted|premature close/i.test(e.message) && sdkStatus(e) === undefined) return 'ECONNRESET';
  }
  return undefined;
}

function isAbort(err: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true || (err as SdkError | undefined)?.name === 'AbortError';
}

/** The S3 multipart ETag: MD5 of the parts' binary MD5s, then "-" and the part count. */
export function compositeEtag(partEtags: string[]): string {
  const md5 = crypto.createHash('md5');
  for (const etag of partEtags) md5.update(Buffer.from(etag.replace(/"/g, ''), 'hex'));
  return `${md5.digest('hex')}-${partEtags.length}`;
}

/** What a build-step middleware sees of a request (enough to set a header). */
interface BuildArgs {
  input: Record<string, unknown>;
  request: unknown;
}

function headersOf(request: unknown): Record<string, string> | undefined {
  const headers = (request as { headers?: unknown } | null | undefined)?.headers;
  return typeof headers === 'object' && headers !== null ? (headers as Record<string, string>) : undefined;
}

/**
 * Gives the signer the body's SHA-256 computed by the caller: SigV4 takes a
 * present x-amz-content-sha256 header as the payload hash instead of hashing
 * the body again, and the server still checks the body against it.
 */
function withPayloadHash<C extends { middlewareStack: { add: (...args: never[]) => unknown } }>(command: C, sha256: Buffer): C {
  const hex = sha256.toString('hex');
  const add = command.middlewareStack.add as unknown as (mw: (next: (args: BuildArgs) => Promise<unknown>) => (args: BuildArgs) => Promise<unknown>, opts: { step: 'build'; name: string }) => void;
  add.call(command.middlewareStack, (next) => (args) => {
    const headers = headersOf(args.request);
    if (headers) headers['x-amz-content-sha256'] = hex;
    return next(args);
  }, { step: 'build', name: 'stevedorePayloadHash' });
  return command;
}

/** Skips the SDK's response checksum validation for one GET (the caller checks the bytes against its own digests). */
function withoutResponseValidation(command: GetObjectCommand): GetObjectCommand {
  command.middlewareStack.add((next) => (args) => {
    // The response middleware reads the same input object after the request returns.
    delete args.input.ChecksumMode;
    const headers = headersOf(args.request);
    if (headers) delete headers['x-amz-checksum-mode'];
    return next(args);
  }, { step: 'build', name: 'stevedoreNoResponseChecksum' });
  return command;
}

function unquote(etag: string | undefined): string {
  return (etag ?? '').replace(/"/g, '');
}

async function readAll(stream: Readable, expected: number | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  if (expected !== undefined && body.length !== expected) {
    throw Object.assign(new Error(`response body ended after ${body.length} of ${expected} bytes`), { code: 'ECONNRESET' });
  }
  return body;
}

export class S3ObjectStore implements ObjectStore, RangeReadable {
  readonly bucket: string;
  private readonly client: S3Client;
  /** Ranged reads of object bytes outside the SDK (see readRange); undefined where they are not used. */
  private rangeReader: S3RangeReader | undefined;
  /** Success answers in a row the range reader could not take; it is given up after RANGE_READER_MISSES. */
  private rangeMisses = 0;
  private readonly config: S3EndpointConfig;
  private readonly logger: Logger;
  private readonly mode: 'probe' | 'off';
  private readonly rounds: number;
  private readonly clock: Clock;
  private conditional: Promise<boolean> | undefined;
  /** Sizes of the parts this store uploaded, by upload, to recognise our own completed upload after a lost answer. */
  private readonly partSizes = new Map<string, Map<number, number>>();

  constructor(opts: S3ObjectStoreOptions) {
    this.bucket = opts.bucket;
    this.config = opts.config;
    this.logger = (opts.logger ?? silentLogger()).child({ bucket: opts.bucket, endpoint: describeEndpoint(opts.config) });
    this.mode = opts.conditionalWrites ?? 'probe';
    this.rounds = Math.max(1, opts.rounds ?? 3);
    this.clock = opts.clock ?? systemClock;
    const c = opts.config;
    this.client = new S3Client({
      region: c.region,
      ...(c.endpoint !== undefined ? { endpoint: c.endpoint } : {}),
      forcePathStyle: c.forcePathStyle,
      ...(c.accessKeyId !== undefined && c.secretAccessKey !== undefined ? { credentials: { accessKeyId: c.accessKeyId, secretAccessKey: c.secretAccessKey } } : {}),
      requestChecksumCalculation: c.checksumMode,
      responseChecksumValidation: c.checksumMode,
      retryMode: 'standard',
      maxAttempts: c.maxAttempts,
      requestHandler: {
        connectionTimeout: opts.connectionTimeoutMs ?? 10_000,
        socketTimeout: opts.idleTimeoutMs ?? 30_000,
      },
    });
    // AWS S3 itself in its standard partition, or the configured endpoint; other partitions (China, ISO) stay with the SDK.
    const origin = c.endpoint !== undefined ? new URL(c.endpoint) : /^(cn|us-iso)/.test(c.region) ? undefined : new URL(`https://s3.${c.region}.amazonaws.com`);
    const client = this.client;
    this.rangeReader = origin && (origin.protocol === 'http:' || origin.protocol === 'https:')
      ? new S3RangeReader({
        endpoint: origin,
        bucket: this.bucket,
        forcePathStyle: c.forcePathStyle,
        region: c.region,
        credentials: () => client.config.credentials(),
        connectionTimeoutMs: opts.connectionTimeoutMs ?? 10_000,
        idleTimeoutMs: opts.idleTimeoutMs ?? 30_000,
      })
      : undefined;
  }

  /** Closes the client's connections. */
  destroy(): void {
    this.rangeReader?.close();
    this.client.destroy();
  }

  private where(key: string | undefined): string {
    return key === undefined ? `bucket ${this.bucket}` : `s3://${this.bucket}/${key}`;
  }

  /** A StevedoreError for an SDK failure: the code, the object, and what to check. */
  private toError(err: unknown, op: string, key: string | undefined): StevedoreError {
    if (err instanceof StevedoreError) return err;
    const endpoint = describeEndpoint(this.config);
    const status = sdkStatus(err);
    const name = sdkName(err);
    const detail = `${name || 'error'}${status !== undefined ? ` ${status}` : ''}: ${(err as SdkError | undefined)?.message ?? String(err)}`;
    const make = (code: ErrorCode, message: string): StevedoreError => new StevedoreError(code, `${op} ${this.where(key)} at ${endpoint}: ${message} (${detail})`, { cause: err });
    if (name === 'NoSuchBucket') return make('OBJECT_STORE_FAILED', `the bucket ${this.bucket} does not exist; check the bucket in the S3 URL and that the endpoint is the right one`);
    if (name === 'NoSuchUpload') return make('OBJECT_NOT_FOUND', 'the multipart upload no longer exists (completed or aborted); start a new upload');
    if (status === 404 || name === 'NoSuchKey' || name === 'NotFound') return make('OBJECT_NOT_FOUND', 'no such object; check the key');
    if (status === 412 || status === 409 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict') {
      return make('OBJECT_EXISTS', 'the object already exists (or is being written by someone else); it was not overwritten');
    }
    if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
      return make('OBJECT_STORE_ACCESS_DENIED', `access denied; check the credentials of endpoint ${endpoint} and the bucket policy`);
    }
    const net = networkCode(err);
    if (net !== undefined && status === undefined) return make('OBJECT_STORE_UNREACHABLE', `cannot reach the endpoint (${net}); check the endpoint URL and the network`);
    return make('OBJECT_STORE_FAILED', status !== undefined && status >= 500 ? 'the server failed after retries; check the server\'s health, or try again later' : 'the request failed; check the bucket, the key and the endpoint settings');
  }

  /** Whether another round of our own may help. */
  private retryable(err: StevedoreError): boolean {
    const status = sdkStatus(err.cause);
    if (err.code === 'OBJECT_STORE_UNREACHABLE') return !NO_ROUND_CODES.has(networkCode(err.cause) ?? '');
    if (err.code !== 'OBJECT_STORE_FAILED') return false;
    if (sdkName(err.cause) === 'NoSuchBucket') return false;
    // 5xx, throttling, and answers the SDK could not parse (a cut-off body).
    return status === undefined || status >= 500 || status === 429 || status === 408;
  }

  /**
   * Runs `fn` with rounds of retries; `fn` gets the round number (1 first).
   * Aborts pass through unchanged.
   */
  private async run<T>(op: string, key: string | undefined, signal: AbortSignal | undefined, fn: (round: number) => Promise<T>): Promise<T> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 5000 });
    for (let round = 1; ; round++) {
      try {
        return await fn(round);
      } catch (raw) {
        if (isAbort(raw, signal)) throw raw;
        const err = this.toError(raw, op, key);
        if (round >= this.rounds || !this.retryable(err)) throw err;
        const delay = Math.max(50, backoff.next());
        this.logger.warn({ op, objectKey: key, round, delayMs: delay, err: err.message }, 'object store request failed; retrying');
        await this.clock.sleep(delay, signal);
      }
    }
  }

  supportsConditionalWrites(): Promise<boolean> {
    if (this.mode === 'off') return Promise.resolve(false);
    this.conditional ??= this.probe().catch((err: unknown) => {
      this.conditional = undefined; // probe again next time
      throw err;
    });
    return this.conditional;
  }

  private async probe(): Promise<boolean> {
    const key = `${PROBE_PREFIX}${crypto.randomBytes(8).toString('hex')}`;
    await this.run('probe conditional writes: put', key, undefined, () => this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: 'probe' })));
    let supported: boolean;
    try {
      await this.run('probe conditional writes: put if absent', key, undefined, () =>
        this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: 'probe', IfNoneMatch: '*' })),
      );
      supported = false;
    } catch (err) {
      if (!(err instanceof StevedoreError) || err.code !== 'OBJECT_EXISTS') throw err;
      supported = true;
    } finally {
      await this.deleteObjects([key]).catch((err: unknown) => this.logger.warn({ objectKey: key, err: (err as Error).message }, 'cannot delete the conditional-write probe object'));
    }
    this.logger.info({ conditionalWrites: supported }, supported ? 'endpoint honours If-None-Match on writes' : 'endpoint ignores If-None-Match on writes; checking with HEAD before conditional writes (not atomic)');
    return supported;
  }

  /**
   * Writes an object. With `ifNoneMatch`, fails with OBJECT_EXISTS when the key
   * exists: atomically where the endpoint honours If-None-Match, otherwise by a
   * HEAD first (a writer racing in between can still be overwritten). An
   * existing object with exactly this content (same MD5 ETag) counts as this
   * write: it is what a retry finds after the answer to a successful write was lost.
   */
  async putObject(key: string, body: Buffer | string, opts: PutOptions = {}): Promise<{ etag: string }> {
    const data = typeof body === 'string' ? Buffer.from(body) : body;
    // The MD5 serves the retry check of a conditional write (the ETag of a plain PUT is the MD5), and is the
    // body's check when the caller gave no SHA-256. Large bodies come with their SHA-256 and are not written conditionally.
    const digest = opts.ifNoneMatch === true || opts.sha256 === undefined ? crypto.createHash('md5').update(data).digest() : undefined;
    const md5 = digest?.toString('hex');
    const sha256 = opts.sha256 ?? (this.config.checksumMode === 'WHEN_SUPPORTED' && data.length > SMALL_BODY_BYTES ? sha256Of(data) : undefined);
    const conditional = opts.ifNoneMatch === true ? await this.supportsConditionalWrites() : false;
    const sameContent = async (): Promise<{ etag: string } | undefined> => {
      const existing = await this.headObject(key, { signal: opts.signal });
      return existing && md5 !== undefined && unquote(existing.etag) === md5 ? { etag: existing.etag } : undefined;
    };
    try {
      return await this.run('put', key, opts.signal, async () => {
        if (opts.ifNoneMatch === true && !conditional) {
          const existing = await this.headObject(key, { signal: opts.signal });
          if (existing) {
            if (unquote(existing.etag) === md5) return { etag: existing.etag };
            throw new StevedoreError('OBJECT_EXISTS', `put ${this.where(key)} at ${describeEndpoint(this.config)}: the object already exists; it was not overwritten`);
          }
        }
        const command = new PutObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Body: data,
          ContentLength: data.length,
          ...(digest !== undefined ? { ContentMD5: digest.toString('base64') } : {}),
          ...(sha256 !== undefined && this.config.checksumMode === 'WHEN_SUPPORTED' ? { ChecksumSHA256: sha256.toString('base64') } : {}),
          ...(opts.contentType !== undefined ? { ContentType: opts.contentType } : {}),
          ...(conditional ? { IfNoneMatch: '*' } : {}),
        });
        const out = await this.client.send(sha256 !== undefined ? withPayloadHash(command, sha256) : command, { abortSignal: opts.signal });
        return { etag: out.ETag ?? '' };
      });
    } catch (err) {
      if (err instanceof StevedoreError && err.code === 'OBJECT_EXISTS' && conditional) {
        const ours = await sameContent();
        if (ours) return ours;
      }
      throw err;
    }
  }

  async getObject(key: string, opts: GetOptions = {}): Promise<Buffer> {
    return this.run('get', key, opts.signal, async () => {
      const out = await this.client.send(this.getCommand(key, opts), { abortSignal: opts.signal });
      return readAll(out.Body as Readable, out.ContentLength);
    });
  }

  async getObjectStream(key: string, opts: GetOptions = {}): Promise<Readable> {
    return this.run('get', key, opts.signal, async () => {
      const out = await this.client.send(this.getCommand(key, opts), { abortSignal: opts.signal });
      return out.Body as Readable;
    });
  }

  /**
   * Delivers bytes `range.start` to `range.end` of an object to `onData` in
   * order, in batches of at most 1 MiB that are reused once `onData` settles
   * (the caller checks the bytes against its own digests: no response checksum
   * is validated). The bytes come through S3RangeReader, which reads into
   * reused buffers; whatever answer it cannot use (an error status, a redirect,
   * a chunked body, a failed connection) is asked again through the SDK, so
   * that retries and errors are those of every other request. A body cut off
   * midway throws a network error after the bytes delivered: the caller starts
   * the range again.
   */
  async readRange(key: string, range: { start: number; end: number }, onData: RangeDataHandler, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const reader = this.rangeReader;
    if (reader) {
      try {
        await reader.read(key, range, onData, opts);
        this.rangeMisses = 0;
        return;
      } catch (err) {
        if (!(err instanceof RangeReadUnsupported)) throw err;
        // Only success answers the reader cannot take count: an endpoint that answers so will answer every read so.
        this.rangeMisses = err.unusableAnswer ? this.rangeMisses + 1 : 0;
        this.logger.debug({ objectKey: key, err: err.message }, 'ranged read asked again through the SDK');
        if (this.rangeMisses >= RANGE_READER_MISSES) {
          this.rangeReader = undefined;
          reader.close();
          this.logger.info({ err: err.message }, `the endpoint answered ${RANGE_READER_MISSES} ranged reads in a row in a way the direct reader does not take; reading through the SDK from now on`);
        }
      }
    }
    const body = await this.getObjectStream(key, { range, verifiedByCaller: true, ...(opts.signal ? { signal: opts.signal } : {}) });
    let batch: Buffer[] = [];
    let bytes = 0;
    try {
      for await (const chunk of body) {
        batch.push(chunk as Buffer);
        bytes += (chunk as Buffer).length;
        if (bytes >= RANGE_BATCH_BYTES) {
          const out = Buffer.concat(batch, bytes);
          batch = [];
          bytes = 0;
          await onData(out);
        }
      }
      if (bytes > 0) await onData(Buffer.concat(batch, bytes));
    } finally {
      body.destroy();
    }
  }

  private getCommand(key: string, opts: GetOptions): GetObjectCommand {
    const range = opts.range;
    if (range && (range.start < 0 || range.end < range.start || !Number.isSafeInteger(range.end))) {
      throw new StevedoreError('INTERNAL', `get ${this.where(key)}: invalid byte range ${range.start}-${range.end} (start and end are inclusive, end >= start >= 0)`);
    }
    const command = new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) });
    return opts.verifiedByCaller === true ? withoutResponseValidation(command) : command;
  }

  /** undefined for a missing object. A HEAD answer has no body: a missing bucket looks the same (listObjects tells them apart). */
  headObject(key: string, opts: { signal?: AbortSignal } = {}): Promise<ObjectInfo | undefined> {
    const signal = opts.signal;
    return this.run('head', key, signal, async () => {
      try {
        const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }), { abortSignal: signal });
        return { key, size: out.ContentLength ?? 0, etag: out.ETag ?? '', lastModifiedMs: out.LastModified?.getTime() ?? 0 };
      } catch (err) {
        if (sdkStatus(err) === 404 && sdkName(err) !== 'NoSuchBucket') return undefined;
        throw err;
      }
    });
  }

  async listObjects(prefix: string, opts: { signal?: AbortSignal } = {}): Promise<ObjectInfo[]> {
    const objects: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const page = await this.run('list', prefix, opts.signal, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ...(token !== undefined ? { ContinuationToken: token } : {}) }), { abortSignal: opts.signal }),
      );
      for (const o of page.Contents ?? []) {
        if (o.Key === undefined) continue;
        objects.push({ key: o.Key, size: o.Size ?? 0, etag: o.ETag ?? '', lastModifiedMs: o.LastModified?.getTime() ?? 0 });
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
    return objects.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async deleteObjects(keys: string[], opts: { signal?: AbortSignal } = {}): Promise<void> {
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH);
      if (batch.length === 1) {
        await this.run('delete', batch[0], opts.signal, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: batch[0] }), { abortSignal: opts.signal }));
        continue;
      }
      const out = await this.run('delete', `${batch[0]} and ${batch.length - 1} more`, opts.signal, () =>
        this.client.send(new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }), { abortSignal: opts.signal }),
      );
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) {
        const first = failed[0]!;
        const code: ErrorCode = first.Code === 'AccessDenied' ? 'OBJECT_STORE_ACCESS_DENIED' : 'OBJECT_STORE_FAILED';
        const fix = code === 'OBJECT_STORE_ACCESS_DENIED' ? `check the credentials of endpoint ${describeEndpoint(this.config)} and the bucket policy (s3:DeleteObject)` : 'check the server; the delete can be repeated safely';
        throw new StevedoreError(code, `delete ${this.where(first.Key)} at ${describeEndpoint(this.config)}: ${failed.length} of ${batch.length} objects were not deleted (${first.Code ?? 'error'}: ${first.Message ?? ''}); ${fix}`);
      }
    }
  }

  async createMultipartUpload(key: string, opts: { contentType?: string; signal?: AbortSignal } = {}): Promise<string> {
    const out = await this.run('create multipart upload', key, opts.signal, () =>
      this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: this.bucket,
          Key: key,
          // Every part then carries its SHA-256 (the caller's, see uploadPart), checked by the server, and the SDK computes no CRC32.
          ...(this.config.checksumMode === 'WHEN_SUPPORTED' ? { ChecksumAlgorithm: 'SHA256' as const } : {}),
          ...(opts.contentType !== undefined ? { ContentType: opts.contentType } : {}),
        }),
        { abortSignal: opts.signal },
      ),
    );
    if (out.UploadId === undefined) throw new StevedoreError('OBJECT_STORE_FAILED', `create multipart upload ${this.where(key)} at ${describeEndpoint(this.config)}: the answer has no upload id; check that the endpoint supports multipart uploads`);
    this.partSizes.set(out.UploadId, new Map());
    return out.UploadId;
  }

  async uploadPart(key: string, uploadId: string, partNumber: number, body: Buffer, opts: { sha256?: Buffer; signal?: AbortSignal } = {}): Promise<CompletedPart> {
    // One digest per part: the caller's SHA-256 signs the payload and, with WHEN_SUPPORTED (the upload declared
    // SHA-256), is the part's flexible checksum. Without a caller's digest: our own SHA-256 with WHEN_SUPPORTED,
    // else Content-MD5 is the part's check (and the signer hashes the body).
    const supported = this.config.checksumMode === 'WHEN_SUPPORTED';
    const sha256 = opts.sha256 ?? (supported ? sha256Of(body) : undefined);
    const contentMd5 = sha256 === undefined ? crypto.createHash('md5').update(body).digest('base64') : undefined;
    const checksumSha256 = supported && sha256 !== undefined ? sha256.toString('base64') : undefined;
    const out = await this.run(`upload part ${partNumber} of`, key, opts.signal, () => {
      const command = new UploadPartCommand({
        Bucket: this.bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: partNumber,
        Body: body,
        ContentLength: body.length,
        ...(contentMd5 !== undefined ? { ContentMD5: contentMd5 } : {}),
        ...(checksumSha256 !== undefined ? { ChecksumSHA256: checksumSha256 } : {}),
      });
      return this.client.send(sha256 !== undefined ? withPayloadHash(command, sha256) : command, { abortSignal: opts.signal });
    });
    let sizes = this.partSizes.get(uploadId);
    if (!sizes) {
      sizes = new Map<number, number>();
      this.partSizes.set(uploadId, sizes);
    }
    sizes.set(partNumber, body.length);
    return { partNumber, etag: out.ETag ?? '', ...(checksumSha256 !== undefined ? { checksumSha256 } : {}) };
  }

  /**
   * Completes an upload. When the answer to a successful complete was lost and
   * the retry finds the upload gone (NoSuchUpload) or the key taken (412), the
   * object is checked: if it is the one these parts make (S3's composite ETag,
   * or for servers without composite ETags the size of the parts this store
   * uploaded), the upload counts as completed.
   */
  async completeMultipartUpload(key: string, uploadId: string, parts: CompletedPart[], opts: { ifNoneMatch?: boolean; signal?: AbortSignal } = {}): Promise<{ etag: string }> {
    const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    const conditional = opts.ifNoneMatch === true ? await this.supportsConditionalWrites() : false;
    const expectedSize = this.expectedSize(uploadId, sorted);
    const isOurs = async (): Promise<{ etag: string } | undefined> => {
      const existing = await this.headObject(key, { signal: opts.signal });
      if (!existing) return undefined;
      const etag = unquote(existing.etag);
      if (etag === compositeEtag(sorted.map((p) => p.etag))) return { etag: existing.etag };
      if (!etag.includes('-') && expectedSize !== undefined && existing.size === expectedSize) return { etag: existing.etag };
      return undefined;
    };
    try {
      const result = await this.run('complete multipart upload', key, opts.signal, async (round) => {
        if (opts.ifNoneMatch === true && !conditional) {
          const existing = await this.headObject(key, { signal: opts.signal });
          if (existing) {
            const ours = round > 1 ? await isOurs() : undefined;
            if (ours) return ours;
            throw new StevedoreError('OBJECT_EXISTS', `complete multipart upload ${this.where(key)} at ${describeEndpoint(this.config)}: the object already exists; it was not overwritten (abort the upload)`);
          }
        }
        const out = await this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: this.bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: sorted.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag, ...(p.checksumSha256 !== undefined ? { ChecksumSHA256: p.checksumSha256 } : {}) })) },
            ...(conditional ? { IfNoneMatch: '*' } : {}),
          }),
          { abortSignal: opts.signal },
        );
        return { etag: out.ETag ?? '' };
      });
      this.partSizes.delete(uploadId);
      return result;
    } catch (err) {
      if (err instanceof StevedoreError && (err.code === 'OBJECT_NOT_FOUND' || err.code === 'OBJECT_EXISTS')) {
        const ours = await isOurs();
        if (ours) {
          this.partSizes.delete(uploadId);
          return ours;
        }
      }
      throw err;
    }
  }

  private expectedSize(uploadId: string, parts: CompletedPart[]): number | undefined {
    const sizes = this.partSizes.get(uploadId);
    if (!sizes) return undefined;
    let total = 0;
    for (const p of parts) {
      const size = sizes.get(p.partNumber);
      if (size === undefined) return undefined;
      total += size;
    }
    return total;
  }

  /** Aborts an upload; one that no longer exists (completed or aborted) is not an error. */
  async abortMultipartUpload(key: string, uploadId: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.run('abort multipart upload', key, opts.signal, () => this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }), { abortSignal: opts.signal }));
    } catch (err) {
      if (!(err instanceof StevedoreError && err.code === 'OBJECT_NOT_FOUND')) throw err;
    }
    this.partSizes.delete(uploadId);
  }

  async listMultipartUploads(prefix: string, opts: { signal?: AbortSignal } = {}): Promise<MultipartUploadInfo[]> {
    const uploads: MultipartUploadInfo[] = [];
    let keyMarker: string | undefined;
    let idMarker: string | undefined;
    for (;;) {
      const page = await this.run('list multipart uploads under', prefix, opts.signal, () =>
        this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, ...(keyMarker !== undefined ? { KeyMarker: keyMarker } : {}), ...(idMarker !== undefined ? { UploadIdMarker: idMarker } : {}) }),
          { abortSignal: opts.signal },
        ),
      );
      for (const u of page.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue;
        uploads.push({ key: u.Key, uploadId: u.UploadId, initiatedMs: u.Initiated?.getTime() ?? 0 });
      }
      if (page.IsTruncated !== true || page.NextKeyMarker === undefined) break;
      keyMarker = page.NextKeyMarker;
      idMarker = page.NextUploadIdMarker;
    }
    return uploads;
  }
}
