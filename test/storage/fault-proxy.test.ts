import t from 'tap';
import type { Test } from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFaultProxy, type Fault } from '../helpers/fault-proxy.ts';

// A target that records what reached it and answers with a 1000-byte body (or an empty one for PUT).
async function startTarget(t: Test): Promise<{ url: string; hits: string[] }> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      hits.push(`${req.method} ${req.url} ${Buffer.concat(chunks).toString()}`);
      const body = req.method === 'PUT' ? '' : 'x'.repeat(1000);
      res.writeHead(200, { 'content-length': Buffer.byteLength(body), etag: '"abc"' });
      res.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits };
}

interface Outcome {
  status?: number;
  body?: string;
  error?: string;
  ms: number;
}

function request(endpoint: string, method: string, path: string, body = ''): Promise<Outcome> {
  const started = Date.now();
  return new Promise((resolve) => {
    const req = http.request(`${endpoint}${path}`, { method, agent: false, headers: { 'content-length': Buffer.byteLength(body) } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), ms: Date.now() - started }));
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), error: err.code ?? err.message, ms: Date.now() - started }));
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message, ms: Date.now() - started }));
    req.end(body);
  });
}

async function proxyWith(t: Test, target: string, fault: Fault, stallMs?: number) {
  const proxy = await startFaultProxy({ target, failureRate: 1, faults: [fault], ...(stallMs !== undefined ? { stallMs } : {}) });
  t.teardown(() => proxy.close());
  return proxy;
}

void t.test('without failures every request reaches the target unchanged', async (t) => {
  const target = await startTarget(t);
  const proxy = await startFaultProxy({ target: target.url, failureRate: 0 });
  t.teardown(() => proxy.close());
  const get = await request(proxy.endpoint, 'GET', '/bucket/key?x=1');
  t.equal(get.status, 200);
  t.equal(get.body?.length, 1000);
  const put = await request(proxy.endpoint, 'PUT', '/bucket/other', 'payload');
  t.equal(put.status, 200);
  t.same(target.hits, ['GET /bucket/key?x=1 ', 'PUT /bucket/other payload']);
  t.same(proxy.counts, { requests: 2, forwarded: 2 });
});

void t.test('503 answers SlowDown in S3 XML without forwarding', async (t) => {
  const target = await startTarget(t);
  const proxy = await proxyWith(t, target.url, '503');
  const out = await request(proxy.endpoint, 'PUT', '/bucket/key', 'data');
  t.equal(out.status, 503);
  t.match(out.body, /<Error><Code>SlowDown<\/Code>/);
  t.same(target.hits, [], 'the target never saw it');
  t.equal(proxy.counts['503'], 1);
});

void t.test('reset drops the connection without forwarding', async (t) => {
  const target = await startTarget(t);
  const proxy = await proxyWith(t, target.url, 'reset');
  const out = await request(proxy.endpoint, 'PUT', '/bucket/key', 'data');
  t.equal(out.status, undefined, 'no answer');
  t.equal(out.error, 'ECONNRESET');
  t.same(target.hits, []);
  t.equal(proxy.counts.reset, 1);
});

void t.test('truncate forwards, then cuts the answer off: half the body, or no answer for an empty body', async (t) => {
  const target = await startTarget(t);
  const proxy = await proxyWith(t, target.url, 'truncate');
  const get = await request(proxy.endpoint, 'GET', '/bucket/key');
  t.equal(get.status, 200, 'the headers arrive');
  t.ok(get.error, `the body fails (${get.error})`);
  t.equal(get.body?.length, 500, 'half the body arrived');
  const put = await request(proxy.endpoint, 'PUT', '/bucket/key', 'data');
  t.equal(put.status, undefined, 'no answer for the PUT');
  t.ok(put.error);
  t.same(target.hits, ['GET /bucket/key ', 'PUT /bucket/key data'], 'the target did the work');
  t.equal(proxy.counts.truncate, 2);
});

void t.test('stall waits stallMs before forwarding', async (t) => {
  const target = await startTarget(t);
  const proxy = await proxyWith(t, target.url, 'stall', 400);
  const out = await request(proxy.endpoint, 'GET', '/bucket/key');
  t.equal(out.status, 200);
  t.equal(out.body?.length, 1000);
  t.ok(out.ms >= 380, `answered after ${out.ms} ms`);
  t.equal(proxy.counts.stall, 1);
});

void t.test('the share of failures follows the rate, reproducibly for a seed; the rate can change', async (t) => {
  const target = await startTarget(t);
  const sequence = async (seed: number): Promise<string[]> => {
    const proxy = await startFaultProxy({ target: target.url, failureRate: 0.2, faults: ['503'], seed });
    const out: string[] = [];
    for (let i = 0; i < 200; i++) out.push(String((await request(proxy.endpoint, 'GET', `/b/k${i}`)).status));
    t.equal(proxy.counts.requests, 200);
    proxy.setFailureRate(0);
    for (let i = 0; i < 20; i++) t.equal((await request(proxy.endpoint, 'GET', '/b/after')).status, 200);
    await proxy.close();
    return out;
  };
  const a = await sequence(7);
  const b = await sequence(7);
  const c = await sequence(8);
  t.same(a, b, 'same seed, same faults');
  t.not(a.join(), c.join(), 'another seed, other faults');
  const failures = a.filter((s) => s === '503').length;
  t.ok(failures >= 20 && failures <= 60, `${failures} of 200 failed at rate 0.2`);
});
