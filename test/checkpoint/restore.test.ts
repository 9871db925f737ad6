// Restore before a job starts, against a real S3-compatible server on loopback and real files.
import t from 'tap';
import type { Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { restoreNewest } from '../../src/checkpoint/restore.ts';
import { isRangeReadable, type RangeReadable } from '../../src/storage/s3-range-reader.ts';
import { MANIFEST_FORMAT, MANIFEST_FORMAT_V1, fileKey, manifestKey, partDigests, serializeManifest, stepFromName, type Manifest, type ManifestFile } from '../../src/checkpoint/manifest.ts';
import { createLogger, silentLogger, type Logger } from '../../src/util/logger.ts';
import { systemClock } from '../../src/util/clock.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { rejectsCode } from '../helpers/assert.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';

const BUCKET = 'stevedore-restore';

const s3 = await startS3Server({ buckets: [BUCKET] });
t.teardown(() => s3.close());
const store = new S3ObjectStore({ bucket: BUCKET, config: s3.config });
t.teardown(() => store.destroy());

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function capturingLogger(): { logger: Logger; warnings: () => string[] } {
  const lines: { level: number; msg: string }[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) } });
  return { logger, warnings: () => lines.filter((l) => l.level === 40).map((l) => l.msg) };
}

const MiB = 1024 * 1024;

/**
 * Commits a checkpoint the way the uploader does: its objects, then its manifest
 * (v2 with the SHA-256 of each part of `partSize` bytes, default 1 MiB; or v1 with each file's SHA-256).
 * `reuse` maps a relative path to the key of an earlier checkpoint's object holding the same content.
 */
async function commit(
  prefix: string,
  name: string,
  files: Record<string, Buffer>,
  opts: { kind?: 'directory' | 'file'; reuse?: Record<string, string>; committedMs?: number; partSize?: number; format?: 'v1' } = {},
): Promise<Manifest> {
  const entries: ManifestFile[] = [];
  const partSize = opts.partSize ?? MiB;
  for (const [rel, content] of Object.entries(files)) {
    const reused = opts.reuse?.[rel];
    const key = reused ?? fileKey(prefix, name, rel);
    if (!reused) await store.putObject(key, content);
    entries.push(opts.format === 'v1' ? { path: rel, size: content.length, sha256: sha256(content), key } : { path: rel, size: content.length, key, partSize, parts: partDigests(content, partSize) });
  }
  const at = opts.committedMs ?? Date.now();
  const totalBytes = entries.reduce((s, e) => s + e.size, 0);
  const manifest: Manifest = {
    format: opts.format === 'v1' ? MANIFEST_FORMAT_V1 : MANIFEST_FORMAT, checkpointId: name, name, step: stepFromName(name), kind: opts.kind ?? 'directory', jobId: 'job-1', attempt: 1,
    nodeId: 'node-a', firstSeenMs: at, lastWriteMs: at, committedMs: at, totalBytes, uploadedBytes: totalBytes, files: entries,
  };
  await store.putObject(manifestKey(prefix, name), serializeManifest(manifest));
  return manifest;
}

/** Every file under dir, relative path -> content. */
function readTree(dir: string): Record<string, Buffer> {
  const out: Record<string, Buffer> = {};
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const full = path.join(entry.parentPath, entry.name);
    out[path.relative(dir, full).split(path.sep).join('/')] = fs.readFileSync(full);
  }
  return out;
}

function sameTree(t: Test, actual: Record<string, Buffer>, expected: Record<string, Buffer>, what: string): void {
  t.same(Object.keys(actual).sort(), Object.keys(expected).sort(), `${what}: the same files`);
  for (const [rel, content] of Object.entries(expected)) t.ok(actual[rel]?.equals(content), `${what}: ${rel} is byte-identical`);
}

/** Nothing of the restore's own is left in the target directory. */
function noLeftovers(t: Test, dir: string): void {
  t.same(fs.readdirSync(dir).filter((e) => e.startsWith('.stevedore-')), [], 'no staging directory is left behind');
}

