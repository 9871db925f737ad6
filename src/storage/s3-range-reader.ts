// Ranged GETs of object bytes without the SDK's HTTP stack, for restores.
//
// The SDK's HTTP client (like node:http) hands over every socket read as a
// fresh Buffer: a restore of 1 GiB then allocates 16,000 buffers of 64 KiB
// outside the JavaScript heap, and V8 answers that external memory with a full
// garbage collection every 15 to 30 MiB. A profile of restores showed that
// collection (on V8's helper threads) costing as much CPU as the hashing. This
// reader lets every connection read into one reused batch buffer (the socket's
// `onread` option), so the bytes of a part cost no allocation at all.
//
// It only takes the happy path: one signed GET (SigV4, the store's own
// credentials provider) answered with exactly the asked bytes and a
// Content-Length. Any other answer before the first body byte (an error status,
// a redirect, a chunked body, a connection that fails) is RangeReadUnsupported,
// and the caller asks again through the SDK, which retries and maps the answer
// exactly as for every other request. A body cut off midway throws an error
// with code ECONNRESET (or ETIMEDOUT for an idle connection) after the bytes
// delivered so far.
import crypto from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';

export interface RangeReaderCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export interface S3RangeReaderOptions {
  /** Origin of the endpoint: http(s)://host[:port]. */
  endpoint: URL;
  bucket: string;
  /** http://host/bucket/key instead of http://bucket.host/key. */
  forcePathStyle: boolean;
  region: string;
  credentials: () => Promise<RangeReaderCredentials>;
  /** Time to establish a connection. */
  connectionTimeoutMs: number;
  /** A connection that receives nothing for this long is dropped. */
  idleTimeoutMs: number;
  /** Bytes handed over at once (the size of each connection's reused buffer); default 1 MiB. */
  batchBytes?: number;
  /** Idle connections kept for reuse; default 16. */
  maxIdle?: number;
}

/** The reader cannot serve this request as asked; ask through the SDK instead. Nothing was delivered. */
export class RangeReadUnsupported extends Error {
  override name = 'RangeReadUnsupported';
  /**
   * True for a success answer this reader cannot take (a chunked body, a
   * different range, no HTTP/1.x): the endpoint will likely answer every read
   * so. False for an error answer or a failed connection, which the SDK retries
   * and reports like any other request's.
   */
  readonly unusableAnswer: boolean;
  constructor(message: string, opts: { cause?: unknown; unusableAnswer?: boolean } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined);
    this.unusableAnswer = opts.unusableAnswer ?? false;
  }
}

/**
 * Receives the next bytes of the range, in order. `chunk` is a view of a
 * buffer that is reused once the returned promise settles: hash or copy it
 * before then, never keep it.
 */
export type RangeDataHandler = (chunk: Buffer) => void | Promise<void>;

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const DEFAULT_BATCH_BYTES = 1024 * 1024;
/** A read is never given less room than this (the rest of the batch buffer is handed over first). */
const MIN_READ_BYTES = 64 * 1024;
/** Response heads larger than this are not S3's. */
const MAX_HEAD_BYTES = 64 * 1024;

/** RFC 3986 encoding of one path segment, as SigV4 and S3 want it. */
function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function hmac(key: Buffer | string, data: string): Buffer {
  return crypto.createHmac('sha256', key).update(data).digest();
}

/** Whether the bucket can be a host name label (virtual-hosted addressing). */
function dnsCompatible(bucket: string, https: boolean): boolean {
  return /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(bucket) || (!https && /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket) && !bucket.includes('..'));
}

interface Head {
  status: number;
  headers: Map<string, string>;
  /** HTTP/1.1 with keep-alive. */
  reusable: boolean;
}

function parseHead(text: string): Head | undefined {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.([01]) (\d{3})/.exec(lines[0] ?? '');
  if (!m) return undefined;
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  const connection = (headers.get('connection') ?? '').toLowerCase();
  return { status: Number(m[2]), headers, reusable: m[1] === '1' && !connection.includes('close') };
}

function netError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

/** One keep-alive connection whose reads land in its own reused batch buffer. */
class Connection {
  readonly socket: net.Socket;
  readonly ready: Promise<void>;
  private readonly batch: Buffer;
  /** Bytes in `batch` not yet handed over (from `from` to `filled`). */
  private filled = 0;
  private from = 0;
  private onBytes: ((n: number) => boolean) | undefined;
  private onFailure: ((err: Error) => void) | undefined;
  /** Why the connection is unusable, once it is. */
  failed: Error | undefined;

