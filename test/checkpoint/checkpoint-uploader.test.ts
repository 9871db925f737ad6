import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ByteBudget } from '../../src/checkpoint/byte-budget.ts';
import { CheckpointUploader, type CheckpointUploaderOptions, type CommittedCheckpoint } from '../../src/checkpoint/checkpoint-uploader.ts';
import { MANIFEST_FORMAT, fileKey, manifestKey, parseManifest, partDigests, type Manifest, type ManifestFile } from '../../src/checkpoint/manifest.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { systemClock } from '../../src/util/clock.ts';
import { StevedoreError } from '../../src/util/errors.ts';
import { createLogger, silentLogger } from '../../src/util/logger.ts';
import { startS3Server, type S3TestServer } from '../helpers/s3-server.ts';
import { scanCandidates } from './fixtures/scan.ts';

const MIB = 1024 * 1024;
const PART = 5 * MIB;
const BUCKET = 'ckpt';
const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'upload-child.ts');

/** A budget that remembers the most it ever had in use. */
class RecordingBudget extends ByteBudget {
  peak = 0;
  override async acquire(bytes: number, signal?: AbortSignal): Promise<() => void> {
    const release = await super.acquire(bytes, signal);
    this.peak = Math.max(this.peak, this.inUse);
    return release;
  }
}

interface Env {
  server: S3TestServer;
  store: S3ObjectStore;
  dir: string;
}

async function setup(t: Test, conditionalWrites = true): Promise<Env> {
  const server = await startS3Server({ buckets: [BUCKET], conditionalWrites });
  const store = new S3ObjectStore({ bucket: BUCKET, config: server.config });
  t.teardown(async () => {
    store.destroy();
    await server.close();
  });
  const dir = t.testdir();
  return { server, store, dir };
}

function makeUploader(t: Test, store: ObjectStore, opts: Partial<CheckpointUploaderOptions> = {}): { uploader: CheckpointUploader; commits: CommittedCheckpoint[] } {
  const commits: CommittedCheckpoint[] = [];
  const uploader = new CheckpointUploader({
    store,
    prefix: 'runs/job-1',
    jobId: 'job-1',
    attempt: 1,
    nodeId: 'node-a',
    clock: systemClock,
    logger: silentLogger(),
    partSizeBytes: PART,
    budget: new ByteBudget(64 * MIB),
    keep: 10,
    keepEvery: 0,
    onCommitted: (c) => commits.push(c),
    ...opts,
  });
  t.teardown(() => uploader.close());
  return { uploader, commits };
}

function write(file: string, data: Buffer | string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, data);
}

