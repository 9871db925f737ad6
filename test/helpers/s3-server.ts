// A real S3-compatible server for tests: s3rver in-process on 127.0.0.1 (port 0)
// with a temporary directory as its store, logs silenced.
//
// s3rver 3.7 lacks three things Stevedore relies on, which this wrapper adds in
// front of it, following S3's documented behaviour:
// - ListMultipartUploads (GET /bucket?uploads), with paging (max-uploads,
//   key-marker, upload-id-marker);
// - AbortMultipartUpload (DELETE /bucket/key?uploadId=...);
// - ListObjectsV2 paging: s3rver encrypts its continuation tokens with DES,
//   which OpenSSL 3 no longer offers, so any listing longer than one page
//   fails with a 500; here the token is the last key, base64url-encoded;
// - NoSuchUpload (404) for UploadPart and CompleteMultipartUpload on an upload
//   that was completed or aborted (s3rver would quietly accept the part, or fail
//   with a 500).
// With `conditionalWrites: true` it also honours `If-None-Match: *` on PutObject
// and CompleteMultipartUpload (412 PreconditionFailed when the key exists), as
// AWS S3 does; by default it ignores the header, as s3rver does.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { S3EndpointConfig } from '../../src/storage/s3-config.ts';
import { CANARY_S3_SECRET } from './secrets.ts';

interface S3rverObject {
  key: string;
  size: number;
  lastModifiedDate: Date;
  metadata: { etag?: string };
}
interface S3rverInstance {
  callback(): (req: http.IncomingMessage, res: http.ServerResponse) => void;
  configureBuckets(): Promise<void>;
  logger: { close(): void };
  store: {
    listObjects(bucket: string, options: { prefix: string; startAfter: string; maxKeys: number; delimiter: string }): Promise<{ objects: S3rverObject[]; commonPrefixes: string[]; isTruncated: boolean }>;
  };
}
type S3rverConstructor = new (options: Record<string, unknown>) => S3rverInstance;

const require = createRequire(import.meta.url);
const S3rver = require('s3rver') as S3rverConstructor;

/** s3rver's one account. */
export const S3RVER_ACCESS_KEY = 'S3RVER';
/**
 * The secret key the tests use with it: the canary, so that a secret that reaches
 * a log is found (scripts/check-secrets.ts). s3rver checks the access key, not the
 * signature (allowMismatchedSignatures), so any secret works.
 */
export const S3_TEST_SECRET = CANARY_S3_SECRET;

export interface S3TestServer {
  /** http://127.0.0.1:port */
  endpoint: string;
  /** The store's directory (removed by close()). */
  dir: string;
  /** Ready to use with S3ObjectStore: path style, s3rver's access key with the canary secret, standard checksums, 3 attempts. */
  config: S3EndpointConfig;
  /** Requests served, by operation name (PutObject, UploadPart, ...), for tests that count. */
  requests: Record<string, number>;
  close(): Promise<void>;
}

export interface S3TestServerOptions {
  /** Buckets created at start. */
  buckets?: string[];
  /** Honour If-None-Match: * on writes (default false, like s3rver itself). */
  conditionalWrites?: boolean;
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);
}

function sendError(res: http.ServerResponse, status: number, code: string, message: string, detail: Record<string, string> = {}): void {
  const extra = Object.entries(detail).map(([k, v]) => `<${k}>${xmlEscape(v)}</${k}>`).join('');
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${xmlEscape(message)}</Message>${extra}<RequestId>${crypto.randomBytes(8).toString('hex')}</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Reads the rest of a request's body before answering, so that the client sees the answer and not a reset. */
function drain(req: http.IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    if (req.readableEnded) {
      resolve();
      return;
    }
    req.on('end', resolve);
    req.on('error', () => resolve());
    req.resume();
  });
}

function operationOf(method: string, key: string, query: URLSearchParams): string {
  if (key === '') {
    if (method === 'GET' && query.has('uploads')) return 'ListMultipartUploads';
    if (method === 'GET') return 'ListObjects';
    if (method === 'POST' && query.has('delete')) return 'DeleteObjects';
    if (method === 'PUT') return 'CreateBucket';
    return `${method} bucket`;
  }
  if (method === 'PUT') return query.has('uploadId') ? 'UploadPart' : 'PutObject';
  if (method === 'POST') return query.has('uploads') ? 'CreateMultipartUpload' : 'CompleteMultipartUpload';
  if (method === 'DELETE') return query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  if (method === 'HEAD') return 'HeadObject';
  return 'GetObject';
}

