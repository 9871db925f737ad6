// The input cache against a real HTTP server on loopback (written here), a real
// S3-compatible server, and real archives made with node-tar.
import t from 'tap';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import * as tar from 'tar';
import { InputCache, archiveEntryProblem, describeInputUrl, extractModeFor } from '../../src/data/input-cache.ts';
import type { InputSpec } from '../../src/spec/job-spec.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { systemClock } from '../../src/util/clock.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { rejectsCode } from '../helpers/assert.ts';

const BUCKET = 'stevedore-inputs';

// ---- a small HTTP file server with faults on demand ---------------------------

interface Served {
  body: Buffer;
  etag: string;
  /** The next GET sends half the body, then drops the connection. */
  cutOnce?: boolean;
  /** GETs answer after this long. */
  delayMs?: number;
  /** GETs send the headers, then nothing. */
  stall?: boolean;
  /** GETs send the body in six pieces, this long apart. */
  trickleMs?: number;
}

const served = new Map<string, Served>();
const gets = new Map<string, number>();
const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  const file = served.get(url.pathname);
  if (req.method === 'GET') gets.set(url.pathname, (gets.get(url.pathname) ?? 0) + 1);
  if (!file) {
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
    return;
  }
  const headers = { etag: file.etag, 'content-length': String(file.body.length), 'content-type': 'application/octet-stream' };
  if (req.method === 'HEAD') {
    res.writeHead(200, headers);
    res.end();
    return;
  }
  const send = (): void => {
    res.writeHead(200, headers);
    if (file.stall) {
      res.flushHeaders();
      return;
    }
    if (file.cutOnce) {
      file.cutOnce = false;
      res.write(file.body.subarray(0, Math.floor(file.body.length / 2)), () => res.socket?.destroy());
      return;
    }
    if (file.trickleMs) {
      const piece = Math.ceil(file.body.length / 6);
      let sent = 0;
      const next = (): void => {
        if (res.destroyed) return;
        const chunk = file.body.subarray(sent, sent + piece);
        sent += chunk.length;
        if (sent >= file.body.length) res.end(chunk);
        else res.write(chunk, () => setTimeout(next, file.trickleMs));
      };
      next();
      return;
    }
    res.end(file.body);
  };
  if (file.delayMs) setTimeout(send, file.delayMs);
  else send();
});
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
t.teardown(
  () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
);

const s3 = await startS3Server({ buckets: [BUCKET] });
t.teardown(() => s3.close());
const store = new S3ObjectStore({ bucket: BUCKET, config: s3.config });
t.teardown(() => store.destroy());

// ---- helpers -------------------------------------------------------------------

function newCache(dir: string, opts: { idleTimeoutMs?: number } = {}): InputCache {
  return new InputCache({
    dir,
    storeFor: (endpoint, bucket) => {
      if (endpoint !== 'default' || bucket !== BUCKET) throw new Error(`unexpected store ${endpoint}/${bucket}`);
      return store;
    },
    logger: silentLogger(),
    clock: systemClock,
    s3RangeBytes: 64 * 1024,
    ...opts,
  });
}

function input(url: string, extract: InputSpec['extract'] = 'auto'): InputSpec {
  return { url, endpoint: 'default', target: '/data', extract };
}

/** Every file under dir, relative path -> content. */
function readTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, full)] = fs.readFileSync(full).toString('base64');
  }
  return out;
}

/** The cache's finished entries, and anything left in its working and lock directories. */
function cacheContents(cacheDir: string): { entries: string[]; leftovers: string[] } {
  const root = path.join(cacheDir, 'inputs');
  const list = (d: string): string[] => (fs.existsSync(d) ? fs.readdirSync(d) : []);
  return {
    entries: list(root).filter((n) => !n.startsWith('.')),
    leftovers: [...list(path.join(root, '.work')), ...list(path.join(root, '.locks'))],
  };
}