/** The part digests a v2 manifest entry must list for `data`. */
function digests(data: Buffer | string, f: Pick<ManifestFile, 'partSize'> | undefined): string[] {
  return partDigests(Buffer.from(data), f?.partSize ?? 1);
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function manifestOf(store: ObjectStore, prefix: string, id: string): Promise<Manifest | undefined> {
  const key = manifestKey(prefix, id);
  if (!(await store.headObject(key))) return undefined;
  return parseManifest((await store.getObject(key)).toString('utf8'), key);
}

/** Every file of the manifest: the object it names holds exactly the local file's bytes, and the hash and size agree. */
async function assertObjectsEqualLocal(t: Test, store: ObjectStore, m: Manifest, localRoot: string): Promise<void> {
  for (const f of m.files) {
    const local = fs.readFileSync(m.kind === 'file' ? path.join(localRoot, m.name) : path.join(localRoot, m.name, f.path));
    const object = await store.getObject(f.key);
    t.ok(object.equals(local), `${m.checkpointId}/${f.path}: the object ${f.key} equals the local file`);
    t.same(f.parts, digests(local, f), `${m.checkpointId}/${f.path}: manifest part digests`);
    t.equal(f.parts?.length, Math.max(1, Math.ceil(local.length / (f.partSize ?? 1))), `${m.checkpointId}/${f.path}: one digest per part`);
    t.equal(f.size, local.length, `${m.checkpointId}/${f.path}: manifest size`);
  }
  t.equal(m.format, MANIFEST_FORMAT, `${m.checkpointId}: format v2`);
  t.equal(m.totalBytes, m.files.reduce((s, f) => s + f.size, 0), `${m.checkpointId}: totalBytes`);
}

async function openUploads(store: ObjectStore, prefix: string): Promise<number> {
  return (await store.listMultipartUploads(`${prefix}/`)).length;
}

void t.test('DCP checkpoints are committed with objects equal to the local files; an unchanged file is reused', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader, commits } = makeUploader(t, store);
  await uploader.start();
  const shared = randomBytes(200 * 1024);

  write(path.join(dir, 'step-000010', '__0_0.distcp'), randomBytes(3 * MIB));
  write(path.join(dir, 'step-000010', '__1_0.distcp'), randomBytes(MIB + 17));
  write(path.join(dir, 'step-000010', 'extra', 'rng.pt'), randomBytes(1000));
  write(path.join(dir, 'step-000010', 'common.bin'), shared);
  uploader.update(scanCandidates(dir));
  t.equal(await uploader.flush(), undefined, 'nothing is committed before .metadata exists');
  t.equal(await manifestOf(store, 'runs/job-1', 'step-000010'), undefined, 'no manifest for the incomplete checkpoint');

  write(path.join(dir, 'step-000010', '.metadata'), 'dcp metadata 10');
  uploader.update(scanCandidates(dir));
  const first = await uploader.flush();
  t.equal(first?.manifest.checkpointId, 'step-000010');
  t.equal(first?.manifestUrl, 's3://ckpt/runs/job-1/step-000010/_stevedore/manifest.json');
  const m10 = await manifestOf(store, 'runs/job-1', 'step-000010');
  if (!m10) throw new Error('no manifest for step-000010');
  t.same(m10, first?.manifest, 'the manifest in S3 is the one reported');
  t.same(m10.files.map((f) => f.path), ['.metadata', '__0_0.distcp', '__1_0.distcp', 'common.bin', 'extra/rng.pt']);
  t.match(m10, { step: 10, kind: 'directory', jobId: 'job-1', attempt: 1, nodeId: 'node-a', name: 'step-000010' });
  t.equal(m10.uploadedBytes, m10.totalBytes, 'everything was new');
  await assertObjectsEqualLocal(t, store, m10, dir);

  write(path.join(dir, 'step-000020', '__0_0.distcp'), randomBytes(3 * MIB));
  write(path.join(dir, 'step-000020', '__1_0.distcp'), randomBytes(MIB));
  write(path.join(dir, 'step-000020', 'common.bin'), shared);
  write(path.join(dir, 'step-000020', '.metadata'), 'dcp metadata 20');
  uploader.update(scanCandidates(dir));
  const second = await uploader.flush();
  const m20 = await manifestOf(store, 'runs/job-1', 'step-000020');
  if (!m20) throw new Error('no manifest for step-000020');
  t.equal(second?.manifest.checkpointId, 'step-000020', 'flush returns the newest committed');
  const common = m20.files.find((f) => f.path === 'common.bin');
  t.equal(common?.key, fileKey('runs/job-1', 'step-000010', 'common.bin'), 'the unchanged file points at the earlier object');
  t.equal(m20.uploadedBytes, m20.totalBytes - shared.length, 'uploadedBytes leaves out the reused file');
  t.equal(uploader.stats.reusedBytes, shared.length);
  t.notOk(await store.headObject(fileKey('runs/job-1', 'step-000020', 'common.bin')), 'the unchanged file was not uploaded again');
  await assertObjectsEqualLocal(t, store, m20, dir);

  t.same(commits.map((c) => c.manifest.checkpointId), ['step-000010', 'step-000020'], 'onCommitted once per checkpoint');
  t.ok(commits.every((c) => c.timeToCommitMs >= 0 && c.timeToCommitMs < 30_000 && c.timeToCommitMs === c.manifest.committedMs - c.manifest.lastWriteMs));
  t.same(uploader.committed().map((m) => m.checkpointId), ['step-000020', 'step-000010'], 'committed() is newest first');
  t.equal(await openUploads(store, 'runs/job-1'), 0, 'no multipart upload left open');
});

