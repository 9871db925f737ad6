// The S3 sink (a benchmark instrument) speaks enough S3 for Stevedore's uploader and restore, checks
// every body's size, keeps small objects, discards large ones and serves them back from a generator.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { ByteBudget } from '../../src/checkpoint/byte-budget.ts';
import { CheckpointUploader, type CommittedCheckpoint } from '../../src/checkpoint/checkpoint-uploader.ts';
import { restoreNewest } from '../../src/checkpoint/restore.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { systemClock } from '../../src/util/clock.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { MIB, checkpointLayout, randomBlock, syntheticContent, writeCheckpoint } from '../../bench/checkpoint-data.ts';
import { SINK_KEEP_BYTES, decodeAwsChunked, startS3Sink, type S3Sink } from '../../bench/s3-sink.ts';

const BUCKET = 'bench';

async function setup(t: Test): Promise<{ sink: S3Sink; store: S3ObjectStore }> {
  const sink = await startS3Sink();
  const store = new S3ObjectStore({
    bucket: BUCKET,
    config: { endpoint: sink.endpoint, region: 'us-east-1', forcePathStyle: true, accessKeyId: 'k', secretAccessKey: 's', checksumMode: 'WHEN_SUPPORTED', maxAttempts: 1 },
  });
  t.teardown(async () => {
    store.destroy();
    await sink.close();
  });
  return { sink, store };
}

