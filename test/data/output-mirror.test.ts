// The output mirror against a real S3-compatible server on loopback, real files,
// and a fault-injecting proxy.
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { OutputMirror } from '../../src/data/output-mirror.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { systemClock } from '../../src/util/clock.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';

const BUCKET = 'stevedore-outputs';
const MiB = 1024 * 1024;

const s3 = await startS3Server({ buckets: [BUCKET] });
t.teardown(() => s3.close());
const store = new S3ObjectStore({ bucket: BUCKET, config: s3.config });
t.teardown(() => store.destroy());

function mirror(dir: string, prefix: string, over: ObjectStore = store, intervalMs = 60_000): OutputMirror {
  return new OutputMirror({ dir, store: over, prefix, intervalMs, clock: systemClock, logger: silentLogger(), partSizeBytes: 5 * MiB });
}

function write(dir: string, rel: string, content: Buffer | string): void {
  fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
  fs.writeFileSync(path.join(dir, rel), content);
}

/** The objects under the prefix, relative key -> content. */
async function remote(prefix: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const o of await store.listObjects(`${prefix}/`)) out[o.key.slice(prefix.length + 1)] = (await store.getObject(o.key)).toString('base64');
  return out;
}

const b64 = (files: Record<string, Buffer | string>): Record<string, string> => Object.fromEntries(Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
const count = (op: string): number => s3.requests[op] ?? 0;

void t.test('uploads new and changed files on each pass, not unchanged ones, and the rest at close(final)', async (t) => {
  const dir = t.testdir();
  const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-host-'));
  t.teardown(() => fs.rmSync(elsewhere, { recursive: true, force: true }));
  const outside = path.join(elsewhere, 'host-secret.txt');
  fs.writeFileSync(outside, 'not for upload');
  const m = mirror(dir, 'runs/r1/output');

  write(dir, 'metrics.jsonl', '{"step":1}\n');
  write(dir, 'eval/results.json', '{"acc":0.5}');
  fs.symlinkSync(outside, path.join(dir, 'link-to-host.txt'));
  let stats = await m.syncNow();
  t.match(stats, { filesUploaded: 2, bytesUploaded: 11 + 11, errors: 0 });
  t.ok(stats.lastSyncMs > 0, 'the pass is recorded as a complete sync');
  t.same(await remote('runs/r1/output'), b64({ 'metrics.jsonl': '{"step":1}\n', 'eval/results.json': '{"acc":0.5}' }), 'both files, at their relative paths; the symbolic link is not followed');

  const puts = count('PutObject');
  stats = await m.syncNow();
  t.equal(stats.filesUploaded, 2, 'nothing unchanged is uploaded again');
  t.equal(count('PutObject'), puts, 'no request for unchanged files');

  fs.appendFileSync(path.join(dir, 'metrics.jsonl'), '{"step":2}\n');
  write(dir, 'eval/plot.svg', '<svg/>');
  fs.rmSync(path.join(dir, 'eval/results.json'));
  stats = await m.syncNow();
  t.equal(stats.filesUploaded, 4, 'the changed file and the new file');
  t.same(await remote('runs/r1/output'), b64({ 'metrics.jsonl': '{"step":1}\n{"step":2}\n', 'eval/results.json': '{"acc":0.5}', 'eval/plot.svg': '<svg/>' }), 'a local delete deletes nothing in S3');

  // Same size, new mtime: uploaded again.
  write(dir, 'eval/plot.svg', '<SVG/>');
  const later = new Date(Date.now() + 5000);
  fs.utimesSync(path.join(dir, 'eval/plot.svg'), later, later);
  write(dir, 'final/model.bin', 'weights');
  const closed = await m.close({ final: true, deadlineMs: Date.now() + 30_000 });
  t.equal(closed.filesUploaded, 6, 'close(final) uploads what changed since the last pass');
  t.equal(closed.errors, 0);
  t.same((await remote('runs/r1/output'))['eval/plot.svg'], Buffer.from('<SVG/>').toString('base64'));
  t.same((await remote('runs/r1/output'))['final/model.bin'], Buffer.from('weights').toString('base64'));
  t.same(await m.close({ final: true }), closed, 'close is safe twice');
  t.same(m.stats, closed);
});

void t.test('a large file goes up in multipart parts of the part size', async (t) => {
  const dir = t.testdir();
  const big = randomBytes(11 * MiB);
  write(dir, 'ckpt/weights.safetensors', big);
  const m = mirror(dir, 'runs/big');
  const parts = count('UploadPart');
  const stats = await m.close({ final: true });
  t.equal(count('UploadPart') - parts, 3, '11 MiB in 5 MiB parts');
  t.match(stats, { filesUploaded: 1, bytesUploaded: big.length, errors: 0 });
  t.ok((await store.getObject('runs/big/ckpt/weights.safetensors')).equals(big), 'the object equals the file');
  t.same(await store.listMultipartUploads('runs/big/'), [], 'no multipart upload is left open');
});

void t.test('start() syncs on the timer until close', async (t) => {
  const dir = t.testdir();
  const m = mirror(dir, 'runs/timer', store, 100);
  m.start();
  write(dir, 'log.txt', 'one');
  let seen: Buffer | undefined;
  for (let i = 0; i < 100 && seen === undefined; i++) {
    await new Promise((r) => setTimeout(r, 50));
    if (await store.headObject('runs/timer/log.txt')) seen = await store.getObject('runs/timer/log.txt');
  }
  t.equal(seen?.toString(), 'one', 'the timer uploaded the file without a syncNow');
  const stats = await m.close({ final: false });
  t.equal(stats.filesUploaded, 1);
  write(dir, 'late.txt', 'after close');
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await store.headObject('runs/timer/late.txt'), undefined, 'no pass after close');
});

