// Listing committed checkpoints and retention, against a real S3-compatible server on loopback.
import t from 'tap';
import { createHash } from 'node:crypto';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import type { ObjectStore } from '../../src/storage/object-store.ts';
import { applyRetention, listCommitted, mapConcurrent, selectRetained } from '../../src/checkpoint/committed.ts';
import { MANIFEST_FORMAT, fileKey, manifestKey, serializeManifest, stepFromName, type Manifest } from '../../src/checkpoint/manifest.ts';
import { createLogger, silentLogger, type Logger } from '../../src/util/logger.ts';
import { startS3Server } from '../helpers/s3-server.ts';

const BUCKET = 'stevedore-committed';

const s3 = await startS3Server({ buckets: [BUCKET] });
t.teardown(() => s3.close());
const store = new S3ObjectStore({ bucket: BUCKET, config: s3.config });
t.teardown(() => store.destroy());

function capturingLogger(): { logger: Logger; lines: { level: number; msg: string; key?: string }[] } {
  const lines: { level: number; msg: string; key?: string }[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(JSON.parse(s) as { level: number; msg: string }) } });
  return { logger, lines };
}

/** A manifest without touching the store (for selectRetained). */
function bare(name: string, committedMs = 0): Manifest {
  return {
    format: MANIFEST_FORMAT, checkpointId: name, name, step: stepFromName(name), kind: 'directory', jobId: 'job-1', attempt: 1, nodeId: 'node-a',
    firstSeenMs: committedMs, lastWriteMs: committedMs, committedMs, totalBytes: 0, uploadedBytes: 0, files: [],
  };
}

/**
 * Commits a checkpoint the way the uploader does: its objects, then its manifest.
 * `reuse` maps a relative path to the key of an earlier checkpoint's object holding the same content.
 */
async function commit(prefix: string, name: string, files: Record<string, string>, reuse: Record<string, string> = {}, committedMs = Date.now()): Promise<Manifest> {
  const entries = [];
  for (const [rel, content] of Object.entries(files)) {
    const key = reuse[rel] ?? fileKey(prefix, name, rel);
    if (!reuse[rel]) await store.putObject(key, content);
    entries.push({ path: rel, size: Buffer.byteLength(content), sha256: createHash('sha256').update(content).digest('hex'), key });
  }
  const manifest: Manifest = { ...bare(name, committedMs), files: entries, totalBytes: entries.reduce((s, e) => s + e.size, 0) };
  await store.putObject(manifestKey(prefix, name), serializeManifest(manifest));
  return manifest;
}

async function keysUnder(prefix: string): Promise<string[]> {
  return (await store.listObjects(`${prefix}/`)).map((o) => o.key);
}

void t.test('listCommitted: every manifest under the prefix, newest first, nothing else', async (t) => {
  const prefix = 'list/job-1';
  await commit(prefix, 'step-000010', { 'a.bin': 'ten' });
  await commit(prefix, 'step-000030', { 'a.bin': 'thirty' });
  await commit(prefix, 'step-000020', { 'a.bin': 'twenty', 'sub/b.bin': 'b' });
  // An upload in progress (objects, no manifest yet) is not a checkpoint.
  await store.putObject(fileKey(prefix, 'step-000040', 'a.bin'), 'forty');
  // Another job whose prefix starts with the same characters.
  await commit('list/job-10', 'step-000050', { 'a.bin': 'other job' });

  const committed = await listCommitted(store, prefix);
  t.same(committed.map((c) => c.manifest.checkpointId), ['step-000030', 'step-000020', 'step-000010']);
  t.equal(committed[1]?.key, manifestKey(prefix, 'step-000020'));
  t.same(committed[1]?.manifest.files.map((f) => f.path), ['a.bin', 'sub/b.bin']);
  t.same(await listCommitted(store, 'list/nothing-here'), []);
});

void t.test('listCommitted: checkpoints without a step are ordered by commit time', async (t) => {
  const prefix = 'list-time/job';
  await commit(prefix, 'best', { m: '1' }, {}, 3000);
  await commit(prefix, 'latest', { m: '2' }, {}, 5000);
  await commit(prefix, 'first', { m: '3' }, {}, 1000);
  t.same((await listCommitted(store, prefix)).map((c) => c.manifest.name), ['latest', 'best', 'first']);
});