void t.test('a 40 MiB file written slowly is streamed in parts before it is complete and committed right after', async (t) => {
  const { store, dir } = await setup(t);
  const budget = new RecordingBudget(11 * MIB);
  const { uploader, commits } = makeUploader(t, store, { budget });
  await uploader.start();
  const file = path.join(dir, 'step-000100', 'model.distcp');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, 'w');
  const written: Buffer[] = [];
  for (let mib = 1; mib <= 40; mib++) {
    const chunk = randomBytes(MIB);
    written.push(chunk);
    fs.writeSync(fd, chunk);
    uploader.update(scanCandidates(dir));
    // Once a part's worth is there, make sure the test really sees a part go out while the file grows.
    if (mib === 12) await waitFor('a first part', () => uploader.stats.partsUploaded >= 1);
    await sleep(15);
  }
  fs.closeSync(fd);
  t.ok(uploader.stats.bytesUploadedBeforeComplete >= PART, `streamed ${uploader.stats.bytesUploadedBeforeComplete} bytes before the checkpoint was complete`);
  t.equal(uploader.stats.bytesUploadedBeforeComplete % PART, 0, 'only whole parts go out before completion');
  t.equal(commits.length, 0, 'nothing committed while incomplete');

  write(path.join(dir, 'step-000100', '.metadata'), 'meta');
  const completedAt = Date.now();
  uploader.update(scanCandidates(dir));
  const committed = await uploader.flush();
  const commitTook = Date.now() - completedAt;
  t.equal(committed?.manifest.checkpointId, 'step-000100');
  t.ok(commitTook < 10_000, `committed ${commitTook} ms after completion`);
  const afterComplete = uploader.stats.bytesUploaded - uploader.stats.bytesUploadedBeforeComplete;
  t.ok(afterComplete < 40 * MIB, `only ${afterComplete} bytes were left to send at completion`);
  const streamedParts = uploader.stats.bytesUploadedBeforeComplete / PART;
  t.ok(uploader.stats.reverifiedParts >= 1 && uploader.stats.reverifiedParts <= streamedParts, `only parts read while the file grew are hashed again at commit (${uploader.stats.reverifiedParts} of ${streamedParts} streamed, 8 in all)`);
  t.equal(uploader.stats.reuploadedFiles, 0, 'a file that only grew is not uploaded again');
  const entry = committed?.manifest.files.find((f) => f.path === 'model.distcp');
  t.same(entry?.parts, digests(Buffer.concat(written), entry), 'part digests computed while streaming are the file\'s');
  if (committed) await assertObjectsEqualLocal(t, store, committed.manifest, dir);
  t.ok(committed && committed.timeToCommitMs >= 0 && committed.timeToCommitMs < 15_000, `time to commit reported: ${committed?.timeToCommitMs} ms`);
  t.ok(budget.peak > 0 && budget.peak <= budget.limit, `budget peak ${budget.peak} within ${budget.limit}`);
  t.equal(budget.inUse, 0, 'every buffer was given back');
  t.equal(await openUploads(store, 'runs/job-1'), 0);
});

void t.test('a file rewritten in place after its parts were uploaded is uploaded again; the manifest has the new hash', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader } = makeUploader(t, store);
  await uploader.start();
  const file = path.join(dir, 'step-000200', 'shard.distcp');
  write(file, randomBytes(12 * MIB));
  uploader.update(scanCandidates(dir));
  await waitFor('two parts of the first content', () => uploader.stats.partsUploaded >= 2);

  const rewritten = randomBytes(12 * MIB);
  const inoBefore = fs.statSync(file).ino;
  fs.writeFileSync(file, rewritten);
  t.equal(fs.statSync(file).ino, inoBefore, 'same inode: rewritten in place');
  write(path.join(dir, 'step-000200', '.metadata'), 'meta');
  uploader.update(scanCandidates(dir));
  const committed = await uploader.flush();
  const entry = committed?.manifest.files.find((f) => f.path === 'shard.distcp');
  t.same(entry?.parts, digests(rewritten, entry), 'manifest carries the new content\'s digests');
  t.ok((await store.getObject(fileKey('runs/job-1', 'step-000200', 'shard.distcp'))).equals(rewritten), 'the object holds the new content');
  t.ok(uploader.stats.reuploadedFiles >= 1, 'counted as uploaded again');
});