async function makeArchive(dir: string, files: Record<string, Buffer>, gzip: boolean): Promise<Buffer> {
  const src = path.join(dir, `src-${randomBytes(4).toString('hex')}`);
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
    fs.writeFileSync(path.join(src, rel), content);
  }
  const file = path.join(dir, `archive-${randomBytes(4).toString('hex')}.tar`);
  await tar.c({ cwd: src, file, gzip, portable: true }, Object.keys(files));
  return fs.readFileSync(file);
}

const toBase64 = (files: Record<string, Buffer>): Record<string, string> => Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.toString('base64')]));

// ---- tests -----------------------------------------------------------------------

void t.test('an http tar.gz input is extracted once and reused; a changed ETag downloads again', async (t) => {
  const dir = t.testdir();
  const files = { 'train/a.txt': Buffer.from('alpha\n'), 'train/b.bin': randomBytes(300_000), 'README': Buffer.from('dataset v1') };
  served.set('/sets/v.tar.gz', { body: await makeArchive(dir, files, true), etag: '"v1"' });
  const cache = newCache(path.join(dir, 'cache'));
  const spec = input(`${base}/sets/v.tar.gz?token=s3cr3t`);

  const progress: number[] = [];
  const first = await cache.prepare(spec, { onProgress: (b) => progress.push(b) });
  t.equal(first.reused, false, 'the first prepare downloads');
  t.same(readTree(first.hostPath), toBase64(files), 'the archive is extracted into the entry');
  t.equal(first.bytes, served.get('/sets/v.tar.gz')?.body.length, 'bytes is the archive size');
  t.ok(progress.length > 0 && progress[progress.length - 1] === first.bytes, 'progress reaches the full size');

  const second = await cache.prepare(spec);
  t.equal(second.reused, true, 'the second prepare reuses the entry');
  t.equal(second.hostPath, first.hostPath);
  t.equal(gets.get('/sets/v.tar.gz'), 1, 'the server saw one GET');

  const v2 = { 'train/a.txt': Buffer.from('alpha, revised\n') };
  served.set('/sets/v.tar.gz', { body: await makeArchive(dir, v2, true), etag: '"v2"' });
  const third = await cache.prepare(spec);
  t.equal(third.reused, false, 'a new ETag downloads again');
  t.not(third.hostPath, first.hostPath, 'into a new entry');
  t.same(readTree(third.hostPath), toBase64(v2));
  t.same(readTree(first.hostPath), toBase64(files), 'the old entry is untouched (a running job may still use it)');
  t.equal(gets.get('/sets/v.tar.gz'), 2);
  t.same(cacheContents(path.join(dir, 'cache')).leftovers, [], 'no working directory or lock is left');
});

void t.test('an s3:// input is placed as a single file under its name, fetched in ranges', async (t) => {
  const dir = t.testdir();
  const body = randomBytes(200_000); // four 64 KiB ranges
  await store.putObject('datasets/tokens.bin', body);
  const cache = newCache(path.join(dir, 'cache'));
  const first = await cache.prepare(input(`s3://${BUCKET}/datasets/tokens.bin`));
  t.equal(first.reused, false);
  t.same(fs.readdirSync(first.hostPath), ['tokens.bin']);
  t.ok(fs.readFileSync(path.join(first.hostPath, 'tokens.bin')).equals(body), 'the file equals the object');
  t.equal(first.bytes, body.length);
  const second = await cache.prepare(input(`s3://${BUCKET}/datasets/tokens.bin`));
  t.equal(second.reused, true);
  t.equal(second.hostPath, first.hostPath);

  await rejectsCode(t, cache.prepare(input(`s3://${BUCKET}/datasets/missing.bin`)), 'INPUT_UNAVAILABLE', /s3:\/\/stevedore-inputs\/datasets\/missing\.bin does not exist/);
});