void t.test('listCommitted: an invalid or unreadable manifest is skipped with a warning naming its key', async (t) => {
  const prefix = 'list-bad/job';
  await commit(prefix, 'step-000001', { x: 'one' });
  await store.putObject(manifestKey(prefix, 'step-000002'), '{"format": "stevedore.checkpoint.v1", "trunc');
  await store.putObject(manifestKey(prefix, 'step-000003'), JSON.stringify({ format: 'something-else' }));
  // A manifest copied under another checkpoint's name: its objects are not where it says.
  const moved = await commit(prefix, 'step-000004', { x: 'four' });
  await store.putObject(manifestKey(prefix, 'step-000005'), serializeManifest(moved));

  const { logger, lines } = capturingLogger();
  const committed = await listCommitted(store, prefix, logger);
  t.same(committed.map((c) => c.manifest.checkpointId), ['step-000004', 'step-000001']);
  const warnings = lines.filter((l) => l.level === 40);
  t.equal(warnings.length, 3, 'one warning per skipped manifest');
  for (const id of ['step-000002', 'step-000003', 'step-000005']) {
    t.ok(warnings.some((w) => w.msg.includes(`s3://${BUCKET}/${manifestKey(prefix, id)}`)), `the warning names ${id}'s manifest key`);
  }
  t.match(warnings.find((w) => w.msg.includes('step-000002'))?.msg, /not JSON/);
});

void t.test('listCommitted: a manifest that cannot be fetched fails the listing instead of leaving a checkpoint out', async (t) => {
  const prefix = 'list-outage/job';
  await commit(prefix, 'step-1', { x: 'one' });
  await commit(prefix, 'step-2', { x: 'two' });
  const failing = Object.create(store) as ObjectStore;
  failing.getObject = (key, opts) =>
    key === manifestKey(prefix, 'step-2') ? Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1')) : store.getObject(key, opts);
  await t.rejects(listCommitted(failing, prefix), { message: /ECONNREFUSED/ });
});

void t.test('selectRetained: the newest N, plus every K-th step', (t) => {
  const committed = ['step-50', 'step-40', 'step-30', 'step-20', 'step-10'].map((n) => bare(n));
  const plain = selectRetained(committed, 2, 0);
  t.same(plain.keep.map((m) => m.name), ['step-50', 'step-40']);
  t.same(plain.drop.map((m) => m.name), ['step-30', 'step-20', 'step-10']);

  const every = selectRetained(committed, 2, 20);
  t.same(every.keep.map((m) => m.name), ['step-50', 'step-40', 'step-20']);
  t.same(every.drop.map((m) => m.name), ['step-30', 'step-10']);

  const noStep = selectRetained([bare('latest', 2), bare('best', 1)], 1, 10);
  t.same(noStep.drop.map((m) => m.name), ['best'], 'a checkpoint without a step is not kept by keepEvery');

  t.same(selectRetained(committed, 0, 0).keep.map((m) => m.name), ['step-50'], 'the newest is always kept');
  t.same(selectRetained(committed, 10, 0).drop, []);
  t.end();
});

/** Wraps the store and records, in order, which keys were deleted. */
function recordingDeletes(inner: ObjectStore): { store: ObjectStore; deleted: string[] } {
  const deleted: string[] = [];
  const wrapper = Object.create(inner) as ObjectStore;
  wrapper.deleteObjects = async (keys, opts) => {
    deleted.push(...keys);
    await inner.deleteObjects(keys, opts);
  };
  return { store: wrapper, deleted };
}

void t.test('applyRetention: keeps exactly the newest N, deletes manifests before objects, keeps objects still referenced', async (t) => {
  const prefix = 'retain/job';
  // weights.bin never changes after step 1: later checkpoints reference step-1's object.
  await commit(prefix, 'step-1', { 'weights.bin': 'W', 'opt.bin': 'o1' });
  const shared = { 'weights.bin': fileKey(prefix, 'step-1', 'weights.bin') };
  await commit(prefix, 'step-2', { 'weights.bin': 'W', 'opt.bin': 'o2' }, shared);
  await commit(prefix, 'step-3', { 'weights.bin': 'W', 'opt.bin': 'o3' }, shared);
  await commit(prefix, 'step-4', { 'weights.bin': 'W', 'opt.bin': 'o4', 'sub/rng.bin': 'r4' }, shared);

  const recorder = recordingDeletes(store);
  const committed = (await listCommitted(store, prefix)).map((c) => c.manifest);
  const result = await applyRetention(recorder.store, prefix, committed, 2, 0, silentLogger());
  t.same(result.deletedCheckpoints.sort(), ['step-1', 'step-2']);

  t.same((await listCommitted(store, prefix)).map((c) => c.manifest.checkpointId), ['step-4', 'step-3'], 'exactly two remain');
  t.same((await keysUnder(prefix)).sort(), [
    fileKey(prefix, 'step-1', 'weights.bin'),
    manifestKey(prefix, 'step-3'),
    fileKey(prefix, 'step-3', 'opt.bin'),
    manifestKey(prefix, 'step-4'),
    fileKey(prefix, 'step-4', 'opt.bin'),
    fileKey(prefix, 'step-4', 'sub/rng.bin'),
  ].sort(), 'the shared object of step-1 stays; the rest of step-1 and step-2 is gone');

  const manifests = [manifestKey(prefix, 'step-1'), manifestKey(prefix, 'step-2')];
  t.same(recorder.deleted.slice(0, 2).sort(), manifests.sort(), 'the dropped manifests are deleted first');
  t.notOk(recorder.deleted.slice(2).some((k) => manifests.includes(k)));
  t.ok(recorder.deleted.includes(fileKey(prefix, 'step-2', 'opt.bin')));
  t.notOk(recorder.deleted.includes(fileKey(prefix, 'step-1', 'weights.bin')));

  const again = await applyRetention(store, prefix, (await listCommitted(store, prefix)).map((c) => c.manifest), 2, 0, silentLogger());
  t.same(again.deletedCheckpoints, [], 'nothing more to do');
});