  constructor(url: URL, servername: string | undefined, batchBytes: number, connectionTimeoutMs: number, idleTimeoutMs: number) {
    this.batch = Buffer.allocUnsafe(batchBytes);
    const onread = {
      buffer: (): Buffer => this.nextBuffer(),
      callback: (n: number): boolean => {
        if (this.onBytes) return this.onBytes(n);
        // Bytes while no request is out: the connection is out of step; drop it.
        this.fail(netError('the server sent bytes nobody asked for', 'EPROTO'));
        return false;
      },
    };
    const port = url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    // tls.connect takes onread as net.connect does (its types do not say so).
    const tlsOptions: tls.ConnectionOptions & { onread: typeof onread } = { host, port, ...(servername !== undefined && net.isIP(servername) === 0 ? { servername } : {}), onread };
    this.socket = url.protocol === 'https:' ? tls.connect(tlsOptions) : net.connect({ host, port, onread });
    this.socket.setNoDelay(true);
    const connectTimer = setTimeout(() => this.socket.destroy(netError(`connecting to ${url.host} took longer than ${connectionTimeoutMs} ms`, 'ETIMEDOUT')), connectionTimeoutMs);
    this.ready = new Promise<void>((resolve, reject) => {
      this.socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => {
        clearTimeout(connectTimer);
        resolve();
      });
      this.socket.once('close', () => {
        clearTimeout(connectTimer);
        reject(this.failed ?? netError('the connection closed', 'ECONNRESET'));
      });
    });
    this.ready.catch(() => undefined);
    this.socket.setTimeout(idleTimeoutMs, () => this.socket.destroy(netError(`no byte received for ${idleTimeoutMs} ms`, 'ETIMEDOUT')));
    this.socket.on('error', (err: Error) => this.fail(err));
    this.socket.on('end', () => this.fail(netError('the server closed the connection', 'ECONNRESET')));
    this.socket.on('close', () => this.fail(netError('the connection closed', 'ECONNRESET')));
    // Nothing is ever pushed (the reads go to the batch buffer), but the stream must flow to see its end.
    this.socket.resume();
  }

  private fail(err: Error): void {
    this.failed ??= err;
    this.onFailure?.(this.failed);
    if (!this.socket.destroyed) this.socket.destroy();
  }

  /** Where the next read lands: after the bytes not yet handed over. */
  private nextBuffer(): Buffer {
    if (this.batch.length - this.filled < MIN_READ_BYTES) return this.batch.subarray(0);
    return this.batch.subarray(this.filled);
  }

  /**
   * Sends `request` and delivers the body of a `expected`-byte answer. `accept`
   * judges the response head (undefined: deliver; else the error to throw).
   */
  exchange(request: string, expected: number, accept: (head: Head) => Error | undefined, onData: RangeDataHandler, signal: AbortSignal | undefined): Promise<{ reusable: boolean }> {
    return new Promise((resolve, reject) => {
      let head: Head | undefined;
      let headText = '';
      let delivered = 0;
      let received = 0;
      let settled = false;
      const finish = (err: unknown, reusable = false): void => {
        if (settled) return;
        settled = true;
        this.onBytes = undefined;
        this.onFailure = undefined;
        signal?.removeEventListener('abort', onAbort);
        if (err !== undefined) {
          this.fail(err instanceof Error ? err : netError('the request ended', 'ABORT_ERR'));
          // An abort rejects with the signal's own reason, whatever it is, as fetch does.
          // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
          reject(err);
        } else {
          // Reading again while idle notices a server closing the connection (or sending what nobody asked for).
          if (this.failed === undefined) this.socket.resume();
          resolve({ reusable: reusable && this.failed === undefined });
        }
      };
      const onAbort = (): void => finish(signal?.reason ?? netError('aborted', 'ABORT_ERR'));
      if (signal?.aborted) {
        onAbort();
        return;
      }
      if (this.failed) {
        finish(this.failed);
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      this.from = 0;
      this.filled = 0;
      // Hands over what the batch holds, with reading paused until the handler is done with it.
      const handOver = (): void => {
        const chunk = this.batch.subarray(this.from, this.filled);
        this.from = 0;
        this.filled = 0;
        if (chunk.length === 0) return;
        this.socket.pause();
        Promise.resolve()
          .then(() => onData(chunk))
          .then(
            () => {
              delivered += chunk.length;
              if (settled) return;
              if (delivered === expected) finish(undefined, head?.reusable === true && received === expected);
              else this.socket.resume();
            },
            (err: unknown) => finish(err ?? new Error('the receiver failed')),
          );
      };
      // A connection closed after the last byte arrived is no failure (it is just not reused).
      this.onFailure = (err) => {
        if (received !== expected) finish(err);
      };
      this.onBytes = (n) => {
        if (settled) return false;
        const start = this.batch.length - this.filled < MIN_READ_BYTES ? 0 : this.filled;
        if (start === 0 && this.filled > 0) {
          // Cannot happen: a full batch is handed over before the next read.
          finish(netError('internal: read buffer overrun', 'EPROTO'));
          return false;
        }
        let bodyFrom = start;
        if (!head) {
          headText += this.batch.toString('latin1', start, start + n);
          const end = headText.indexOf('\r\n\r\n');
          if (end < 0) {
            if (headText.length > MAX_HEAD_BYTES) finish(new RangeReadUnsupported('the response head is too long', { unusableAnswer: true }));
            return !settled;
          }
          head = parseHead(headText.slice(0, end));
          if (!head) {
            finish(new RangeReadUnsupported('the answer is not HTTP/1.x', { unusableAnswer: true }));
            return false;
          }
          const refused = accept(head);
          if (refused) {
            finish(refused);
            return false;
          }
          // The body's first bytes follow the head in this read.
          bodyFrom = start + n - (headText.length - (end + 4));
          this.from = bodyFrom;
          this.filled = bodyFrom;
        }
        const body = start + n - bodyFrom;
        received += body;
        this.filled = start + n;
        if (received > expected) {
          finish(new RangeReadUnsupported(`the server sent more than the ${expected} bytes asked for`, { unusableAnswer: true }));
          return false;
        }
        if (received === expected || this.batch.length - this.filled < MIN_READ_BYTES) {
          handOver();
          return false;
        }
        return true;
      };
      this.socket.write(request);
    });
  }
}

