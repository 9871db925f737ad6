import t from 'tap';
import { createHash } from 'node:crypto';
import { MANIFEST_FORMAT, MANIFEST_FORMAT_V1, contentId, contentMatches, parseManifest, partCount, partDigests, partRange, serializeManifest, type Manifest } from '../../src/checkpoint/manifest.ts';
import { throwsCode } from '../helpers/assert.ts';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function manifest(files: Manifest['files'], format: Manifest['format'] = MANIFEST_FORMAT): Manifest {
  return {
    format, checkpointId: 'step-1', name: 'step-1', step: 1, kind: 'directory', jobId: 'j', attempt: 1, nodeId: 'n',
    firstSeenMs: 1, lastWriteMs: 2, committedMs: 3, totalBytes: files.reduce((s, f) => s + f.size, 0), uploadedBytes: 0, files,
  };
}

void t.test('parts: count, ranges and digests', (t) => {
  t.equal(partCount(0, 4), 1, 'an empty file is one empty part');
  t.equal(partCount(8, 4), 2);
  t.equal(partCount(9, 4), 3);
  t.same(partRange(9, 4, 2), { start: 8, end: 8 });
  const data = Buffer.from('0123456789');
  t.same(partDigests(data, 4), [sha(data.subarray(0, 4)), sha(data.subarray(4, 8)), sha(data.subarray(8))]);
  t.same(partDigests(Buffer.alloc(0), 4), [sha(Buffer.alloc(0))]);
  t.end();
});

void t.test('v2 manifests round-trip; v1 manifests are still read', (t) => {
  const data = Buffer.from('0123456789');
  const v2 = manifest([{ path: 'a.bin', size: 10, key: 'p/step-1/a.bin', partSize: 4, parts: partDigests(data, 4) }]);
  t.same(parseManifest(serializeManifest(v2), 'k'), v2);
  const v1 = manifest([{ path: 'a.bin', size: 10, key: 'p/step-1/a.bin', sha256: sha(data) }], MANIFEST_FORMAT_V1);
  t.same(parseManifest(serializeManifest(v1), 'k'), v1);
  t.end();
});

void t.test('a v2 entry with the wrong number of digests, or with no digest at all, is refused', (t) => {
  const data = Buffer.from('0123456789');
  const short = manifest([{ path: 'a.bin', size: 10, key: 'k', partSize: 4, parts: partDigests(data, 4).slice(0, 2) }]);
  throwsCode(t, () => parseManifest(serializeManifest(short), 'k'), 'CHECKPOINT_CORRUPT', /one digest per part/);
  const none = manifest([{ path: 'a.bin', size: 10, key: 'k' }]);
  throwsCode(t, () => parseManifest(serializeManifest(none), 'k'), 'CHECKPOINT_CORRUPT', /part digests/);
  t.end();
});

void t.test('content identity: one part equals the whole-file SHA-256; several parts compare by part size and digests', (t) => {
  const small = Buffer.from('hello');
  t.equal(contentId({ size: 5, partSize: 16, parts: partDigests(small, 16) }), contentId({ size: 5, sha256: sha(small) }), 'a one-part v2 file is the same content as the v1 file');
  const big = Buffer.from('0123456789');
  t.equal(contentId({ size: 10, partSize: 4, parts: partDigests(big, 4) }), contentId({ size: 10, partSize: 4, parts: partDigests(big, 4) }));
  t.not(contentId({ size: 10, partSize: 4, parts: partDigests(big, 4) }), contentId({ size: 10, partSize: 5, parts: partDigests(big, 5) }), 'other part sizes are other digests');
  t.not(contentId({ size: 10, partSize: 4, parts: partDigests(big, 4) }), contentId({ size: 10, sha256: sha(big) }));
  t.end();
});

void t.test('contentMatches checks size and digests of either format', (t) => {
  const data = Buffer.from('0123456789');
  const v2 = { path: 'a', size: 10, key: 'k', partSize: 4, parts: partDigests(data, 4) };
  t.ok(contentMatches(v2, data));
  t.notOk(contentMatches(v2, Buffer.from('0123456780')), 'one byte differs in the last part');
  t.notOk(contentMatches(v2, data.subarray(0, 9)), 'shorter');
  t.ok(contentMatches({ path: 'a', size: 10, key: 'k', sha256: sha(data) }, data));
  t.notOk(contentMatches({ path: 'a', size: 10, key: 'k', sha256: sha(data) }, Buffer.from('0123456780')));
  t.end();
});