void t.test('a part streamed while the file grew and then rewritten in place is caught, though the later parts were read after the rewrite', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader } = makeUploader(t, store);
  await uploader.start();
  const file = path.join(dir, 'step-000300', 'shard.distcp');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeSync(fd, randomBytes(12 * MIB));
    uploader.update(scanCandidates(dir));
    await waitFor('two parts streamed', () => uploader.stats.partsUploaded >= 2);
    // In place, inside the first part (already sent), then the file grows on: the tail is read after this.
    fs.writeSync(fd, randomBytes(MIB), 0, MIB, 100);
    fs.writeSync(fd, randomBytes(3 * MIB), 0, 3 * MIB, 12 * MIB);
  } finally {
    fs.closeSync(fd);
  }
  write(path.join(dir, 'step-000300', '.metadata'), 'meta');
  uploader.update(scanCandidates(dir));
  const committed = await uploader.flush();
  const local = fs.readFileSync(file);
  const entry = committed?.manifest.files.find((f) => f.path === 'shard.distcp');
  t.same(entry?.parts, digests(local, entry), 'the manifest lists the file as it is now');
  t.ok((await store.getObject(fileKey('runs/job-1', 'step-000300', 'shard.distcp'))).equals(local), 'the object holds the rewritten content');
  t.ok(uploader.stats.reuploadedFiles >= 1, 'uploaded again');
  if (committed) await assertObjectsEqualLocal(t, store, committed.manifest, dir);
});

void t.test('a streamed file that stopped changing is proven before the commit; a rewrite in place after that proof is still caught', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader } = makeUploader(t, store);
  await uploader.start();
  const file = path.join(dir, 'step-000400', 'shard.distcp');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, randomBytes(6 * MIB));
  uploader.update(scanCandidates(dir));
  await waitFor('a part streamed', () => uploader.stats.partsUploaded >= 1);
  fs.writeSync(fd, randomBytes(6 * MIB), 0, 6 * MIB, 6 * MIB);
  fs.closeSync(fd);
  uploader.update(scanCandidates(dir));
  await waitFor('two parts streamed and proven once the file was quiet', () => uploader.stats.partsUploaded >= 2 && uploader.stats.reverifiedParts >= 1);
  t.equal(await manifestOf(store, 'runs/job-1', 'step-000400'), undefined, 'not committed: no .metadata yet');

  const fd2 = fs.openSync(file, 'r+');
  fs.writeSync(fd2, randomBytes(MIB), 0, MIB, 0);
  fs.closeSync(fd2);
  write(path.join(dir, 'step-000400', '.metadata'), 'meta');
  uploader.update(scanCandidates(dir));
  const committed = await uploader.flush();
  const local = fs.readFileSync(file);
  const entry = committed?.manifest.files.find((f) => f.path === 'shard.distcp');
  t.same(entry?.parts, digests(local, entry), 'the manifest lists the file as it is now');
  t.ok((await store.getObject(fileKey('runs/job-1', 'step-000400', 'shard.distcp'))).equals(local), 'the object holds the rewritten content');
  t.ok(uploader.stats.reuploadedFiles >= 1, 'uploaded again');
});

void t.test('a committed directory rewritten in place becomes name.r2; unchanged files are reused and the first checkpoint stays intact', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader } = makeUploader(t, store);
  await uploader.start();
  const a = randomBytes(300_000);
  const b1 = randomBytes(100_000);
  write(path.join(dir, 'latest', 'a.bin'), a);
  write(path.join(dir, 'latest', 'b.bin'), b1);
  write(path.join(dir, 'latest', 'COMMIT'), '1');
  const rule = { kind: 'marker', marker: 'COMMIT' } as const;
  uploader.update(scanCandidates(dir, rule));
  t.equal((await uploader.flush())?.manifest.checkpointId, 'latest');
  uploader.update(scanCandidates(dir, rule));
  t.equal((await uploader.flush())?.manifest.checkpointId, 'latest', 'the same files again: no new checkpoint');

  const b2 = randomBytes(100_000);
  await sleep(5);
  write(path.join(dir, 'latest', 'b.bin'), b2);
  uploader.update(scanCandidates(dir, rule));
  const second = await uploader.flush();
  t.equal(second?.manifest.checkpointId, 'latest.r2');
  t.equal(second?.manifest.name, 'latest');
  const b2Entry = second?.manifest.files.find((f) => f.path === 'b.bin');
  t.same(b2Entry?.parts, digests(b2, b2Entry));
  t.equal(second?.manifest.files.find((f) => f.path === 'a.bin')?.key, fileKey('runs/job-1', 'latest', 'a.bin'), 'unchanged a.bin reused');
  const first = await manifestOf(store, 'runs/job-1', 'latest');
  const b1Entry = first?.files.find((f) => f.path === 'b.bin');
  t.same(b1Entry?.parts, digests(b1, b1Entry), 'the first manifest is untouched');
  t.ok((await store.getObject(fileKey('runs/job-1', 'latest', 'b.bin'))).equals(b1), 'and so is its object');
  t.ok((await store.getObject(fileKey('runs/job-1', 'latest.r2', 'b.bin'))).equals(b2));
});

