// Ranged reads into reused buffers: the signature, the bytes, and every answer
// that is not the happy path (asked again through the SDK, or an error).
import t from 'tap';
import crypto, { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { SignatureV4 } from '@smithy/signature-v4';
import { RangeReadUnsupported, S3RangeReader, signGet, type S3RangeReaderOptions } from '../../src/storage/s3-range-reader.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { createCa, issueCertificate } from '../../src/security/certs.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { rejectsCode } from '../helpers/assert.ts';

const BUCKET = 'range-reader';
const MiB = 1024 * 1024;
const s3 = await startS3Server({ buckets: [BUCKET] });
t.teardown(() => s3.close());
const store = new S3ObjectStore({ bucket: BUCKET, config: s3.config });
t.teardown(() => store.destroy());

function readerFor(endpoint: string, extra: Partial<S3RangeReaderOptions> = {}): S3RangeReader {
  const reader = new S3RangeReader({
    endpoint: new URL(endpoint),
    bucket: BUCKET,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: () => Promise.resolve({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }),
    connectionTimeoutMs: 2000,
    idleTimeoutMs: 2000,
    ...extra,
  });
  t.teardown(() => reader.close());
  return reader;
}

/** Reads a range, copying every chunk (the chunks' memory is reused), and records the chunk sizes. */
async function readCopy(reader: S3RangeReader, key: string, start: number, end: number, signal?: AbortSignal): Promise<{ data: Buffer; chunks: number[] }> {
  const parts: Buffer[] = [];
  const chunks: number[] = [];
  await reader.read(key, { start, end }, async (chunk) => {
    chunks.push(chunk.length);
    parts.push(Buffer.from(chunk));
    await new Promise((resolve) => setImmediate(resolve));
  }, signal ? { signal } : {});
  return { data: Buffer.concat(parts), chunks };
}

void t.test('the signature is AWS\'s own example for a ranged GET (Signature Version 4 documentation)', (t) => {
  const headers = signGet({
    host: 'examplebucket.s3.amazonaws.com',
    path: '/test.txt',
    range: { start: 0, end: 9 },
    region: 'us-east-1',
    credentials: { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' },
    date: new Date('2013-05-24T00:00:00Z'),
  });
  t.same(headers.at(-1), [
    'authorization',
    'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
  ]);
  t.end();
});

void t.test('the signature matches the SDK\'s signer for odd keys and temporary credentials', async (t) => {
  const bytes = (d: string | ArrayBuffer | ArrayBufferView): string | Buffer => (typeof d === 'string' ? d : d instanceof ArrayBuffer ? Buffer.from(d) : Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  class Sha256 {
    private readonly h: crypto.Hash | crypto.Hmac;
    constructor(secret?: string | ArrayBuffer | ArrayBufferView) {
      this.h = secret === undefined ? crypto.createHash('sha256') : crypto.createHmac('sha256', bytes(secret));
    }
    update(data: string | ArrayBuffer | ArrayBufferView): void {
      this.h.update(bytes(data));
    }
    digest(): Promise<Uint8Array> {
      return Promise.resolve(this.h.digest());
    }
  }
  const credentials = { accessKeyId: 'ASIAEXAMPLE', secretAccessKey: 'secret/with+chars', sessionToken: 'token/with=chars+' };
  const date = new Date('2026-03-04T05:06:07Z');
  for (const encodedPath of ['/bucket/job/ckpt%20one/a%2Bb%21%27%28%29%2A.bin', '/bucket/%E2%82%AC/x~y_z-.bin']) {
    const ours = signGet({ host: '127.0.0.1:9000', path: encodedPath, range: { start: 5, end: 1_000_000 }, region: 'eu-west-3', credentials, date });
    const sdk = new SignatureV4({ credentials, region: 'eu-west-3', service: 's3', sha256: Sha256, uriEscapePath: false, applyChecksum: false });
    const signed = await sdk.sign(
      { method: 'GET', protocol: 'http:', hostname: '127.0.0.1', port: 9000, path: encodedPath, query: {}, headers: { host: '127.0.0.1:9000', range: 'bytes=5-1000000', 'x-amz-content-sha256': ours.find(([n]) => n === 'x-amz-content-sha256')![1] } },
      { signingDate: date },
    );
    t.equal(ours.at(-1)![1], signed.headers.authorization, encodedPath);
    t.equal(ours.find(([n]) => n === 'x-amz-security-token')?.[1], credentials.sessionToken);
  }
});

void t.test('ranges of a real object arrive byte-identical, in batches of at most batchBytes, over reused connections', async (t) => {
  const data = randomBytes(3 * MiB + 77);
  await store.putObject('job/ckpt 1/model+a.bin', data);
  const reader = readerFor(s3.endpoint, { batchBytes: 256 * 1024 });
  for (const [start, end] of [[0, data.length - 1], [1, 1], [100, 2 * MiB + 5], [data.length - 10, data.length - 1]] as const) {
    const { data: got, chunks } = await readCopy(reader, 'job/ckpt 1/model+a.bin', start, end);
    t.ok(got.equals(data.subarray(start, end + 1)), `bytes ${start}-${end}`);
    t.ok(chunks.every((c) => c > 0 && c <= 256 * 1024), 'every batch within batchBytes');
  }
  // Eight at once on one reader.
  const ranges = Array.from({ length: 8 }, (_, i) => ({ start: i * 300_000, end: i * 300_000 + 299_999 }));
  const got = await Promise.all(ranges.map((r) => readCopy(reader, 'job/ckpt 1/model+a.bin', r.start, r.end)));
  t.ok(got.every((g, i) => g.data.equals(data.subarray(ranges[i]!.start, ranges[i]!.end + 1))), 'parallel reads');
});

void t.test('through the store: a missing object and a range past the end are the SDK\'s errors; other stores\' answers are asked again', async (t) => {
  await rejectsCode(t, store.readRange('job/missing.bin', { start: 0, end: 9 }, () => undefined), 'OBJECT_NOT_FOUND', /missing\.bin/);
  await store.putObject('job/short.bin', Buffer.from('0123456789'));
  const err = await store.readRange('job/short.bin', { start: 20, end: 29 }, () => undefined).then(() => undefined, (e: unknown) => e);
  t.match((err as { cause?: { name?: string } }).cause?.name, 'InvalidRange', 'the SDK\'s InvalidRange, which the restore takes for a short object');
  const reader = readerFor(s3.endpoint);
  await t.rejects(reader.read('job/missing.bin', { start: 0, end: 9 }, () => undefined), RangeReadUnsupported);
});

/** An S3-like server of one object that can misbehave; counts connections and requests. */
async function startOddServer(data: Buffer, mode: 'ok' | 'chunked' | 'cut' | 'stall', secure?: { key: string; cert: string }, keepAliveMs = 5000): Promise<{ endpoint: string; connections: () => number; requests: () => number; close: () => Promise<void> }> {
  let connections = 0;
  let requests = 0;
  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    requests++;
    if (req.url?.split('?')[0]?.endsWith('/missing') === true) {
      const xml = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code><Message>no such key</Message></Error>';
      res.writeHead(404, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) });
      res.end(xml);
      return;
    }
    const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
    const start = Number(m?.[1] ?? 0);
    const end = Number(m?.[2] ?? data.length - 1);
    const body = data.subarray(start, end + 1);
    const headers = { 'content-range': `bytes ${start}-${end}/${data.length}`, 'content-type': 'application/octet-stream' };
    if (mode === 'chunked') {
      res.writeHead(206, headers);
      res.end(body);
      return;
    }
    res.writeHead(206, { ...headers, 'content-length': body.length });
    if (mode === 'ok') {
      res.end(body);
      return;
    }
    res.write(body.subarray(0, Math.floor(body.length / 2)));
    if (mode === 'cut') setTimeout(() => res.destroy(), 20);
  };
  const server = secure ? https.createServer(secure, handler) : http.createServer(handler);
  server.keepAliveTimeout = keepAliveMs;
  (server as { keepAliveTimeoutBuffer?: number }).keepAliveTimeoutBuffer = 0;
  server.on(secure ? 'secureConnection' : 'connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `${secure ? 'https' : 'http'}://127.0.0.1:${port}`,
    connections: () => connections,
    requests: () => requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

void t.test('a body cut off midway throws a network error after what arrived; a stalled one after the idle timeout', async (t) => {
  const data = randomBytes(2 * MiB);
  const cut = await startOddServer(data, 'cut');
  t.teardown(() => cut.close());
  let delivered = 0;
  const err = await readerFor(cut.endpoint, { batchBytes: 128 * 1024 }).read('k', { start: 0, end: data.length - 1 }, (c) => {
    delivered += c.length;
  }).then(() => undefined, (e: unknown) => e as { code?: string; message?: string });
  t.equal(err?.code, 'ECONNRESET');
  t.match(err?.message, /ended after \d+ of 2097152 bytes/);
  t.ok(delivered > 0 && delivered < data.length, 'the bytes before the cut were delivered');

  const stall = await startOddServer(data, 'stall');
  t.teardown(() => stall.close());
  const started = Date.now();
  const stalled = await readerFor(stall.endpoint, { batchBytes: 128 * 1024, idleTimeoutMs: 300 }).read('k', { start: 0, end: data.length - 1 }, () => undefined).then(() => undefined, (e: unknown) => e as { code?: string });
  t.equal(stalled?.code, 'ETIMEDOUT');
  t.ok(Date.now() - started < 5000, 'not waited on');
});

void t.test('a chunked answer is asked again through the SDK; after three the store stays with the SDK', async (t) => {
  const data = randomBytes(300_000);
  const odd = await startOddServer(data, 'chunked');
  t.teardown(() => odd.close());
  const oddStore = new S3ObjectStore({ bucket: BUCKET, config: { ...s3.config, endpoint: odd.endpoint } });
  t.teardown(() => oddStore.destroy());
  for (let i = 0; i < 5; i++) {
    const parts: Buffer[] = [];
    await oddStore.readRange('k', { start: i, end: 200_000 }, (c) => {
      parts.push(Buffer.from(c));
    });
    t.ok(Buffer.concat(parts).equals(data.subarray(i, 200_001)), `read ${i + 1} is byte-identical`);
  }
  // 3 reads tried directly then again through the SDK, 2 through the SDK only.
  t.equal(odd.requests(), 3 * 2 + 2);
});

void t.test('error answers are the SDK\'s to report, and do not make the store give up the reader', async (t) => {
  const data = randomBytes(300_000);
  const server = await startOddServer(data, 'ok');
  t.teardown(() => server.close());
  const okStore = new S3ObjectStore({ bucket: BUCKET, config: { ...s3.config, endpoint: server.endpoint } });
  t.teardown(() => okStore.destroy());
  for (let i = 0; i < 4; i++) await rejectsCode(t, okStore.readRange('job/missing', { start: 0, end: 9 }, () => undefined), 'OBJECT_NOT_FOUND', /job\/missing/);
  t.equal(server.requests(), 4 * 2, 'each asked directly, then through the SDK');
  const parts: Buffer[] = [];
  await okStore.readRange('k', { start: 10, end: 200_009 }, (c) => {
    parts.push(Buffer.from(c));
  });
  t.ok(Buffer.concat(parts).equals(data.subarray(10, 200_010)));
  t.equal(server.requests(), 4 * 2 + 1, 'the next read is still direct');
});

void t.test('connections the server closed while idle are not used again', async (t) => {
  const data = randomBytes(100_000);
  const server = await startOddServer(data, 'ok', undefined, 100);
  t.teardown(() => server.close());
  const reader = readerFor(server.endpoint);
  await Promise.all([0, 1, 2].map((i) => readCopy(reader, 'k', i, 50_000)));
  await new Promise((resolve) => setTimeout(resolve, 400));
  const { data: got } = await readCopy(reader, 'k', 7, 90_000);
  t.ok(got.equals(data.subarray(7, 90_001)));
  t.equal(server.requests(), 4, 'answered directly, never through the SDK');
  t.equal(server.connections(), 4, 'three connections closed by the server, then a new one');
});

void t.test('an abort stops the read with the signal\'s reason', async (t) => {
  const data = randomBytes(2 * MiB);
  const stall = await startOddServer(data, 'stall');
  t.teardown(() => stall.close());
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('the job was cancelled')), 100);
  await t.rejects(readCopy(readerFor(stall.endpoint, { batchBytes: 128 * 1024 }), 'k', 0, data.length - 1, controller.signal), { message: 'the job was cancelled' });
});

