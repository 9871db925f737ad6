// End to end: a job's input dataset is downloaded once per node, extracted and
// mounted read-only; its output directory is mirrored to S3 while it runs and
// at its end.
import t from 'tap';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as tar from 'tar';
import { validateJobSpec } from '../../src/spec/job-spec.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { Cluster } from '../helpers/cluster.ts';
import { testEngineEnv } from '../helpers/engine.ts';
import { startS3Server } from '../helpers/s3-server.ts';

const env = testEngineEnv();

void t.test('an input is downloaded once, extracted, mounted read-only; the output reaches S3', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-data-'));
  // The dataset: a tar.gz served over HTTP by the test.
  mkdirSync(path.join(dir, 'dataset', 'shards'), { recursive: true });
  writeFileSync(path.join(dir, 'dataset', 'hello.txt'), 'hello from the dataset\n');
  writeFileSync(path.join(dir, 'dataset', 'shards', 'part-0.txt'), 'x'.repeat(100_000));
  await tar.c({ gzip: true, cwd: path.join(dir, 'dataset'), file: path.join(dir, 'dataset.tar.gz') }, ['hello.txt', 'shards']);
  const archive = readFileSync(path.join(dir, 'dataset.tar.gz'));
  let gets = 0;
  const server = http.createServer((req, res) => {
    if (req.method === 'GET') gets++;
    res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': archive.length, etag: '"v1"' });
    res.end(req.method === 'HEAD' ? undefined : archive);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/datasets/dataset.tar.gz`;

  const s3 = await startS3Server({ buckets: ['stevedore-out'] });
  const cluster = await Cluster.start(path.join(dir, 'cluster'), { dockerHost: env.dockerHost });
  t.teardown(async () => {
    await cluster.close();
    await s3.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  await cluster.addAgent('agent-d', 1, { s3: { endpoints: { default: s3.config } } });

  const job = (name: string) =>
    validateJobSpec({
      name,
      image: env.trainerImage,
      command: ['/bin/sh', '-c', 'cat /data/hello.txt > /out/copy.txt; ls /data/shards > /out/listing.txt; if touch /data/x 2>/dev/null; then echo writable; else echo read-only; fi > /out/ro.txt'],
      pullPolicy: 'never',
      input: { url, target: '/data' },
      output: { path: '/out', destination: `s3://stevedore-out/${name}`, intervalSeconds: 1 },
    });
  const first = await cluster.client.submitJob(job('first'));
  const second = await cluster.client.submitJob(job('second'));
  for (const j of [first, second]) {
    const done = await cluster.waitForJob(j.jobId, ['succeeded', 'failed'], 60000);
    t.equal(done.state, 'succeeded', `${j.jobId} succeeded`);
  }
  t.equal(gets, 1, 'the dataset was downloaded once for both jobs');

  const store = new S3ObjectStore({ bucket: 'stevedore-out', config: s3.config });
  for (const name of ['first', 'second']) {
    t.equal((await store.getObject(`${name}/copy.txt`)).toString(), 'hello from the dataset\n', `${name}: read the extracted input, output mirrored`);
    t.equal((await store.getObject(`${name}/listing.txt`)).toString(), 'part-0.txt\n');
    t.equal((await store.getObject(`${name}/ro.txt`)).toString(), 'read-only\n', `${name}: the input is mounted read-only`);
  }
  const notes: string[] = [];
  for (const j of [first, second]) {
    for await (const line of cluster.client.streamLogs(j.jobId)) if (/^input /.test(line.line?.text ?? '')) notes.push(line.line?.text ?? '');
  }
  t.equal(notes.filter((n) => /^input downloaded/.test(n)).length, 1, 'one job downloaded it');
  t.equal(notes.filter((n) => /^input found in the node cache/.test(n)).length, 1, 'the other says it used the node cache');
});