void t.test('retention keeps exactly the newest 2 plus every 20th step; shared objects survive; a local delete loses nothing', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader } = makeUploader(t, store, { keep: 2, keepEvery: 20 });
  await uploader.start();
  const shared = randomBytes(50_000);
  for (const step of [10, 20, 30, 40, 50]) {
    const name = `step-${String(step).padStart(6, '0')}`;
    write(path.join(dir, name, 'weights.bin'), randomBytes(64_000));
    write(path.join(dir, name, 'vocab.bin'), shared);
    write(path.join(dir, name, '.metadata'), `meta ${step}`);
    uploader.update(scanCandidates(dir));
    t.equal((await uploader.flush())?.manifest.step, step);
    if (step === 30) {
      // The trainer rotates its local checkpoints: S3 must not follow.
      fs.rmSync(path.join(dir, 'step-000010'), { recursive: true });
      fs.rmSync(path.join(dir, 'step-000030'), { recursive: true });
      uploader.update(scanCandidates(dir));
      await uploader.flush();
      t.ok(await manifestOf(store, 'runs/job-1', 'step-000030'), 'a local delete of the newest checkpoint deletes nothing in S3');
    }
  }
  const manifests = (await store.listObjects('runs/job-1/')).filter((o) => o.key.endsWith('/_stevedore/manifest.json')).map((o) => o.key.split('/')[2]);
  t.same(manifests.sort(), ['step-000020', 'step-000040', 'step-000050'], 'exactly the newest 2 and the 20th steps');
  t.same(uploader.committed().map((m) => m.step), [50, 40, 20]);
  t.same((await store.listObjects('runs/job-1/step-000030/')).map((o) => o.key), [], 'a dropped checkpoint\'s objects are gone');
  t.same((await store.listObjects('runs/job-1/step-000010/')).map((o) => o.key), [fileKey('runs/job-1', 'step-000010', 'vocab.bin')], 'only the object later checkpoints share is kept');
  for (const id of manifests) {
    const m = await manifestOf(store, 'runs/job-1', id ?? '');
    for (const f of m?.files ?? []) t.ok(await store.headObject(f.key), `${id}: ${f.path} is readable at ${f.key}`);
  }
});

void t.test('an older checkpoint still uploading is abandoned when a newer one commits', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader, commits } = makeUploader(t, store);
  await uploader.start();
  write(path.join(dir, 'step-000100', 'big.distcp'), randomBytes(12 * MIB));
  uploader.update(scanCandidates(dir));
  await waitFor('a part of the older checkpoint', () => uploader.stats.partsUploaded >= 1);

  write(path.join(dir, 'step-000200', 'small.distcp'), randomBytes(1000));
  write(path.join(dir, 'step-000200', '.metadata'), 'meta');
  uploader.update(scanCandidates(dir));
  t.equal((await uploader.flush())?.manifest.checkpointId, 'step-000200');
  t.equal(uploader.stats.abandonedCheckpoints, 1);
  await waitFor('the abandoned multipart upload to be aborted', async () => (await openUploads(store, 'runs/job-1')) === 0);

  write(path.join(dir, 'step-000100', '.metadata'), 'meta');
  uploader.update(scanCandidates(dir));
  await uploader.flush();
  t.equal(await manifestOf(store, 'runs/job-1', 'step-000100'), undefined, 'the abandoned checkpoint is never committed');
  t.same(commits.map((c) => c.manifest.checkpointId), ['step-000200']);
});