void t.test('https: a certificate the default CAs trust is used, reusing its connection; an untrusted one is refused', async (t) => {
  const dir = t.testdir({});
  await createCa(path.join(dir, 'ca'));
  const leaf = await issueCertificate({ caDir: path.join(dir, 'ca'), kind: 'coordinator', name: '127.0.0.1', hosts: ['127.0.0.1'], outDir: path.join(dir, 'leaf') });
  const data = randomBytes(500_000);
  const server = await startOddServer(data, 'ok', { key: fs.readFileSync(leaf.key, 'utf8'), cert: fs.readFileSync(leaf.cert, 'utf8') });
  t.teardown(() => server.close());

  const untrusted = readerFor(server.endpoint);
  await t.rejects(untrusted.read('k', { start: 0, end: 9 }, () => undefined), RangeReadUnsupported, 'not trusted by default');

  const defaults = tls.getCACertificates('default');
  tls.setDefaultCACertificates([...defaults, fs.readFileSync(leaf.ca, 'utf8')]);
  t.teardown(() => tls.setDefaultCACertificates(defaults));
  const reader = readerFor(server.endpoint);
  for (let i = 0; i < 3; i++) {
    const { data: got } = await readCopy(reader, 'k', i * 1000, 400_000);
    t.ok(got.equals(data.subarray(i * 1000, 400_001)), `read ${i + 1} over TLS`);
  }
  t.equal(server.connections(), 1, 'one connection for three reads');
});
