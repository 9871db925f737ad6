// BENCHMARK INSTRUMENT, not a storage server: a minimal S3-protocol endpoint
// over node:http that accepts uploads as fast as loopback allows and throws
// the bytes away, so that a benchmark sees the client's own cost instead of
// the server's. It is never used by Stevedore itself.
//
// What it does:
// - path-style S3 (http://host/bucket/key), any credentials (signatures are
//   not checked), buckets created on first use;
// - PutObject, CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//   AbortMultipartUpload, ListMultipartUploads, HeadObject, GetObject (with a
//   byte range), DeleteObject(s), ListObjects (V1 and V2, with prefix,
//   delimiter and paging), GetBucketLocation, HeadBucket, CreateBucket;
// - If-None-Match: * on PutObject and CompleteMultipartUpload (412), as AWS S3;
// - every body is counted and checked against its Content-Length (and
//   x-amz-decoded-content-length for aws-chunked bodies); a completed
//   multipart upload checks its part list and S3's 5 MiB minimum part size;
// - bodies below 1 MiB (manifests, small files) are kept in memory; larger
//   ones are discarded after counting. A discarded object can still be read
//   back when the sink was given a synthetic content generator that produces
//   the same bytes the client uploaded (see SyntheticContent);
// - PUT /_raw/<anything> answers 200 after counting the body: the raw loopback
//   PUT rate, the ceiling an S3 client can reach against this sink.
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Bodies below this size are kept; larger ones are counted and discarded. */
export const SINK_KEEP_BYTES = 1024 * 1024;
const MIN_PART_BYTES = 5 * 1024 * 1024;

/** Produces the bytes of a discarded object on GET: a repeating block read from a per-key rotation. */
export interface SyntheticContent {
  block: Buffer;
  /** The rotation (offset into the block of the object's first byte) for a key, or undefined when the key has none. */
  rotationOf(key: string): number | undefined;
}

export interface SinkObject {
  size: number;
  etag: string;
  lastModified: Date;
  /** Kept only below SINK_KEEP_BYTES. */
  body: Buffer | undefined;
}

export interface SinkStats {
  /** Body bytes received and checked (objects, parts and raw PUTs). */
  bytesReceived: number;
  /** Requests by S3 operation name. */
  requests: Record<string, number>;
  /** Requests answered with an error status, by S3 error code. */
  errors: Record<string, number>;
}

export interface S3Sink {
  /** http://127.0.0.1:port */
  endpoint: string;
  stats: SinkStats;
  /** The objects of a bucket (key -> object). */
  objects(bucket: string): Map<string, SinkObject>;
  /** Forgets every object and open upload whose key starts with the prefix. */
  deletePrefix(bucket: string, prefix: string): void;
  setSynthetic(content: SyntheticContent | undefined): void;
  close(): Promise<void>;
}

interface Upload {
  bucket: string;
  key: string;
  initiated: Date;
  parts: Map<number, { size: number; etag: string }>;
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);
}