void t.test('the newest checkpoint (a directory with nested files) is restored byte-identical under its name', async (t) => {
  const prefix = 'restore-dir/job';
  await commit(prefix, 'step-000100', { 'model.pt': Buffer.from('old model'), '.metadata': Buffer.from('old') });
  const files = {
    '.metadata': randomBytes(300),
    '__0_0.distcp': randomBytes(70_000),
    'optim/state/__1_0.distcp': randomBytes(12_345),
    'optim/empty.bin': Buffer.alloc(0),
  };
  await commit(prefix, 'step-000200', files);
  const targetDir = t.testdir({ 'step-000200': { 'stale-from-an-earlier-run.bin': 'stale' }, 'unrelated.txt': 'kept' });

  const result = await restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock });
  t.ok(result);
  t.equal(result?.manifest.checkpointId, 'step-000200');
  t.equal(result?.manifest.step, 200);
  t.equal(result?.path, path.join(targetDir, 'step-000200'));
  t.equal(result?.bytes, 300 + 70_000 + 12_345);
  t.same(result?.skipped, []);
  t.ok((result?.durationMs ?? -1) >= 0);
  sameTree(t, readTree(path.join(targetDir, 'step-000200')), files, 'restored');
  t.notOk(fs.existsSync(path.join(targetDir, 'step-000100')), 'only the newest is restored');
  t.equal(fs.readFileSync(path.join(targetDir, 'unrelated.txt'), 'utf8'), 'kept', 'other entries of the directory are left alone');
  noLeftovers(t, targetDir);
});

void t.test('a single-file checkpoint is restored as that file', async (t) => {
  const prefix = 'restore-file/job';
  const content = randomBytes(200_000);
  await commit(prefix, 'epoch=2-step=90.ckpt', { 'epoch=2-step=90.ckpt': randomBytes(10) }, { kind: 'file' });
  await commit(prefix, 'epoch=3-step=120.ckpt', { 'epoch=3-step=120.ckpt': content }, { kind: 'file' });
  const targetDir = t.testdir({ 'epoch=3-step=120.ckpt': 'an older local copy' });
  const result = await restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock });
  t.equal(result?.path, path.join(targetDir, 'epoch=3-step=120.ckpt'));
  t.ok(fs.statSync(path.join(targetDir, 'epoch=3-step=120.ckpt')).isFile());
  t.ok(fs.readFileSync(path.join(targetDir, 'epoch=3-step=120.ckpt')).equals(content), 'byte-identical, replacing the local copy');
  t.same(fs.readdirSync(targetDir), ['epoch=3-step=120.ckpt']);
});

/** Wraps the store and records every GET (key and range). */
function recordingGets(inner: ObjectStore): { store: ObjectStore; gets: { key: string; range?: { start: number; end: number } }[] } {
  const gets: { key: string; range?: { start: number; end: number } }[] = [];
  const wrapper = Object.create(inner) as ObjectStore;
  wrapper.getObject = (key, opts) => {
    gets.push({ key, ...(opts?.range ? { range: opts.range } : {}) });
    return inner.getObject(key, opts);
  };
  wrapper.getObjectStream = (key, opts) => {
    gets.push({ key, ...(opts?.range ? { range: opts.range } : {}) });
    return inner.getObjectStream(key, opts);
  };
  // The parts of large files are read with readRange (reused buffers) where the store has it.
  if (isRangeReadable(inner)) {
    (wrapper as ObjectStore & RangeReadable).readRange = (key, range, onData, opts) => {
      gets.push({ key, range });
      return inner.readRange(key, range, onData, opts);
    };
  }
  return { store: wrapper, gets };
}