void t.test('two jobs share one budget and it is never exceeded', async (t) => {
  const { store, dir } = await setup(t);
  const budget = new RecordingBudget(2 * PART);
  const jobs = ['job-a', 'job-b'].map((jobId) => ({ jobId, ...makeUploader(t, store, { budget, prefix: `runs/${jobId}`, jobId }) }));
  for (const { jobId } of jobs) {
    for (const n of [0, 1, 2]) write(path.join(dir, jobId, 'step-000001', `__${n}_0.distcp`), randomBytes(12 * MIB + n));
    write(path.join(dir, jobId, 'step-000001', '.metadata'), 'meta');
  }
  await Promise.all(jobs.map((j) => j.uploader.start()));
  for (const j of jobs) j.uploader.update(scanCandidates(path.join(dir, j.jobId)));
  const results = await Promise.all(jobs.map((j) => j.uploader.flush()));
  for (const [i, r] of results.entries()) {
    t.equal(r?.manifest.checkpointId, 'step-000001', `${jobs[i]?.jobId} committed`);
    if (r) await assertObjectsEqualLocal(t, store, r.manifest, path.join(dir, jobs[i]?.jobId ?? ''));
  }
  t.ok(budget.peak <= budget.limit, `peak ${budget.peak} never above ${budget.limit}`);
  t.ok(budget.peak >= PART, 'parts did go through the budget');
});

