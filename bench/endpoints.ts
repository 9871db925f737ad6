// The two S3 endpoints of the upload and restore benchmarks, both on loopback
// and both in this process (their CPU is never counted against a subject):
// - s3rver, the S3-compatible server the tests use (test/helpers/s3-server.ts),
//   which stores every byte on disk and caps throughput near 100 to 300 MB/s;
// - the S3 sink (bench/s3-sink.ts), a benchmark instrument that discards
//   large bodies, so that the clients' own cost shows.
import fs from 'node:fs';
import path from 'node:path';
import { S3RVER_ACCESS_KEY, startS3Server } from '../test/helpers/s3-server.ts';
import type { S3Location } from './peers.ts';
import { startS3Sink, type S3Sink } from './s3-sink.ts';

export const BENCH_BUCKET = 'bench';
const OBJECT_SUFFIX = '._S3rver_object';

export interface BenchEndpoint {
  /** "S3 sink" or "s3rver". */
  name: string;
  kind: 'sink' | 's3rver';
  location(prefix: string): S3Location;
  /** Bytes of the objects stored under the prefix, Stevedore's own (manifests under _stevedore/) left out. */
  storedBytes(prefix: string): number;
  /** Forgets everything under the prefix (the next run starts from an empty prefix). */
  clear(prefix: string): void;
  /** Set only for the sink. */
  sink: S3Sink | undefined;
  close(): Promise<void>;
}

export async function startSinkEndpoint(): Promise<BenchEndpoint> {
  const sink = await startS3Sink();
  return {
    name: 'S3 sink',
    kind: 'sink',
    sink,
    location: (prefix) => ({ endpoint: sink.endpoint, bucket: BENCH_BUCKET, prefix, accessKeyId: 'bench', secretAccessKey: 'bench-secret', region: 'us-east-1' }),
    storedBytes: (prefix) => {
      let bytes = 0;
      for (const [key, o] of sink.objects(BENCH_BUCKET)) if (key.startsWith(`${prefix}/`) && !key.includes('/_stevedore/')) bytes += o.size;
      return bytes;
    },
    clear: (prefix) => sink.deletePrefix(BENCH_BUCKET, prefix),
    close: () => sink.close(),
  };
}

export async function startS3rverEndpoint(): Promise<BenchEndpoint> {
  const server = await startS3Server({ buckets: [BENCH_BUCKET], conditionalWrites: true });
  return {
    name: 's3rver',
    kind: 's3rver',
    sink: undefined,
    location: (prefix) => ({ endpoint: server.endpoint, bucket: BENCH_BUCKET, prefix, accessKeyId: S3RVER_ACCESS_KEY, secretAccessKey: S3RVER_ACCESS_KEY, region: 'us-east-1' }),
    storedBytes: (prefix) => {
      const root = path.join(server.dir, BENCH_BUCKET, ...prefix.split('/'));
      if (!fs.existsSync(root)) return 0;
      let bytes = 0;
      for (const entry of fs.readdirSync(root, { withFileTypes: true, recursive: true })) {
        if (!entry.isFile() || !entry.name.endsWith(OBJECT_SUFFIX) || entry.parentPath.split(path.sep).includes('_stevedore')) continue;
        bytes += fs.statSync(path.join(entry.parentPath, entry.name)).size;
      }
      return bytes;
    },
    // s3rver keeps an object at <dir>/<bucket>/<key>._S3rver_object (and its metadata beside it).
    clear: (prefix) => fs.rmSync(path.join(server.dir, BENCH_BUCKET, ...prefix.split('/')), { recursive: true, force: true }),
    close: () => server.close(),
  };
}