function rawRequest(endpoint: string, method: string, urlPath: string, headers: Record<string, string | number>, body: Buffer): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(new URL(urlPath, endpoint), { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

void t.test('small objects are kept and read back; large ones are counted and discarded', async (t) => {
  const { sink, store } = await setup(t);
  await store.putObject('a/small.json', '{"x":1}');
  t.equal((await store.getObject('a/small.json')).toString(), '{"x":1}');
  const big = Buffer.alloc(SINK_KEEP_BYTES + 10, 7);
  await store.putObject('a/big.bin', big);
  const info = await store.headObject('a/big.bin');
  t.equal(info?.size, big.length, 'the size of a discarded object is known');
  t.equal(sink.objects(BUCKET).get('a/big.bin')?.body, undefined, 'its bytes are not kept');
  t.ok(sink.stats.bytesReceived >= big.length + 7);
  t.equal((await store.listObjects('a/')).map((o) => o.key).join(','), 'a/big.bin,a/small.json');
  await t.rejects(store.getObject('a/big.bin'), { code: 'OBJECT_STORE_FAILED' }, 'a discarded object without a generator cannot be read');
});

void t.test('a multipart upload completes with its parts\' sizes; parts below 5 MiB except the last are refused', async (t) => {
  const { sink, store } = await setup(t);
  const id = await store.createMultipartUpload('m/file');
  const p1 = await store.uploadPart('m/file', id, 1, Buffer.alloc(5 * MIB, 1));
  const p2 = await store.uploadPart('m/file', id, 2, Buffer.alloc(100, 2));
  t.same((await store.listMultipartUploads('m/')).map((u) => u.uploadId), [id], 'an open upload is listed');
  await store.completeMultipartUpload('m/file', id, [p1, p2]);
  t.equal(sink.objects(BUCKET).get('m/file')?.size, 5 * MIB + 100);
  t.match(sink.objects(BUCKET).get('m/file')?.etag, /-2$/, 'a composite ETag');

  const small = await store.createMultipartUpload('m/small');
  const s1 = await store.uploadPart('m/small', small, 1, Buffer.alloc(100));
  const s2 = await store.uploadPart('m/small', small, 2, Buffer.alloc(100));
  await t.rejects(store.completeMultipartUpload('m/small', small, [s1, s2]), /EntityTooSmall/);
  await store.abortMultipartUpload('m/small', small);
  t.same(await store.listMultipartUploads('m/'), [], 'aborted');
});

void t.test('a body shorter than its Content-Length is refused', async (t) => {
  const { sink } = await setup(t);
  const res = await new Promise<{ status: number }>((resolve) => {
    const req = http.request(new URL(`/${BUCKET}/short`, sink.endpoint), { method: 'PUT', headers: { 'content-length': 100 } }, (r) => {
      r.resume();
      resolve({ status: r.statusCode ?? 0 });
    });
    req.on('error', () => resolve({ status: -1 }));
    req.write(Buffer.alloc(40));
    setTimeout(() => req.destroy(), 100);
  });
  t.not(res.status, 200, 'not stored as a success');
  t.notOk(sink.objects(BUCKET).has('short'), 'nothing stored');
});

void t.test('If-None-Match: * on an existing key is refused (the uploader\'s conditional manifest write)', async (t) => {
  const { store } = await setup(t);
  t.equal(await store.supportsConditionalWrites(), true);
  await store.putObject('c/manifest.json', 'one', { ifNoneMatch: true });
  await t.rejects(store.putObject('c/manifest.json', 'two', { ifNoneMatch: true }), { code: 'OBJECT_EXISTS' });
});

void t.test('listings honour the delimiter; aws-chunked bodies decode; raw PUTs are counted', async (t) => {
  const { sink } = await setup(t);
  for (const key of ['p/a/1', 'p/a/2', 'p/b', 'q/c']) sink.objects(BUCKET).set(key, { size: 1, etag: 'e', lastModified: new Date(), body: Buffer.from('x') });
  const listed = await rawRequest(sink.endpoint, 'GET', `/${BUCKET}?list-type=2&prefix=p/&delimiter=/`, {}, Buffer.alloc(0));
  t.match(listed.text, /<Key>p\/b<\/Key>/);
  t.match(listed.text, /<CommonPrefixes><Prefix>p\/a\/<\/Prefix><\/CommonPrefixes>/);
  t.notMatch(listed.text, /q\/c/);
  t.equal(decodeAwsChunked(Buffer.from('5;chunk-signature=ab\r\nhello\r\n0;chunk-signature=cd\r\n\r\n')).toString(), 'hello');
  const raw = await rawRequest(sink.endpoint, 'PUT', '/_raw/1', { 'content-length': 1000 }, Buffer.alloc(1000));
  t.equal(raw.status, 200);
  t.equal(sink.stats.requests.RawPut, 1);
});

void t.test('Stevedore commits a checkpoint to the sink and restores it from the synthetic content, verified', async (t) => {
  const { sink, store } = await setup(t);
  const dir = t.testdir({});
  const layout = checkpointLayout(12 * MIB, { shards: 1, smallFiles: 3, smallBytes: 64 * 1024 });
  const block = randomBlock();
  sink.setSynthetic(syntheticContent(layout, block));
  const checkpointDir = writeCheckpoint(path.join(dir, 'src'), layout, block);
  const files = layout.files.map((f) => {
    const absPath = path.join(checkpointDir, f.path);
    const st = fs.statSync(absPath);
    return { path: f.path, absPath, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
  });
  const commits: CommittedCheckpoint[] = [];
  const uploader = new CheckpointUploader({
    store, prefix: 'job', jobId: 'j', attempt: 1, nodeId: 'n', clock: systemClock, logger: silentLogger(),
    partSizeBytes: 5 * MIB, budget: new ByteBudget(64 * MIB), keep: 3, keepEvery: 0, onCommitted: (c) => commits.push(c),
  });
  t.teardown(() => uploader.close());
  await uploader.start();
  uploader.update([{ name: layout.name, kind: 'directory', step: 100, files, complete: true, lastChangeMs: Date.now() }]);
  await uploader.flush();
  t.equal(commits.length, 1, 'committed');
  t.ok((sink.stats.requests.UploadPart ?? 0) >= 3, 'the shard went up in parts');

  const restored = await restoreNewest({ store, prefix: 'job', targetDir: path.join(dir, 'restored'), logger: silentLogger(), clock: systemClock, rangeBytes: 4 * MIB });
  t.equal(restored?.bytes, layout.totalBytes);
  for (const f of layout.files) {
    const sha = (p: string): string => createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    t.equal(sha(path.join(dir, 'restored', layout.name, f.path)), sha(path.join(checkpointDir, f.path)), `${f.path} is byte-identical`);
  }
});

void t.test('a discarded body gets the MD5 ETag a client may check, unless it carries a flexible checksum', async (t) => {
  const { sink } = await setup(t);
  const body = Buffer.alloc(SINK_KEEP_BYTES + 4096, 7);
  const md5 = createHash('md5').update(body).digest('hex');
  t.equal((await rawRequest(sink.endpoint, 'PUT', `/${BUCKET}/plain`, { 'content-length': body.length }, body)).status, 200);
  t.equal(sink.objects(BUCKET).get('plain')?.etag, md5, 'no Content-MD5 and no checksum: the MD5 of the bytes, as S3 answers');
  const sha = createHash('sha256').update(body).digest('base64');
  t.equal((await rawRequest(sink.endpoint, 'PUT', `/${BUCKET}/checked`, { 'content-length': body.length, 'x-amz-checksum-sha256': sha }, body)).status, 200);
  const checked = sink.objects(BUCKET).get('checked');
  t.equal(checked?.size, body.length, 'counted and size-checked');
  t.not(checked?.etag, md5, 'with a flexible checksum the bytes are not hashed');
  t.equal(checked?.body, undefined, 'and discarded');
});