void t.test('a large file is fetched in parallel ranged GETs, one per part, and restored byte-identical', async (t) => {
  const prefix = 'restore-large/job';
  const big = randomBytes(40 * MiB + 123);
  const small = randomBytes(1000);
  const manifest = await commit(prefix, 'checkpoint-7', { 'model.safetensors': big, 'trainer_state.json': small }, { partSize: 4 * MiB });
  const targetDir = t.testdir({});
  const recorder = recordingGets(store);
  const progress: number[] = [];

  const result = await restoreNewest({ store: recorder.store, prefix, targetDir, logger: silentLogger(), clock: systemClock, concurrency: 4, onProgress: (p) => progress.push(p.doneBytes) });
  t.equal(result?.bytes, big.length + small.length);
  const restored = fs.readFileSync(path.join(targetDir, 'checkpoint-7', 'model.safetensors'));
  t.equal(restored.length, big.length);
  t.equal(sha256(restored), sha256(big), 'byte-identical');
  t.ok(fs.readFileSync(path.join(targetDir, 'checkpoint-7', 'trainer_state.json')).equals(small));

  const bigKey = manifest.files.find((f) => f.path === 'model.safetensors')?.key;
  const ranged = recorder.gets.filter((g) => g.key === bigKey);
  t.equal(ranged.length, 11, '40 MiB + 123 bytes in 4 MiB parts is 11 GETs');
  t.ok(ranged.every((g) => (g.range?.start ?? -1) % (4 * MiB) === 0), 'every GET starts at a part boundary');
  t.equal(progress.at(-1), big.length + small.length, 'progress reaches the total');
  t.ok(ranged.every((g) => g.range !== undefined), 'every GET of the large file is ranged');
  const covered = ranged.map((g) => g.range!).sort((a, b) => a.start - b.start);
  t.equal(covered[0]?.start, 0);
  t.equal(covered.at(-1)?.end, big.length - 1);
  t.ok(covered.every((r, i) => i === 0 || r.start === (covered[i - 1]?.end ?? 0) + 1), 'the ranges cover the file without gaps or overlaps');
  const smallKey = manifest.files.find((f) => f.path === 'trainer_state.json')?.key;
  t.same(recorder.gets.filter((g) => g.key === smallKey).map((g) => g.range), [{ start: 0, end: small.length - 1 }], 'the small file is fetched in one GET');
});

void t.test('a corrupted object in the newest checkpoint: the previous one is restored, and the restore says so', async (t) => {
  const prefix = 'restore-corrupt/job';
  const previous = { 'a.bin': randomBytes(5000), 'b/c.bin': randomBytes(100) };
  await commit(prefix, 'step-000010', previous);
  const newest = await commit(prefix, 'step-000020', { 'a.bin': randomBytes(5000), 'b/c.bin': randomBytes(100) });
  // Same size, different bytes: only the checksum can tell.
  const victim = newest.files.find((f) => f.path === 'b/c.bin')!;
  await store.putObject(victim.key, randomBytes(100));
  const targetDir = t.testdir({});
  const { logger, warnings } = capturingLogger();

  const result = await restoreNewest({ store, prefix, targetDir, logger, clock: systemClock });
  t.equal(result?.manifest.checkpointId, 'step-000010');
  sameTree(t, readTree(path.join(targetDir, 'step-000010')), previous, 'the previous checkpoint');
  t.equal(result?.skipped.length, 1);
  t.equal(result?.skipped[0]?.checkpointId, 'step-000020');
  t.match(result?.skipped[0]?.reason, /b\/c\.bin.*SHA-256/);
  t.notOk(fs.existsSync(path.join(targetDir, 'step-000020')), 'the corrupt checkpoint is not under its name');
  noLeftovers(t, targetDir);
  const warned = warnings().find((w) => w.includes('step-000020'));
  t.match(warned, /cannot be restored/);
  t.match(warned, /falling back to the previous committed checkpoint step-000010/);
});

void t.test('a missing object (or one of the wrong size) in the newest: the previous one is restored', async (t) => {
  const prefix = 'restore-missing/job';
  const oldest = { 'w.bin': randomBytes(3 * MiB) };
  await commit(prefix, 'step-1', oldest);
  const middle = await commit(prefix, 'step-2', { 'w.bin': randomBytes(3 * MiB) });
  const newest = await commit(prefix, 'step-3', { 'w.bin': randomBytes(3 * MiB), 'x.bin': randomBytes(10) });
  await store.deleteObjects([newest.files.find((f) => f.path === 'x.bin')!.key]);
  // Truncated: fetched in ranges, so the size is what fails.
  await store.putObject(middle.files[0]!.key, randomBytes(2 * MiB));
  const targetDir = t.testdir({});

  const result = await restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock, rangeBytes: MiB });
  t.equal(result?.manifest.checkpointId, 'step-1');
  sameTree(t, readTree(path.join(targetDir, 'step-1')), oldest, 'the oldest checkpoint');
  t.same(result?.skipped.map((s) => s.checkpointId), ['step-3', 'step-2']);
  t.match(result?.skipped[0]?.reason, /x\.bin/);
  t.match(result?.skipped[1]?.reason, /w\.bin.*2097152 bytes.*3145728/);
  t.same(fs.readdirSync(targetDir), ['step-1']);
});