void t.test('two jobs asking for the same input at once share one download', async (t) => {
  const dir = t.testdir();
  const files = { 'x.txt': Buffer.from('shared') };
  served.set('/sets/shared.tar', { body: await makeArchive(dir, files, false), etag: '"s1"', delayMs: 300 });
  const cache = newCache(path.join(dir, 'cache'));
  const [a, b] = await Promise.all([cache.prepare(input(`${base}/sets/shared.tar`)), cache.prepare(input(`${base}/sets/shared.tar`))]);
  t.equal(gets.get('/sets/shared.tar'), 1, 'one GET');
  t.equal(a.hostPath, b.hostPath);
  t.same([a.reused, b.reused].sort(), [false, true], 'one of them downloaded');
  t.same(readTree(a.hostPath), toBase64(files));
});

void t.test('a 404 fails clearly, without the query string, and leaves nothing behind', async (t) => {
  const dir = t.testdir();
  const cache = newCache(path.join(dir, 'cache'));
  try {
    await cache.prepare(input(`${base}/sets/nope.tar.gz?X-Amz-Signature=topsecret`));
    t.fail('expected a failure');
  } catch (err) {
    t.match(err, { code: 'INPUT_UNAVAILABLE', message: /\/sets\/nope\.tar\.gz answered 404.*check the URL/ });
    t.notMatch((err as Error).message, /topsecret/, 'the token is not in the message');
  }
  t.same(cacheContents(path.join(dir, 'cache')), { entries: [], leftovers: [] });
});

void t.test('an archive with an entry escaping the directory is refused whole', async (t) => {
  const dir = t.testdir();
  const inner = path.join(dir, 'build', 'inner');
  fs.mkdirSync(inner, { recursive: true });
  fs.writeFileSync(path.join(inner, 'ok.txt'), 'fine');
  fs.writeFileSync(path.join(dir, 'build', 'evil'), 'gotcha');
  const file = path.join(dir, 'evil.tar.gz');
  await tar.c({ cwd: inner, file, gzip: true, preservePaths: true }, ['ok.txt', '../evil']);
  served.set('/sets/evil.tar.gz', { body: fs.readFileSync(file), etag: '"e1"' });
  const cacheDir = path.join(dir, 'cache');
  const cache = newCache(cacheDir);
  await rejectsCode(t, cache.prepare(input(`${base}/sets/evil.tar.gz`)), 'INPUT_INVALID', /archive entry "\.\.\/evil" leads outside the directory.*not used/);
  t.same(cacheContents(cacheDir), { entries: [], leftovers: [] }, 'no entry is left');
  t.notOk(fs.existsSync(path.join(cacheDir, 'inputs', 'evil')) || fs.existsSync(path.join(cacheDir, 'evil')), 'nothing was written outside');

  served.set('/sets/garbage.tgz', { body: randomBytes(4096), etag: '"g1"' });
  await rejectsCode(t, cache.prepare(input(`${base}/sets/garbage.tgz`)), 'INPUT_INVALID', /not a readable tar\.gz archive.*extract to "none"/);
  t.same(cacheContents(cacheDir), { entries: [], leftovers: [] });
});

void t.test('entries that would land outside the directory', (t) => {
  t.match(archiveEntryProblem({ path: '/etc/passwd', type: 'File' }), /absolute path/);
  t.match(archiveEntryProblem({ path: 'a/../../b', type: 'File' }), /outside/);
  t.match(archiveEntryProblem({ path: 'link', type: 'SymbolicLink', linkpath: '/etc' }), /link to "\/etc", outside/);
  t.match(archiveEntryProblem({ path: 'a/link', type: 'SymbolicLink', linkpath: '../../x' }), /outside/);
  t.match(archiveEntryProblem({ path: 'hard', type: 'Link', linkpath: '../x' }), /hard link/);
  t.match(archiveEntryProblem({ path: 'dev', type: 'CharacterDevice' }), /device/);
  t.equal(archiveEntryProblem({ path: 'a/link', type: 'SymbolicLink', linkpath: '../b/c' }), undefined, 'a link to a sibling directory is fine');
  t.equal(archiveEntryProblem({ path: 'a/b.txt', type: 'File' }), undefined);
  t.equal(extractModeFor('auto', 'x.TGZ'), 'tar.gz');
  t.equal(extractModeFor('auto', 'x.tar'), 'tar');
  t.equal(extractModeFor('auto', 'x.parquet'), 'none');
  t.equal(extractModeFor('tar', 'x.bin'), 'tar');
  t.equal(describeInputUrl('https://user:pw@host.example/a/b.tar?sig=1#f'), 'https://host.example/a/b.tar');
  t.end();
});