void t.test('applyRetention: a shared object goes once the last checkpoint referring to it is dropped', async (t) => {
  const prefix = 'retain-shared/job';
  await commit(prefix, 'step-1', { 'weights.bin': 'W', 'opt.bin': 'o1' });
  const shared = { 'weights.bin': fileKey(prefix, 'step-1', 'weights.bin') };
  await commit(prefix, 'step-2', { 'weights.bin': 'W', 'opt.bin': 'o2' }, shared);
  await commit(prefix, 'step-3', { 'weights.bin': 'W', 'opt.bin': 'o3' }, shared);
  const retain = async (): Promise<string[]> =>
    (await applyRetention(store, prefix, (await listCommitted(store, prefix)).map((c) => c.manifest), 2, 0, silentLogger())).deletedCheckpoints;

  t.same(await retain(), ['step-1']);
  t.ok(await store.headObject(shared['weights.bin']), 'still referred to by step-2 and step-3');
  // The weights change: step-4 and step-5 have their own.
  await commit(prefix, 'step-4', { 'weights.bin': 'W4', 'opt.bin': 'o4' });
  await commit(prefix, 'step-5', { 'weights.bin': 'W5', 'opt.bin': 'o5' });
  t.same((await retain()).sort(), ['step-2', 'step-3']);
  t.same((await keysUnder(prefix)).sort(), [
    manifestKey(prefix, 'step-4'), fileKey(prefix, 'step-4', 'opt.bin'), fileKey(prefix, 'step-4', 'weights.bin'),
    manifestKey(prefix, 'step-5'), fileKey(prefix, 'step-5', 'opt.bin'), fileKey(prefix, 'step-5', 'weights.bin'),
  ].sort(), 'nothing of step-1 is left once no checkpoint refers to it');
});

void t.test('applyRetention: keepEvery keeps the multiples as well', async (t) => {
  const prefix = 'retain-every/job';
  for (const step of [100, 200, 300, 400, 500]) await commit(prefix, `step-${step}`, { 'm.bin': `m${step}` });
  const committed = (await listCommitted(store, prefix)).map((c) => c.manifest);
  const result = await applyRetention(store, prefix, committed, 1, 200, silentLogger());
  t.same(result.deletedCheckpoints.sort(), ['step-100', 'step-300']);
  t.same((await listCommitted(store, prefix)).map((c) => c.manifest.checkpointId), ['step-500', 'step-400', 'step-200']);
  t.same(await keysUnder(`${prefix}/step-100`), []);
  t.same(await keysUnder(`${prefix}/step-300`), []);
  t.equal((await keysUnder(`${prefix}/step-200`)).length, 2);
});

void t.test('applyRetention: does not touch a checkpoint whose id shares a prefix with a dropped one', async (t) => {
  const prefix = 'retain-names/job';
  await commit(prefix, 'step-1', { a: 'one' }, {}, 1);
  await commit(prefix, 'step-10', { a: 'ten' }, {}, 2);
  await commit(prefix, 'step-1.r2', { a: 'one again' }, {}, 3);
  const committed = (await listCommitted(store, prefix)).map((c) => c.manifest);
  t.same(committed.map((m) => m.checkpointId), ['step-10', 'step-1.r2', 'step-1']);
  await applyRetention(store, prefix, committed, 2, 0, silentLogger());
  t.same((await keysUnder(prefix)).sort(), [
    fileKey(prefix, 'step-1.r2', 'a'), manifestKey(prefix, 'step-1.r2'), fileKey(prefix, 'step-10', 'a'), manifestKey(prefix, 'step-10'),
  ].sort());
});

void t.test('mapConcurrent: bounded, ordered, and waits for running calls before reporting the first failure', async (t) => {
  let running = 0;
  let peak = 0;
  const out = await mapConcurrent([5, 1, 4, 2, 3, 0], 3, async (n) => {
    running++;
    peak = Math.max(peak, running);
    await new Promise((r) => setTimeout(r, n * 5));
    running--;
    return n * 10;
  });
  t.same(out, [50, 10, 40, 20, 30, 0]);
  t.equal(peak, 3);

  const started: number[] = [];
  let finished = 0;
  await t.rejects(
    mapConcurrent([0, 1, 2, 3, 4, 5], 2, async (n) => {
      started.push(n);
      if (n === 1) throw new Error('boom');
      await new Promise((r) => setTimeout(r, 20));
      finished++;
    }),
    { message: 'boom' },
  );
  t.equal(finished, started.length - 1, 'every call that started (but the failed one) finished before the rejection');
  t.ok(started.length < 6, 'no new call starts after a failure');
});