void t.test('nothing committed: undefined, the job starts fresh', async (t) => {
  const prefix = 'restore-none/job';
  // An upload that never committed does not count.
  await store.putObject(fileKey(prefix, 'step-5', 'a.bin'), 'partial');
  const targetDir = path.join(t.testdir({}), 'not-yet-created');
  t.equal(await restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock }), undefined);
  t.notOk(fs.existsSync(targetDir), 'nothing is written');
});

void t.test('an entry deduplicated against an older checkpoint restores from that checkpoint\'s object', async (t) => {
  const prefix = 'restore-dedupe/job';
  const weights = randomBytes(50_000);
  const first = await commit(prefix, 'step-000001', { 'weights.bin': weights, 'opt.bin': randomBytes(10) });
  const opt = randomBytes(20);
  const second = await commit(prefix, 'step-000002', { 'weights.bin': weights, 'opt.bin': opt }, { reuse: { 'weights.bin': first.files[0]!.key } });
  t.equal(second.files[0]?.key, fileKey(prefix, 'step-000001', 'weights.bin'));
  t.same(await store.headObject(fileKey(prefix, 'step-000002', 'weights.bin')), undefined, 'the newer checkpoint has no copy of its own');
  const targetDir = t.testdir({});
  const result = await restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock });
  t.equal(result?.manifest.checkpointId, 'step-000002');
  sameTree(t, readTree(path.join(targetDir, 'step-000002')), { 'weights.bin': weights, 'opt.bin': opt }, 'restored');
});

void t.test('every committed checkpoint corrupt: an error that says what to do, nothing under a real name', async (t) => {
  const prefix = 'restore-all-bad/job';
  const a = await commit(prefix, 'step-1', { 'a.bin': randomBytes(10) });
  const b = await commit(prefix, 'step-2', { 'a.bin': randomBytes(10) });
  await store.putObject(a.files[0]!.key, randomBytes(10));
  await store.putObject(b.files[0]!.key, randomBytes(10));
  const targetDir = t.testdir({});
  await rejectsCode(t, restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock }), 'CHECKPOINT_CORRUPT', /none of the 2 committed checkpoint.*step-2.*step-1.*start the job fresh/);
  t.same(fs.readdirSync(targetDir), []);
});

void t.test('an aborted restore stops and leaves nothing half-restored', async (t) => {
  const prefix = 'restore-abort/job';
  await commit(prefix, 'step-1', { 'big.bin': randomBytes(8 * MiB) });
  const targetDir = t.testdir({ 'step-1': { 'local.bin': 'the local copy' } });
  const controller = new AbortController();
  const slow = Object.create(store) as ObjectStore;
  slow.getObjectStream = async (key, opts) => {
    if (opts?.range) controller.abort(new Error('the job was cancelled'));
    return store.getObjectStream(key, opts);
  };
  (slow as ObjectStore & RangeReadable).readRange = (key, range, onData, opts) => {
    controller.abort(new Error('the job was cancelled'));
    return store.readRange(key, range, onData, opts);
  };
  await t.rejects(restoreNewest({ store: slow, prefix, targetDir, logger: silentLogger(), clock: systemClock, signal: controller.signal }), { message: 'the job was cancelled' });
  t.same(fs.readdirSync(targetDir), ['step-1']);
  t.same(fs.readdirSync(path.join(targetDir, 'step-1')), ['local.bin'], 'what was there is untouched');
});

void t.test('what an interrupted restore left in the directory is removed', async (t) => {
  const prefix = 'restore-leftovers/job';
  await commit(prefix, 'step-3', { 'a.bin': Buffer.from('three') });
  const targetDir = t.testdir({ '.stevedore-restore-abc123': { payload: { 'a.bin': 'half' } }, 'step-2': { 'a.bin': 'two' } });
  const result = await restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock });
  t.equal(result?.manifest.checkpointId, 'step-3');
  t.same(fs.readdirSync(targetDir).sort(), ['step-2', 'step-3']);
});