void t.test('a download cut off midway leaves nothing, and the next prepare succeeds', async (t) => {
  const dir = t.testdir();
  const body = randomBytes(1_000_000);
  served.set('/sets/big.bin', { body, etag: '"b1"', cutOnce: true });
  const cacheDir = path.join(dir, 'cache');
  const cache = newCache(cacheDir);
  await rejectsCode(t, cache.prepare(input(`${base}/sets/big.bin`)), 'INPUT_UNAVAILABLE', /big\.bin: the download broke off after \d+ of 1000000 bytes.*start the job again/);
  t.same(cacheContents(cacheDir), { entries: [], leftovers: [] }, 'nothing half-done is kept');
  const ok = await cache.prepare(input(`${base}/sets/big.bin`));
  t.equal(ok.reused, false);
  t.ok(fs.readFileSync(path.join(ok.hostPath, 'big.bin')).equals(body), 'the second download is complete');
});

void t.test('a server that stops sending is given up on after the idle timeout, not a total time', async (t) => {
  const dir = t.testdir();
  served.set('/sets/stalled.bin', { body: randomBytes(1000), etag: '"st"', stall: true });
  const cacheDir = path.join(dir, 'cache');
  const cache = newCache(cacheDir, { idleTimeoutMs: 300 });
  await rejectsCode(t, cache.prepare(input(`${base}/sets/stalled.bin`)), 'INPUT_UNAVAILABLE', /stalled\.bin: nothing received for 300 ms after 0 of 1000 bytes/);
  t.same(cacheContents(cacheDir), { entries: [], leftovers: [] });

  // A slow but steady download, longer in total than the idle timeout, completes.
  const body = randomBytes(60_000);
  served.set('/sets/slow.bin', { body, etag: '"sl"', trickleMs: 150 });
  const started = Date.now();
  const ok = await cache.prepare(input(`${base}/sets/slow.bin`));
  t.ok(Date.now() - started >= 600, 'the download took longer than the idle timeout');
  t.ok(fs.readFileSync(path.join(ok.hostPath, 'slow.bin')).equals(body));
});

void t.test('an unreachable host names the URL and what to check', async (t) => {
  const dir = t.testdir();
  const probe = http.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const cache = newCache(path.join(dir, 'cache'));
  await rejectsCode(t, cache.prepare(input(`http://127.0.0.1:${port}/x.tar`)), 'INPUT_UNAVAILABLE', /x\.tar is unreachable \(ECONNREFUSED\); check/);
});

void t.test('a caller that gives up gets its abort reason, and the cache stays clean', async (t) => {
  const dir = t.testdir();
  served.set('/sets/abandoned.bin', { body: randomBytes(1000), etag: '"ab"', delayMs: 2000 });
  const cacheDir = path.join(dir, 'cache');
  const cache = newCache(cacheDir);
  const controller = new AbortController();
  const pending = cache.prepare(input(`${base}/sets/abandoned.bin`), { signal: controller.signal });
  setTimeout(() => controller.abort(new Error('job cancelled')), 200);
  await t.rejects(pending, { message: 'job cancelled' });
  // The shared download notices the abort and cleans up.
  for (let i = 0; i < 50 && cacheContents(cacheDir).leftovers.length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  t.same(cacheContents(cacheDir), { entries: [], leftovers: [] });
});