/** The last signing key derived (it changes once a day, or with the credentials). */
export interface SigningKeyCache {
  last?: { scope: string; secret: string; key: Buffer };
}

/**
 * The headers of a ranged GET signed with AWS Signature Version 4, the
 * Authorization header last: host, range, the empty payload's SHA-256 (as for
 * every GET), the date and the session token if any are signed. `path` is the
 * request path already encoded (S3 does not encode it twice for signing).
 */
export function signGet(
  req: { host: string; path: string; range: { start: number; end: number }; region: string; credentials: RangeReaderCredentials; date: Date },
  cache: SigningKeyCache = {},
): [string, string][] {
  const { credentials, region } = req;
  const amzDate = req.date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const headers: [string, string][] = [
    ['host', req.host],
    ['range', `bytes=${req.range.start}-${req.range.end}`],
    ['x-amz-content-sha256', EMPTY_SHA256],
    ['x-amz-date', amzDate],
    ...(credentials.sessionToken !== undefined && credentials.sessionToken !== '' ? [['x-amz-security-token', credentials.sessionToken] as [string, string]] : []),
  ];
  const signed = headers.map(([n]) => n).join(';');
  const canonical = ['GET', req.path, '', ...headers.map(([n, v]) => `${n}:${v}`), '', signed, EMPTY_SHA256].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, crypto.createHash('sha256').update(canonical).digest('hex')].join('\n');
  if (cache.last?.scope !== scope || cache.last.secret !== credentials.secretAccessKey) {
    cache.last = { scope, secret: credentials.secretAccessKey, key: hmac(hmac(hmac(hmac(`AWS4${credentials.secretAccessKey}`, day), region), 's3'), 'aws4_request') };
  }
  const signature = hmac(cache.last.key, toSign).toString('hex');
  return [...headers, ['authorization', `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signed}, Signature=${signature}`]];
}

/** Ranged GETs over connections of its own; see the top of this file. */
export class S3RangeReader {
  private readonly opts: S3RangeReaderOptions;
  private readonly origin: URL;
  private readonly hostHeader: string;
  private readonly pathPrefix: string;
  private readonly batchBytes: number;
  private readonly idle: Connection[] = [];
  private readonly signingKeys: SigningKeyCache = {};
  private closed = false;

  constructor(opts: S3RangeReaderOptions) {
    this.opts = opts;
    this.batchBytes = Math.max(2 * MIN_READ_BYTES, opts.batchBytes ?? DEFAULT_BATCH_BYTES);
    const https = opts.endpoint.protocol === 'https:';
    const virtual = !opts.forcePathStyle && dnsCompatible(opts.bucket, https) && !(https && opts.bucket.includes('.'));
    this.origin = new URL(opts.endpoint.origin);
    if (virtual) this.origin.hostname = `${opts.bucket}.${this.origin.hostname}`;
    this.hostHeader = this.origin.host;
    const base = opts.endpoint.pathname.replace(/\/+$/, '');
    this.pathPrefix = virtual ? `${base}/` : `${base}/${encodeSegment(opts.bucket)}/`;
  }