export async function startS3Server(opts: S3TestServerOptions = {}): Promise<S3TestServer> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-s3-'));
  const s3rver = new S3rver({
    silent: true,
    // The access key must be S3RVER; the secret may be anything (the canary): s3rver 3.7
    // does not check SigV4 signatures at all, and with this neither V2 ones.
    allowMismatchedSignatures: true,
    directory: dir,
    address: '127.0.0.1',
    port: 0,
    vhostBuckets: false,
    configureBuckets: (opts.buckets ?? []).map((name) => ({ name })),
  });
  await s3rver.configureBuckets();
  const handle = s3rver.callback();
  const requests: Record<string, number> = {};
  // Conditional writes to one key run one at a time, so that check-then-write is atomic here.
  const keyLocks = new Map<string, Promise<void>>();

  const uploadsDir = (bucket: string): string => path.join(dir, bucket, '._S3rver_uploads');
  const objectExists = (bucket: string, key: string): boolean => {
    const parts = key.split('/');
    const last = parts.pop() ?? '';
    return fs.existsSync(path.join(dir, bucket, ...parts, `${last}._S3rver_object`));
  };
  const uploadKey = (bucket: string, uploadId: string): string | undefined => {
    if (!/^[0-9a-f]+$/.test(uploadId)) return undefined;
    try {
      return fs.readFileSync(path.join(uploadsDir(bucket), uploadId, 'key'), 'utf8');
    } catch {
      return undefined;
    }
  };

  const listUploads = (res: http.ServerResponse, bucket: string, query: URLSearchParams): void => {
    const prefix = query.get('prefix') ?? '';
    const keyMarker = query.get('key-marker') ?? '';
    const idMarker = query.get('upload-id-marker') ?? '';
    const max = Math.min(1000, Math.max(1, Number(query.get('max-uploads') ?? 1000) || 1000));
    let ids: string[] = [];
    try {
      ids = fs.readdirSync(uploadsDir(bucket));
    } catch {
      // no upload ever started in this bucket
    }
    const all = ids
      .map((uploadId) => {
        const key = uploadKey(bucket, uploadId);
        if (key === undefined) return undefined;
        const initiated = fs.statSync(path.join(uploadsDir(bucket), uploadId, 'key')).mtime;
        return { key, uploadId, initiated };
      })
      .filter((u) => u !== undefined && u.key.startsWith(prefix))
      .map((u) => u!)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.uploadId < b.uploadId ? -1 : a.uploadId > b.uploadId ? 1 : 0))
      .filter((u) => keyMarker === '' || u.key > keyMarker || (idMarker !== '' && u.key === keyMarker && u.uploadId > idMarker));
    const page = all.slice(0, max);
    const truncated = all.length > page.length;
    const last = page[page.length - 1];
    const uploads = page
      .map((u) => `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${u.uploadId}</UploadId><Initiator><ID>123456789000</ID><DisplayName>S3rver</DisplayName></Initiator><Owner><ID>123456789000</ID><DisplayName>S3rver</DisplayName></Owner><StorageClass>STANDARD</StorageClass><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`)
      .join('');
    const body =
      '<?xml version="1.0" encoding="UTF-8"?>\n<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
      `<Bucket>${xmlEscape(bucket)}</Bucket><KeyMarker>${xmlEscape(keyMarker)}</KeyMarker><UploadIdMarker>${xmlEscape(idMarker)}</UploadIdMarker>` +
      (truncated && last ? `<NextKeyMarker>${xmlEscape(last.key)}</NextKeyMarker><NextUploadIdMarker>${last.uploadId}</NextUploadIdMarker>` : '') +
      `<Prefix>${xmlEscape(prefix)}</Prefix><MaxUploads>${max}</MaxUploads><IsTruncated>${truncated}</IsTruncated>${uploads}</ListMultipartUploadsResult>`;
    res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  const listObjectsV2 = async (res: http.ServerResponse, bucket: string, query: URLSearchParams): Promise<void> => {
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') ?? '';
    const token = query.get('continuation-token');
    const startAfter = token !== null ? Buffer.from(token, 'base64url').toString() : (query.get('start-after') ?? '');
    const maxKeys = Math.min(1000, Math.max(0, Number(query.get('max-keys') ?? 1000)));
    const result = maxKeys === 0 ? { objects: [], commonPrefixes: [], isTruncated: false } : await s3rver.store.listObjects(bucket, { prefix, startAfter, maxKeys, delimiter });
    const last = result.objects[result.objects.length - 1];
    const contents = result.objects
      .map((o) => `<Contents><Key>${xmlEscape(o.key)}</Key><LastModified>${o.lastModifiedDate.toISOString()}</LastModified><ETag>${xmlEscape(o.metadata.etag ?? '')}</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`)
      .join('');
    const prefixes = result.commonPrefixes.map((p) => `<CommonPrefixes><Prefix>${xmlEscape(p)}</Prefix></CommonPrefixes>`).join('');
    const body =
      '<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
      `<Name>${xmlEscape(bucket)}</Name><Prefix>${xmlEscape(prefix)}</Prefix><MaxKeys>${maxKeys}</MaxKeys><KeyCount>${result.objects.length}</KeyCount>` +
      (delimiter !== '' ? `<Delimiter>${xmlEscape(delimiter)}</Delimiter>` : '') +
      (token !== null ? `<ContinuationToken>${xmlEscape(token)}</ContinuationToken>` : '') +
      `<IsTruncated>${result.isTruncated}</IsTruncated>` +
      (result.isTruncated && last ? `<NextContinuationToken>${Buffer.from(last.key).toString('base64url')}</NextContinuationToken>` : '') +
      `${contents}${prefixes}</ListBucketResult>`;
    res.writeHead(200, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  // Answers what s3rver lacks; returns false to let s3rver handle the request.
  const extension = async (req: http.IncomingMessage, res: http.ServerResponse, bucket: string, key: string, query: URLSearchParams): Promise<boolean> => {
    const method = req.method ?? 'GET';
    const op = operationOf(method, key, query);
    requests[op] = (requests[op] ?? 0) + 1;
    const listV2 = op === 'ListObjects' && query.get('list-type') === '2';
    if (!listV2 && op !== 'ListMultipartUploads' && op !== 'AbortMultipartUpload' && op !== 'UploadPart' && op !== 'CompleteMultipartUpload' && op !== 'PutObject') return false;
    if (op === 'PutObject' && !(opts.conditionalWrites && req.headers['if-none-match'] === '*')) return false;

    const auth = req.headers.authorization ?? '';
    const credential = /Credential=([^/]+)\//.exec(auth)?.[1];
    if (credential !== undefined && credential !== S3RVER_ACCESS_KEY) {
      await drain(req);
      sendError(res, 403, 'InvalidAccessKeyId', 'The AWS Access Key Id you provided does not exist in our records.', { AWSAccessKeyId: credential });
      return true;
    }
    if (!fs.existsSync(path.join(dir, bucket))) {
      await drain(req);
      sendError(res, 404, 'NoSuchBucket', 'The specified bucket does not exist', { BucketName: bucket });
      return true;
    }
    if (op === 'ListMultipartUploads') {
      listUploads(res, bucket, query);
      return true;
    }
    if (listV2) {
      await listObjectsV2(res, bucket, query);
      return true;
    }
    if (op !== 'PutObject') {
      const uploadId = query.get('uploadId') ?? '';
      const owner = uploadKey(bucket, uploadId);
      if (owner !== key) {
        await drain(req);
        sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', { UploadId: uploadId });
        return true;
      }
      if (op === 'AbortMultipartUpload') {
        fs.rmSync(path.join(uploadsDir(bucket), uploadId), { recursive: true, force: true });
        res.writeHead(204);
        res.end();
        return true;
      }
      if (op === 'UploadPart' || !(opts.conditionalWrites && req.headers['if-none-match'] === '*')) return false;
    }
    // A conditional PutObject or CompleteMultipartUpload: check and write under the key's lock.
    const lockKey = `${bucket}/${key}`;
    const previous = keyLocks.get(lockKey) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const chained = previous.then(() => mine);
    keyLocks.set(lockKey, chained);
    await previous;
    res.on('close', () => {
      release();
      if (keyLocks.get(lockKey) === chained) keyLocks.delete(lockKey);
    });
    if (objectExists(bucket, key)) {
      await drain(req);
      sendError(res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold', { Condition: 'If-None-Match' });
      return true;
    }
    return false;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const segments = url.pathname.split('/');
    const bucket = decodeURIComponent(segments[1] ?? '');
    const key = segments.slice(2).map(decodeURIComponent).join('/');
    if (bucket === '') {
      handle(req, res);
      return;
    }
    extension(req, res, bucket, key, url.searchParams).then(
      (handled) => {
        if (!handled) handle(req, res);
      },
      (err: unknown) => {
        if (!res.headersSent) sendError(res, 500, 'InternalError', String(err));
        else res.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;

  let closed: Promise<void> | undefined;
  return {
    endpoint,
    dir,
    requests,
    config: {
      endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      accessKeyId: S3RVER_ACCESS_KEY,
      secretAccessKey: S3_TEST_SECRET,
      checksumMode: 'WHEN_SUPPORTED',
      maxAttempts: 3,
    },
    close(): Promise<void> {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => {
        s3rver.logger.close();
        fs.rmSync(dir, { recursive: true, force: true });
      });
      return closed;
    },
  };
}