void t.test('a failure of the endpoint itself is not taken for a corrupt checkpoint', async (t) => {
  const prefix = 'restore-outage/job';
  await commit(prefix, 'step-1', { 'a.bin': Buffer.from('one') });
  await commit(prefix, 'step-2', { 'a.bin': Buffer.from('two') });
  const failing = Object.create(store) as ObjectStore;
  failing.getObject = (key, opts) => (key.endsWith('manifest.json') ? store.getObject(key, opts) : Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1')));
  failing.getObjectStream = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1'));
  (failing as ObjectStore & RangeReadable).readRange = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1'));
  const targetDir = t.testdir({});
  await rejectsCode(t, restoreNewest({ store: failing, prefix, targetDir, logger: silentLogger(), clock: systemClock }), 'CHECKPOINT_RESTORE_FAILED', /step-2.*ECONNREFUSED.*S3 endpoint/);
  t.same(fs.readdirSync(targetDir), [], 'no fallback to step-1, nothing left behind');
});

void t.test('through an endpoint that fails a fifth of the requests, the newest checkpoint is still restored intact', async (t) => {
  const prefix = 'restore-faults/job';
  const files = { 'model.bin': randomBytes(6 * MiB + 7), 'optim/a.bin': randomBytes(40_000), 'optim/b.bin': randomBytes(3), 'empty': Buffer.alloc(0) };
  await commit(prefix, 'step-1', { 'model.bin': randomBytes(10) });
  await commit(prefix, 'step-2', files);
  const proxy = await startFaultProxy({ target: s3.endpoint, failureRate: 0.2, faults: ['503', 'reset', 'truncate'], seed: 7 });
  t.teardown(() => proxy.close());
  const flaky = new S3ObjectStore({ bucket: BUCKET, config: { ...s3.config, endpoint: proxy.endpoint, maxAttempts: 4 }, rounds: 4 });
  t.teardown(() => flaky.destroy());
  const targetDir = t.testdir({});

  const result = await restoreNewest({ store: flaky, prefix, targetDir, logger: silentLogger(), clock: systemClock, rangeBytes: MiB });
  t.equal(result?.manifest.checkpointId, 'step-2');
  t.same(result?.skipped, [], 'a failed request is retried, not taken for a corrupt checkpoint');
  sameTree(t, readTree(path.join(targetDir, 'step-2')), files, 'restored');
  t.ok((proxy.counts['503'] ?? 0) + (proxy.counts.reset ?? 0) + (proxy.counts.truncate ?? 0) > 0, 'faults were injected');
});

void t.test('a v1 manifest (one SHA-256 per file) is still restored and checked, and a corrupt v1 checkpoint falls back', async (t) => {
  const prefix = 'restore-v1/job';
  const previous = { 'model.bin': randomBytes(3 * MiB + 5), 'meta.json': Buffer.from('{"step":1}') };
  await commit(prefix, 'step-1', previous, { format: 'v1' });
  const newest = await commit(prefix, 'step-2', { 'model.bin': randomBytes(3 * MiB + 5), 'meta.json': Buffer.from('{"step":2}') }, { format: 'v1' });
  // Same size, different bytes in the large file (fetched in ranges, hashed whole).
  await store.putObject(newest.files.find((f) => f.path === 'model.bin')!.key, randomBytes(3 * MiB + 5));
  const targetDir = t.testdir({});

  const result = await restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock, rangeBytes: MiB });
  t.equal(result?.manifest.format, MANIFEST_FORMAT_V1);
  t.equal(result?.manifest.checkpointId, 'step-1');
  t.match(result?.skipped[0]?.reason, /model\.bin.*SHA-256/);
  sameTree(t, readTree(path.join(targetDir, 'step-1')), previous, 'the v1 checkpoint');
});

void t.test('a part whose bytes differ from its digest makes the checkpoint fall back, wherever the part lies', async (t) => {
  const prefix = 'restore-bad-part/job';
  const previous = { 'w.bin': randomBytes(3 * MiB) };
  await commit(prefix, 'step-1', previous);
  const good = randomBytes(3 * MiB);
  const newest = await commit(prefix, 'step-2', { 'w.bin': good });
  // Only the last part changes: every other range verifies.
  const bad = Buffer.from(good);
  bad[bad.length - 1] = (bad[bad.length - 1]! + 1) % 256;
  await store.putObject(newest.files[0]!.key, bad);
  const targetDir = t.testdir({});

  const result = await restoreNewest({ store, prefix, targetDir, logger: silentLogger(), clock: systemClock });
  t.equal(result?.manifest.checkpointId, 'step-1');
  t.match(result?.skipped[0]?.reason, /w\.bin.*part 3 of 3/);
  sameTree(t, readTree(path.join(targetDir, 'step-1')), previous, 'the previous checkpoint');
});