  /**
   * Delivers bytes `range.start` to `range.end` (inclusive) of `key` to
   * `onData`, in order, in batches of at most batchBytes. Throws
   * RangeReadUnsupported when nothing was delivered and the request should be
   * made through the SDK; an error of `onData` as it is; an error with a
   * network code (ECONNRESET, ETIMEDOUT) for a body cut off midway.
   */
  async read(key: string, range: { start: number; end: number }, onData: RangeDataHandler, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const expected = range.end - range.start + 1;
    const signal = opts.signal;
    // A reused connection the server closed meanwhile fails before any byte: one fresh connection is tried then.
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      let request: string;
      try {
        request = await this.request(key, range);
      } catch (err) {
        // The credentials could not be had: the SDK reports that as for any request.
        throw new RangeReadUnsupported(`cannot sign the request: ${(err as Error).message}`, { cause: err });
      }
      let reused = this.idle.pop();
      // Idle connections the server closed (or that timed out) meanwhile are dropped.
      while (reused?.failed !== undefined) reused = this.idle.pop();
      const conn = reused ?? this.connect();
      try {
        await conn.ready;
      } catch (err) {
        conn.socket.destroy();
        signal?.throwIfAborted();
        throw new RangeReadUnsupported(`cannot connect: ${(err as Error).message}`, { cause: err });
      }
      let delivered = 0;
      let receiverFailed = false;
      const deliver = async (chunk: Buffer): Promise<void> => {
        try {
          await onData(chunk);
        } catch (err) {
          receiverFailed = true;
          throw err;
        }
        delivered += chunk.length;
      };
      try {
        const { reusable } = await conn.exchange(request, expected, (head) => this.accept(head, range, expected), deliver, signal);
        if (reusable && !this.closed && this.idle.length < (this.opts.maxIdle ?? 16)) this.idle.push(conn);
        else conn.socket.destroy();
        return;
      } catch (err) {
        conn.socket.destroy();
        if (signal?.aborted || receiverFailed) throw err;
        // Once bytes were delivered, whatever went wrong is a body cut off: the caller starts the range again.
        if (err instanceof RangeReadUnsupported && delivered === 0) throw err;
        if (delivered > 0) throw Object.assign(new Error(`the response ended after ${delivered} of ${expected} bytes: ${(err as Error).message}`, { cause: err }), { code: (err as { code?: unknown }).code ?? 'ECONNRESET' });
        if (reused && attempt === 1) continue;
        throw new RangeReadUnsupported(`the request failed before its answer: ${(err as Error).message}`, { cause: err });
      }
    }
  }

  /** Closes the idle connections. */
  close(): void {
    this.closed = true;
    for (const conn of this.idle.splice(0)) conn.socket.destroy();
  }

  private connect(): Connection {
    return new Connection(this.origin, this.origin.hostname, this.batchBytes, this.opts.connectionTimeoutMs, this.opts.idleTimeoutMs);
  }

  private accept(head: Head, range: { start: number; end: number }, expected: number): Error | undefined {
    // An error answer (or a redirect) is the SDK's to retry and to report.
    if (head.status !== 200 && head.status !== 206) return new RangeReadUnsupported(`answer ${head.status}`);
    const unusable = (why: string): Error => new RangeReadUnsupported(`answer ${head.status} ${why}`, { unusableAnswer: true });
    const length = head.headers.get('content-length');
    if (head.headers.has('transfer-encoding') || length === undefined || Number(length) !== expected) return unusable(`without a Content-Length of ${expected}`);
    if (head.status === 206) {
      const m = /^bytes (\d+)-(\d+)\//.exec(head.headers.get('content-range') ?? '');
      if (!m || Number(m[1]) !== range.start || Number(m[2]) !== range.end) return unusable(`for another range (${head.headers.get('content-range') ?? 'none'})`);
      return undefined;
    }
    // A server that ignores Range answers 200 with the whole object: right only when the range is all of it.
    return range.start === 0 ? undefined : unusable('(the whole object) to a ranged GET');
  }

  /** The request's text, signed. */
  private async request(key: string, range: { start: number; end: number }): Promise<string> {
    const credentials = await this.opts.credentials();
    const path = `${this.pathPrefix}${key.split('/').map(encodeSegment).join('/')}`;
    const headers = signGet({ host: this.hostHeader, path, range, region: this.opts.region, credentials, date: new Date() }, this.signingKeys);
    return `GET ${path} HTTP/1.1\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}user-agent: stevedore\r\n\r\n`;
  }
}

/** A store that can deliver ranges of an object into reused buffers (S3ObjectStore). */
export interface RangeReadable {
  readRange(key: string, range: { start: number; end: number }, onData: RangeDataHandler, opts?: { signal?: AbortSignal }): Promise<void>;
}

export function isRangeReadable(store: object): store is RangeReadable {
  return typeof (store as Partial<RangeReadable>).readRange === 'function';
}