/** An ObjectStore that sees every call (operation, key, arguments) and fails those `failing` returns an error for. */
function faultyStore(inner: ObjectStore, failing: (op: string, key: string, args: unknown[]) => StevedoreError | undefined): ObjectStore {
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const err = failing(String(prop), typeof args[0] === 'string' ? args[0] : '', args);
        if (err) return Promise.reject(err);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

void t.test('a file that outgrows the part limit restarts its upload with larger parts', async (t) => {
  const { store, dir } = await setup(t);
  const completed: number[] = [];
  const spy = faultyStore(store, (op, _key, args) => {
    if (op === 'completeMultipartUpload') completed.push((args[2] as unknown[]).length);
    return undefined;
  });
  const { uploader } = makeUploader(t, spy, { maxParts: 4 });
  await uploader.start();
  const file = path.join(dir, 'step-000001', 'grow.distcp');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const fd = fs.openSync(file, 'w');
  for (let mib = 1; mib <= 40; mib++) {
    fs.writeSync(fd, randomBytes(MIB));
    uploader.update(scanCandidates(dir));
    if (mib % 5 === 0) await waitFor('the streamed parts to catch up', () => uploader.stats.bytesUploaded >= Math.min(mib, 15) * MIB - PART);
  }
  fs.closeSync(fd);
  write(path.join(dir, 'step-000001', '.metadata'), 'meta');
  uploader.update(scanCandidates(dir));
  const committed = await uploader.flush();
  t.ok(committed, 'committed');
  if (committed) await assertObjectsEqualLocal(t, store, committed.manifest, dir);
  t.equal(completed.length, 1, 'one multipart upload completed');
  t.ok((completed[0] ?? 0) >= 1 && (completed[0] ?? 99) <= 4, `it has ${completed[0]} parts (at most 4)`);
  t.ok(uploader.stats.bytesUploaded > 40 * MIB, 'the first parts were sent again with the larger size');
});

void t.test('S3 failures are retried; a checkpoint that cannot be committed is logged and committed on the next update, never partially', async (t) => {
  const { store, dir } = await setup(t);
  let transient = 3;
  let denied = true;
  const flaky = faultyStore(store, (op, key) => {
    if (op === 'uploadPart' && transient > 0) {
      transient--;
      return new StevedoreError('OBJECT_STORE_FAILED', `upload part s3://ckpt/${key}: 503 SlowDown`);
    }
    if (op === 'putObject' && key.endsWith('manifest.json') && denied) return new StevedoreError('OBJECT_STORE_ACCESS_DENIED', `put s3://ckpt/${key}: access denied; check the credentials`);
    return undefined;
  });
  const lines: string[] = [];
  const logger = createLogger({ level: 'warn', destination: { write: (s: string) => lines.push(s) } });
  const { uploader, commits } = makeUploader(t, flaky, { logger, retryForMs: 5_000 });
  await uploader.start();
  write(path.join(dir, 'step-000007', 'big.distcp'), randomBytes(11 * MIB));
  write(path.join(dir, 'step-000007', '.metadata'), 'meta');
  uploader.update(scanCandidates(dir));
  t.equal(await uploader.flush(), undefined, 'not committed while the manifest cannot be written');
  t.equal(transient, 0, 'the failing parts were retried');
  t.equal(await manifestOf(store, 'runs/job-1', 'step-000007'), undefined, 'no manifest');
  const failure = lines.map((l) => JSON.parse(l) as { msg: string }).find((l) => l.msg.includes('could not be uploaded'));
  t.match(failure?.msg, /s3:\/\/ckpt\/runs\/job-1\/step-000007\/.*check the S3 endpoint, the credentials/, 'the log names the place and what to check');

  denied = false;
  uploader.update(scanCandidates(dir));
  const committed = await uploader.flush();
  t.equal(committed?.manifest.checkpointId, 'step-000007', 'committed on the next update');
  if (committed) await assertObjectsEqualLocal(t, store, committed.manifest, dir);
  t.equal(commits.length, 1);
  t.equal(await openUploads(store, 'runs/job-1'), 0);
});

void t.test('after a restart, a checkpoint already committed with the same content is not uploaded or committed again', async (t) => {
  const { store, dir } = await setup(t);
  write(path.join(dir, 'step-000050', 'w.distcp'), randomBytes(6 * MIB));
  write(path.join(dir, 'step-000050', '.metadata'), 'meta');
  write(path.join(dir, 'step-000040', 'w.distcp'), randomBytes(1000));
  write(path.join(dir, 'step-000040', '.metadata'), 'meta');
  const first = makeUploader(t, store);
  await first.uploader.start();
  first.uploader.update(scanCandidates(dir));
  t.equal((await first.uploader.flush())?.manifest.checkpointId, 'step-000050');
  await first.uploader.close();

  const second = makeUploader(t, store, { attempt: 2 });
  await second.uploader.start();
  second.uploader.update(scanCandidates(dir));
  const result = await second.uploader.flush();
  t.equal(result?.manifest.checkpointId, 'step-000050', 'the committed checkpoint is recognised');
  t.equal(result?.manifest.attempt, 1, 'it is the manifest the first attempt wrote');
  t.equal(second.uploader.stats.bytesUploaded, 0, 'nothing uploaded');
  t.same(second.commits, [], 'no new commit reported');
  const manifests = (await store.listObjects('runs/job-1/')).filter((o) => o.key.endsWith('manifest.json'));
  t.equal(manifests.length, 1, 'the older local checkpoint is not uploaded after the newer one');
});

void t.test('close() aborts the multipart uploads in flight and is safe twice', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader } = makeUploader(t, store);
  await uploader.start();
  write(path.join(dir, 'step-000001', 'big.distcp'), randomBytes(16 * MIB));
  uploader.update(scanCandidates(dir));
  await waitFor('a part', () => uploader.stats.partsUploaded >= 1);
  await Promise.all([uploader.close(), uploader.close()]);
  t.equal(await openUploads(store, 'runs/job-1'), 0, 'no multipart upload left open');
  uploader.update(scanCandidates(dir));
  t.equal(await uploader.flush(), undefined, 'a closed uploader does nothing');
});