function xmlUnescape(s: string): string {
  return s.replace(/&(#x[0-9a-f]+|#\d+|lt|gt|amp|apos|quot);/gi, (_, e: string) => {
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' };
    if (e.startsWith('#x') || e.startsWith('#X')) return String.fromCodePoint(Number.parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(Number(e.slice(1)));
    return named[e.toLowerCase()] ?? e;
  });
}

const XMLNS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';

function sendXml(res: http.ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  const text = `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Decodes an aws-chunked body (`hex-size[;chunk-signature=...]\r\n data \r\n ... 0...\r\n trailers \r\n\r\n`). */
export function decodeAwsChunked(raw: Buffer): Buffer {
  const out: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const eol = raw.indexOf('\r\n', pos);
    if (eol < 0) throw new Error('aws-chunked body: chunk header without end of line');
    const size = Number.parseInt(raw.subarray(pos, eol).toString('latin1').split(';')[0] ?? '', 16);
    if (!Number.isFinite(size) || size < 0) throw new Error('aws-chunked body: bad chunk size');
    pos = eol + 2;
    if (size === 0) return Buffer.concat(out);
    if (pos + size > raw.length) throw new Error('aws-chunked body: chunk longer than the body');
    out.push(raw.subarray(pos, pos + size));
    pos += size + 2;
  }
}

/** Splits /bucket/key?query into its parts (path style). */
function parseTarget(url: string): { bucket: string; key: string; query: URLSearchParams } {
  const q = url.indexOf('?');
  const pathname = q < 0 ? url : url.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  const rest = pathname.replace(/^\/+/, '');
  const slash = rest.indexOf('/');
  const bucket = decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash));
  const key = slash < 0 ? '' : decodeURIComponent(rest.slice(slash + 1));
  return { bucket, key, query };
}

function operationOf(method: string, key: string, query: URLSearchParams): string {
  if (key === '') {
    if (method === 'GET') return query.has('uploads') ? 'ListMultipartUploads' : query.has('location') ? 'GetBucketLocation' : query.get('list-type') === '2' ? 'ListObjectsV2' : 'ListObjects';
    if (method === 'POST' && query.has('delete')) return 'DeleteObjects';
    if (method === 'HEAD') return 'HeadBucket';
    if (method === 'PUT') return 'CreateBucket';
    return `${method} bucket`;
  }
  if (method === 'PUT') return query.has('uploadId') ? 'UploadPart' : 'PutObject';
  if (method === 'POST') return query.has('uploads') ? 'CreateMultipartUpload' : query.has('uploadId') ? 'CompleteMultipartUpload' : 'POST object';
  if (method === 'DELETE') return query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  if (method === 'HEAD') return 'HeadObject';
  if (method === 'GET') return 'GetObject';
  return `${method} object`;
}

class SinkError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

interface ReceivedBody {
  /** Decoded size (what the object holds). */
  size: number;
  /** The decoded body when kept. */
  body: Buffer | undefined;
  md5hex: string;
}

/** An ETag for bytes the sink discards: not a content hash (the sink is not storage), unique per request target and size. */
function discardedEtag(req: http.IncomingMessage, size: number): string {
  return crypto.createHash('md5').update(`${req.url ?? ''}:${size}`).digest('hex');
}

/**
 * Reads a request body, counting it; keeps it when small. The ETag is the
 * client's Content-MD5 when it sent one (trusted: this is not storage), else
 * the MD5 of the bytes, as S3's, for a body that is kept or whose client may
 * check its ETag against its own MD5 (s3cmd does). A discarded body that
 * carries a flexible checksum (x-amz-checksum-*, which such a client checks
 * instead) or that only counts (`etag: false`, the raw PUT) is not hashed (see
 * discardedEtag): an MD5 over every byte cost the sink about 2 CPU s per GiB,
 * taken from the client under test on the shared cores.
 */
async function receive(req: http.IncomingMessage, keep: boolean, opts: { etag?: boolean } = {}): Promise<ReceivedBody> {
  const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  const decodedHeader = req.headers['x-amz-decoded-content-length'];
  const chunked = decodedHeader !== undefined || String(req.headers['content-encoding'] ?? '').includes('aws-chunked');
  const contentMd5 = req.headers['content-md5'];
  const checksummed = Object.keys(req.headers).some((h) => h.startsWith('x-amz-checksum-'));
  const hashed = keep || (opts.etag !== false && !checksummed);
  const md5 = contentMd5 === undefined && !chunked && hashed ? crypto.createHash('md5') : undefined;
  const chunks: Buffer[] = [];
  let count = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    count += buf.length;
    if (keep || (chunked && count <= SINK_KEEP_BYTES)) chunks.push(buf);
    md5?.update(buf);
  }
  if (declared !== undefined && count !== declared) throw new SinkError(400, 'IncompleteBody', `received ${count} bytes, Content-Length says ${declared}`);
  if (chunked) {
    const decodedSize = Number(decodedHeader);
    if (count <= SINK_KEEP_BYTES) {
      const body = decodeAwsChunked(Buffer.concat(chunks));
      if (decodedHeader !== undefined && body.length !== decodedSize) throw new SinkError(400, 'IncompleteBody', `decoded ${body.length} bytes, x-amz-decoded-content-length says ${decodedSize}`);
      return { size: body.length, body: keep ? body : undefined, md5hex: crypto.createHash('md5').update(body).digest('hex') };
    }
    if (!Number.isSafeInteger(decodedSize)) throw new SinkError(400, 'MissingContentLength', 'a large aws-chunked body needs x-amz-decoded-content-length');
    return { size: decodedSize, body: undefined, md5hex: discardedEtag(req, decodedSize) };
  }
  const md5hex = contentMd5 !== undefined ? Buffer.from(String(contentMd5), 'base64').toString('hex') : md5 ? md5.digest('hex') : discardedEtag(req, count);
  return { size: count, body: keep ? Buffer.concat(chunks) : undefined, md5hex };
}

function rangeOf(header: string | undefined, size: number): { start: number; end: number } | undefined | 'invalid' {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  if (start >= size || end < start) return 'invalid';
  return { start, end };
}

/** Starts the sink on 127.0.0.1 (port 0 unless given). */
export async function startS3Sink(opts: { port?: number; synthetic?: SyntheticContent } = {}): Promise<S3Sink> {
  const buckets = new Map<string, Map<string, SinkObject>>();
  const uploads = new Map<string, Upload>();
  const stats: SinkStats = { bytesReceived: 0, requests: {}, errors: {} };
  let synthetic = opts.synthetic;
  let doubled: Buffer | undefined;

  const bucketOf = (name: string): Map<string, SinkObject> => {
    let b = buckets.get(name);
    if (!b) {
      b = new Map();
      buckets.set(name, b);
    }
    return b;
  };

  const objectHeaders = (o: SinkObject): Record<string, string> => ({ etag: `"${o.etag}"`, 'last-modified': o.lastModified.toUTCString(), 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' });

  const writeBody = async (res: http.ServerResponse, key: string, o: SinkObject, start: number, end: number): Promise<void> => {
    if (o.body) {
      res.end(o.body.subarray(start, end + 1));
      return;
    }
    const rotation = synthetic?.rotationOf(key);
    if (!synthetic || rotation === undefined) throw new SinkError(501, 'NotImplemented', `the sink discarded the bytes of ${key} and has no synthetic content for it`);
    const block = synthetic.block;
    doubled ??= Buffer.concat([block, block]);
    let pos = start;
    while (pos <= end) {
      const from = (rotation + pos) % block.length;
      const length = Math.min(block.length, end + 1 - pos);
      pos += length;
      if (!res.write(doubled.subarray(from, from + length))) {
        await new Promise<void>((resolve) => {
          const done = (): void => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
        if (res.destroyed) return;
      }
    }
    res.end();
  };

  const list = (res: http.ServerResponse, bucket: string, query: URLSearchParams, v2: boolean): void => {
    const prefix = query.get('prefix') ?? '';
    const delimiter = query.get('delimiter') ?? '';
    const maxKeys = Math.min(1000, Math.max(1, Number(query.get('max-keys') ?? 1000) || 1000));
    const urlEncoded = query.get('encoding-type') === 'url';
    const enc = (s: string): string => (urlEncoded ? encodeURIComponent(s).replace(/%2F/g, '/') : xmlEscape(s));
    const after = v2 ? (query.has('continuation-token') ? Buffer.from(query.get('continuation-token') ?? '', 'base64url').toString('utf8') : (query.get('start-after') ?? '')) : (query.get('marker') ?? '');
    const keys = [...bucketOf(bucket).keys()].filter((k) => k.startsWith(prefix) && k > after).sort();
    const contents: string[] = [];
    const prefixes: string[] = [];
    const seenPrefixes = new Set<string>();
    let last = '';
    let truncated = false;
    for (const k of keys) {
      if (contents.length + prefixes.length >= maxKeys) {
        truncated = true;
        break;
      }
      if (delimiter !== '') {
        const i = k.indexOf(delimiter, prefix.length);
        if (i >= 0) {
          const p = k.slice(0, i + delimiter.length);
          if (!seenPrefixes.has(p)) {
            seenPrefixes.add(p);
            prefixes.push(`<CommonPrefixes><Prefix>${enc(p)}</Prefix></CommonPrefixes>`);
          }
          last = k;
          continue;
        }
      }
      const o = bucketOf(bucket).get(k)!;
      contents.push(`<Contents><Key>${enc(k)}</Key><LastModified>${o.lastModified.toISOString()}</LastModified><ETag>&quot;${o.etag}&quot;</ETag><Size>${o.size}</Size><StorageClass>STANDARD</StorageClass></Contents>`);
      last = k;
    }
    const paging = v2
      ? `<KeyCount>${contents.length + prefixes.length}</KeyCount>${truncated ? `<NextContinuationToken>${Buffer.from(last).toString('base64url')}</NextContinuationToken>` : ''}`
      : `<Marker>${enc(after)}</Marker>${truncated ? `<NextMarker>${enc(last)}</NextMarker>` : ''}`;
    sendXml(
      res,
      200,
      `<ListBucketResult ${XMLNS}><Name>${xmlEscape(bucket)}</Name><Prefix>${enc(prefix)}</Prefix>${delimiter !== '' ? `<Delimiter>${enc(delimiter)}</Delimiter>` : ''}<MaxKeys>${maxKeys}</MaxKeys>${urlEncoded ? '<EncodingType>url</EncodingType>' : ''}<IsTruncated>${truncated}</IsTruncated>${paging}${contents.join('')}${prefixes.join('')}</ListBucketResult>`,
    );
  };

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    if (url.startsWith('/_raw/')) {
      stats.requests.RawPut = (stats.requests.RawPut ?? 0) + 1;
      const got = await receive(req, false, { etag: false });
      stats.bytesReceived += got.size;
      res.writeHead(200, { 'content-length': 0 });
      res.end();
      return;
    }
    const { bucket, key, query } = parseTarget(url);
    const op = operationOf(method, key, query);
    stats.requests[op] = (stats.requests[op] ?? 0) + 1;
    const objects = bucketOf(bucket);
    const ifNoneMatch = req.headers['if-none-match'] === '*';

    switch (op) {
      case 'PutObject': {
        if (req.headers['x-amz-copy-source'] !== undefined) throw new SinkError(501, 'NotImplemented', 'CopyObject is not supported by the sink');
        const declared = Number(req.headers['x-amz-decoded-content-length'] ?? req.headers['content-length'] ?? 0);
        const got = await receive(req, declared < SINK_KEEP_BYTES);
        stats.bytesReceived += got.size;
        if (ifNoneMatch && objects.has(key)) throw new SinkError(412, 'PreconditionFailed', `${key} exists`);
        objects.set(key, { size: got.size, etag: got.md5hex, lastModified: new Date(), body: got.body });
        res.writeHead(200, { etag: `"${got.md5hex}"`, 'content-length': 0 });
        res.end();
        return;
      }
      case 'CreateMultipartUpload': {
        const uploadId = crypto.randomBytes(16).toString('hex');
        uploads.set(uploadId, { bucket, key, initiated: new Date(), parts: new Map() });
        sendXml(res, 200, `<InitiateMultipartUploadResult ${XMLNS}><Bucket>${xmlEscape(bucket)}</Bucket><Key>${xmlEscape(key)}</Key><UploadId>${uploadId}</UploadId></InitiateMultipartUploadResult>`);
        return;
      }
      case 'UploadPart': {
        const upload = uploads.get(query.get('uploadId') ?? '');
        const partNumber = Number(query.get('partNumber'));
        const got = await receive(req, false);
        stats.bytesReceived += got.size;
        if (!upload || upload.key !== key || upload.bucket !== bucket) throw new SinkError(404, 'NoSuchUpload', 'the upload does not exist');
        if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > 10_000) throw new SinkError(400, 'InvalidArgument', 'partNumber must be 1 to 10000');
        upload.parts.set(partNumber, { size: got.size, etag: got.md5hex });
        res.writeHead(200, { etag: `"${got.md5hex}"`, 'content-length': 0 });
        res.end();
        return;
      }
      case 'CompleteMultipartUpload': {
        const uploadId = query.get('uploadId') ?? '';
        const body = (await receive(req, true)).body?.toString('utf8') ?? '';
        const upload = uploads.get(uploadId);
        if (!upload || upload.key !== key) throw new SinkError(404, 'NoSuchUpload', 'the upload does not exist');
        const listed = [...body.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => ({
          partNumber: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1] ?? '')?.[1]),
          etag: xmlUnescape(/<ETag>([\s\S]*?)<\/ETag>/.exec(m[1] ?? '')?.[1] ?? '').replace(/"/g, ''),
        }));
        if (listed.length === 0) throw new SinkError(400, 'MalformedXML', 'no parts listed');
        let size = 0;
        const md5 = crypto.createHash('md5');
        for (const [i, p] of listed.entries()) {
          const part = upload.parts.get(p.partNumber);
          if (!part || part.etag !== p.etag) throw new SinkError(400, 'InvalidPart', `part ${p.partNumber} was not uploaded with ETag ${p.etag}`);
          if (i > 0 && p.partNumber <= (listed[i - 1]?.partNumber ?? 0)) throw new SinkError(400, 'InvalidPartOrder', 'parts must be listed in ascending order');
          if (i < listed.length - 1 && part.size < MIN_PART_BYTES) throw new SinkError(400, 'EntityTooSmall', `part ${p.partNumber} is ${part.size} bytes, below 5 MiB`);
          size += part.size;
          md5.update(Buffer.from(part.etag, 'hex'));
        }
        if (ifNoneMatch && objects.has(key)) throw new SinkError(412, 'PreconditionFailed', `${key} exists`);
        const etag = `${md5.digest('hex')}-${listed.length}`;
        objects.set(key, { size, etag, lastModified: new Date(), body: undefined });
        uploads.delete(uploadId);
        sendXml(res, 200, `<CompleteMultipartUploadResult ${XMLNS}><Location>/${xmlEscape(bucket)}/${xmlEscape(key)}</Location><Bucket>${xmlEscape(bucket)}</Bucket><Key>${xmlEscape(key)}</Key><ETag>&quot;${etag}&quot;</ETag></CompleteMultipartUploadResult>`);
        return;
      }
      case 'AbortMultipartUpload': {
        if (!uploads.delete(query.get('uploadId') ?? '')) throw new SinkError(404, 'NoSuchUpload', 'the upload does not exist');
        res.writeHead(204);
        res.end();
        return;
      }
      case 'ListMultipartUploads': {
        const prefix = query.get('prefix') ?? '';
        const found = [...uploads.entries()].filter(([, u]) => u.bucket === bucket && u.key.startsWith(prefix)).sort(([a, u], [b, w]) => (u.key < w.key ? -1 : u.key > w.key ? 1 : a < b ? -1 : 1));
        const items = found.map(([id, u]) => `<Upload><Key>${xmlEscape(u.key)}</Key><UploadId>${id}</UploadId><Initiated>${u.initiated.toISOString()}</Initiated></Upload>`).join('');
        sendXml(res, 200, `<ListMultipartUploadsResult ${XMLNS}><Bucket>${xmlEscape(bucket)}</Bucket><Prefix>${xmlEscape(prefix)}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${items}</ListMultipartUploadsResult>`);
        return;
      }
      case 'HeadObject':
      case 'GetObject': {
        const o = objects.get(key);
        if (!o) {
          if (op === 'HeadObject') {
            res.writeHead(404, { 'content-length': 0 });
            res.end();
            return;
          }
          throw new SinkError(404, 'NoSuchKey', `${key} does not exist`);
        }
        if (op === 'HeadObject') {
          res.writeHead(200, { ...objectHeaders(o), 'content-length': o.size });
          res.end();
          return;
        }
        const range = rangeOf(req.headers.range, o.size);
        if (range === 'invalid') throw new SinkError(416, 'InvalidRange', 'the range is outside the object');
        if (o.size === 0) {
          res.writeHead(200, { ...objectHeaders(o), 'content-length': 0 });
          res.end();
          return;
        }
        if (!o.body && synthetic?.rotationOf(key) === undefined) throw new SinkError(501, 'NotImplemented', `the sink discarded the bytes of ${key} and has no synthetic content for it`);
        const { start, end } = range ?? { start: 0, end: o.size - 1 };
        res.writeHead(range ? 206 : 200, { ...objectHeaders(o), 'content-length': end - start + 1, ...(range ? { 'content-range': `bytes ${start}-${end}/${o.size}` } : {}) });
        await writeBody(res, key, o, start, end);
        return;
      }
      case 'DeleteObject': {
        objects.delete(key);
        res.writeHead(204);
        res.end();
        return;
      }
      case 'DeleteObjects': {
        const body = (await receive(req, true)).body?.toString('utf8') ?? '';
        const keys = [...body.matchAll(/<Key>([\s\S]*?)<\/Key>/g)].map((m) => xmlUnescape(m[1] ?? ''));
        for (const k of keys) objects.delete(k);
        sendXml(res, 200, `<DeleteResult ${XMLNS}></DeleteResult>`);
        return;
      }
      case 'ListObjects':
      case 'ListObjectsV2':
        list(res, bucket, query, op === 'ListObjectsV2');
        return;
      case 'GetBucketLocation':
        sendXml(res, 200, `<LocationConstraint ${XMLNS}></LocationConstraint>`);
        return;
      case 'HeadBucket':
      case 'CreateBucket':
        await receive(req, true);
        res.writeHead(200, { 'content-length': 0 });
        res.end();
        return;
      default:
        throw new SinkError(501, 'NotImplemented', `${op} is not supported by the benchmark sink`);
    }
  };

  const server = http.createServer({ keepAliveTimeout: 60_000, requestTimeout: 0 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = err instanceof SinkError ? err : new SinkError(500, 'InternalError', err instanceof Error ? err.message : String(err));
      stats.errors[e.code] = (stats.errors[e.code] ?? 0) + 1;
      req.resume();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      if (req.method === 'HEAD') {
        res.writeHead(e.status, { 'content-length': 0 });
        res.end();
        return;
      }
      sendXml(res, e.status, `<Error><Code>${e.code}</Code><Message>${xmlEscape(e.message)}</Message><RequestId>${crypto.randomBytes(8).toString('hex')}</RequestId></Error>`);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stats,
    objects: bucketOf,
    deletePrefix(bucket, prefix) {
      const objects = bucketOf(bucket);
      for (const k of [...objects.keys()]) if (k.startsWith(prefix)) objects.delete(k);
      for (const [id, u] of [...uploads]) if (u.bucket === bucket && u.key.startsWith(prefix)) uploads.delete(id);
    },
    setSynthetic(content) {
      synthetic = content;
      doubled = undefined;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}
