import t from 'tap';
import type { Test } from 'tap';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { metadataRequest, MAX_METADATA_BODY_BYTES } from '../../src/preemption/metadata-http.ts';

async function serve(t: Test, handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

void t.test('sends method, headers and body; returns status, lower-case headers and body', async (t) => {
  let seen: { method?: string; token?: string; body: string } = { body: '' };
  const url = await serve(t, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      seen = { method: req.method, token: req.headers['x-token'] as string, body };
      res.writeHead(201, { 'Content-Type': 'application/json', 'X-Echo': 'yes' });
      res.end('{"ok":true}');
    });
  });
  const reply = await metadataRequest({ method: 'PUT', url: `${url}/x`, headers: { 'X-Token': 'abc' }, body: 'hello', timeoutMs: 2000 });
  t.same(seen, { method: 'PUT', token: 'abc', body: 'hello' });
  t.equal(reply.status, 201);
  t.equal(reply.headers['content-type'], 'application/json');
  t.equal(reply.headers['x-echo'], 'yes');
  t.equal(reply.body, '{"ok":true}');
});

void t.test('a redirect is returned as it is, not followed', async (t) => {
  let hits = 0;
  const url = await serve(t, (req, res) => {
    hits++;
    res.writeHead(302, { Location: '/elsewhere' });
    res.end();
  });
  const reply = await metadataRequest({ method: 'GET', url: `${url}/a`, timeoutMs: 2000 });
  t.equal(reply.status, 302);
  t.equal(reply.headers.location, '/elsewhere');
  t.equal(hits, 1);
});

void t.test('a server that never answers: rejected with a timeout message', async (t) => {
  const url = await serve(t, () => {
    /* hangs */
  });
  const started = Date.now();
  await t.rejects(metadataRequest({ method: 'GET', url: `${url}/hang`, timeoutMs: 150 }), /timed out after 150 ms/);
  t.ok(Date.now() - started < 2000, 'within the timeout');
});

void t.test('a body that starts and stalls: rejected with a timeout message', async (t) => {
  const url = await serve(t, (req, res) => {
    res.writeHead(200, { 'Content-Length': '100' });
    res.write('partial');
  });
  await t.rejects(metadataRequest({ method: 'GET', url, timeoutMs: 150 }), /timed out/);
});

void t.test('nothing listening: rejected with the network error', async (t) => {
  const url = await serve(t, (req, res) => res.end());
  const port = new URL(url).port;
  const closed = http.createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const deadPort = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  t.not(port, String(deadPort));
  await t.rejects(metadataRequest({ method: 'GET', url: `http://127.0.0.1:${deadPort}/`, timeoutMs: 2000 }), /failed: .*ECONNREFUSED/);
});

void t.test('a connection closed mid-body is an error, not a short answer', async (t) => {
  const url = await serve(t, (req, res) => {
    res.writeHead(200, { 'Content-Length': '100' });
    res.write('partial', () => res.destroy());
  });
  await t.rejects(metadataRequest({ method: 'GET', url, timeoutMs: 2000 }), Error);
});

void t.test('a body over 1 MiB is refused', async (t) => {
  const url = await serve(t, (req, res) => {
    res.writeHead(200);
    res.end(Buffer.alloc(MAX_METADATA_BODY_BYTES + 10, 'a'));
  });
  await t.rejects(metadataRequest({ method: 'GET', url, timeoutMs: 5000 }), /body over 1048576 bytes/);
});

void t.test('an abort signal ends the request', async (t) => {
  const url = await serve(t, () => {
    /* hangs */
  });
  const controller = new AbortController();
  const pending = metadataRequest({ method: 'GET', url, timeoutMs: 10_000, signal: controller.signal });
  setTimeout(() => controller.abort(), 50);
  await t.rejects(pending, /aborted/);
  await t.rejects(metadataRequest({ method: 'GET', url, timeoutMs: 10_000, signal: controller.signal }), /aborted before it started/);
});

void t.test('a URL that is not http is refused', async (t) => {
  await t.rejects(metadataRequest({ method: 'GET', url: 'file:///etc/passwd', timeoutMs: 100 }), /must be http/);
  await t.rejects(metadataRequest({ method: 'GET', url: 'not a url', timeoutMs: 100 }), /not a valid URL/);
});