void t.test('kill -9 in the middle of a multipart upload: no manifest, and a new uploader aborts the leftovers and commits', async (t) => {
  const { server, store, dir } = await setup(t);
  const ckpt = path.join(dir, 'ckpt');
  const big = randomBytes(14 * MIB);
  write(path.join(ckpt, 'step-000300', 'model.distcp'), big);
  const child = spawn(process.execPath, [CHILD, BUCKET, 'runs/job-1', ckpt], {
    env: { ...process.env, STEVEDORE_TEST_S3_CONFIG: JSON.stringify(server.config) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let parts = 0;
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    for (const line of chunk.split('\n').filter(Boolean)) parts = (JSON.parse(line) as { parts: number }).parts;
  });
  await waitFor('the child to upload a part', () => parts >= 1, 30_000);
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;

  t.ok((await openUploads(store, 'runs/job-1')) >= 1, 'the killed uploader left its multipart upload open');
  t.equal(await manifestOf(store, 'runs/job-1', 'step-000300'), undefined, 'no manifest for the partial checkpoint');

  write(path.join(ckpt, 'step-000300', '.metadata'), 'meta');
  const { uploader } = makeUploader(t, store, { attempt: 2 });
  await uploader.start();
  t.equal(await openUploads(store, 'runs/job-1'), 0, 'start() aborted the leftover multipart upload');
  uploader.update(scanCandidates(ckpt));
  const committed = await uploader.flush();
  t.equal(committed?.manifest.checkpointId, 'step-000300');
  if (committed) await assertObjectsEqualLocal(t, store, committed.manifest, ckpt);
  t.equal(await openUploads(store, 'runs/job-1'), 0, 'no multipart upload left open after the commit');
});

void t.test('an endpoint without conditional writes: the manifest is still written once, after a check', async (t) => {
  const { store, dir } = await setup(t, false);
  t.equal(await store.supportsConditionalWrites(), false, 'the endpoint ignores If-None-Match');
  const { uploader } = makeUploader(t, store);
  await uploader.start();
  write(path.join(dir, 'epoch=1-step=100.ckpt'), randomBytes(70_000));
  uploader.update(scanCandidates(dir, { kind: 'lightning' }));
  const committed = await uploader.flush();
  t.equal(committed?.manifest.checkpointId, 'epoch=1-step=100.ckpt');
  t.equal(committed?.manifest.kind, 'file');
  t.same(committed?.manifest.files.map((f) => f.path), ['epoch=1-step=100.ckpt']);
  if (committed) await assertObjectsEqualLocal(t, store, committed.manifest, dir);
});

void t.test('flush gives up at its deadline when S3 keeps failing, without committing anything', async (t) => {
  const { store, dir } = await setup(t);
  const down = faultyStore(store, (op, key) => (op === 'putObject' ? new StevedoreError('OBJECT_STORE_UNREACHABLE', `put s3://ckpt/${key}: cannot reach the endpoint (ECONNREFUSED)`) : undefined));
  const { uploader } = makeUploader(t, down);
  await uploader.start();
  write(path.join(dir, 'step-000001', 'a.distcp'), randomBytes(1000));
  write(path.join(dir, 'step-000001', '.metadata'), 'meta');
  uploader.update(scanCandidates(dir));
  const started = Date.now();
  t.equal(await uploader.flush({ deadlineMs: Date.now() + 500 }), undefined, 'nothing committed');
  const took = Date.now() - started;
  t.ok(took >= 450 && took < 3_000, `flush returned at its deadline (${took} ms)`);
  t.equal(await manifestOf(store, 'runs/job-1', 'step-000001'), undefined, 'no manifest');
  const aborted = new AbortController();
  setTimeout(() => aborted.abort(), 200);
  const before = Date.now();
  t.equal(await uploader.flush({ signal: aborted.signal }), undefined);
  t.ok(Date.now() - before < 3_000, 'flush also returns when its signal aborts');
});

void t.test('a reused object that disappeared before the commit is uploaded again, never referenced dangling', async (t) => {
  const { store, dir } = await setup(t);
  const { uploader } = makeUploader(t, store);
  await uploader.start();
  const shared = randomBytes(64 * 1024);
  write(path.join(dir, 'step-000010', 'common.bin'), shared);
  write(path.join(dir, 'step-000010', '.metadata'), 'dcp metadata 10');
  uploader.update(scanCandidates(dir));
  await uploader.flush();
  // Gone behind the uploader's back, as retention after another commit would do.
  await store.deleteObjects([fileKey('runs/job-1', 'step-000010', 'common.bin')]);

  write(path.join(dir, 'step-000020', 'common.bin'), shared);
  write(path.join(dir, 'step-000020', '.metadata'), 'dcp metadata 20');
  uploader.update(scanCandidates(dir));
  await waitFor('step-000020 committed', async () => (await manifestOf(store, 'runs/job-1', 'step-000020')) !== undefined);
  const m20 = await manifestOf(store, 'runs/job-1', 'step-000020');
  const common = m20?.files.find((f) => f.path === 'common.bin');
  t.equal(common?.key, fileKey('runs/job-1', 'step-000020', 'common.bin'), 'uploaded under the new checkpoint');
  t.ok((await store.getObject(common?.key ?? '')).equals(shared), 'and the object holds the file');
});