void t.test('a missing directory is counted as an error, and the mirror keeps going', async (t) => {
  const dir = path.join(t.testdir(), 'not-yet');
  const m = mirror(dir, 'runs/missing');
  const stats = await m.syncNow();
  t.match(stats, { errors: 1, filesUploaded: 0, lastSyncMs: 0 });
  write(dir, 'a.txt', 'a');
  t.match(await m.close({ final: true }), { errors: 1, filesUploaded: 1 });
});

void t.test('through an endpoint failing 20% of requests, every file ends up equal', async (t) => {
  const proxy = await startFaultProxy({ target: s3.endpoint, failureRate: 0.2, stallMs: 1500, seed: 11 });
  t.teardown(() => proxy.close());
  // No retries inside the store: every fault reaches the mirror, which tries again on its next pass.
  const flaky = new S3ObjectStore({ bucket: BUCKET, config: { ...s3.config, endpoint: proxy.endpoint, maxAttempts: 1 }, rounds: 1, idleTimeoutMs: 500 });
  t.teardown(() => flaky.destroy());
  const dir = t.testdir();
  const files: Record<string, Buffer> = { 'big.bin': randomBytes(11 * MiB) };
  for (let i = 0; i < 20; i++) files[`shard-${String(i).padStart(2, '0')}/part.txt`] = randomBytes(1000 + i);
  for (const [rel, content] of Object.entries(files)) write(dir, rel, content);
  const m = mirror(dir, 'runs/flaky', flaky);

  let stats = await m.syncNow();
  // The job keeps writing between passes.
  files['shard-00/part.txt'] = randomBytes(3000);
  write(dir, 'shard-00/part.txt', files['shard-00/part.txt']);
  for (let pass = 0; pass < 40 && !(stats.lastSyncMs > 0 && pass > 0); pass++) stats = await m.syncNow();
  stats = await m.close({ final: true });
  t.ok(stats.errors > 0, `failures were counted (${stats.errors})`);
  t.ok(stats.lastSyncMs > 0, 'a pass completed without failure');
  t.same(await remote('runs/flaky'), b64(files), 'every file is equal in S3');
  t.same(await store.listMultipartUploads('runs/flaky/'), [], 'failed multipart uploads were aborted');
  t.ok((proxy.counts.requests ?? 0) > 0 && Object.keys(proxy.counts).length > 2, 'faults were injected');
});
