import t, { type Test } from 'tap';
import net from 'node:net';
import { Counter, Registry } from 'prom-client';
import { StatusHttpServer, isListenOff, parseListenAddress, type ReadinessCheck } from '../../src/util/status-http-server.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { httpGet, parseExposition } from '../helpers/prometheus.ts';

async function serve(t: Test, readiness: () => ReadinessCheck[] | Promise<ReadinessCheck[]>, registry = new Registry()): Promise<StatusHttpServer> {
  const server = await StatusHttpServer.start({ listen: '127.0.0.1:0', registry, readiness, logger: silentLogger() });
  t.teardown(() => server.close());
  return server;
}

void t.test('listen addresses: host:port, IPv6 in brackets, port 0; off and empty turn the server off', (t) => {
  t.same(parseListenAddress('0.0.0.0:9464'), { host: '0.0.0.0', port: 9464 });
  t.same(parseListenAddress('[::1]:0'), { host: '::1', port: 0 });
  t.same(parseListenAddress('metrics.local:80'), { host: 'metrics.local', port: 80 });
  t.match(parseListenAddress('9464'), { error: /"9464" is not host:port; write host:port such as 0.0.0.0:9464/ });
  t.match(parseListenAddress('http://0.0.0.0:9464'), { error: /is not host:port/ });
  t.match(parseListenAddress('127.0.0.1:70000'), { error: /port 70000 is out of range/ });
  t.ok(isListenOff('off') && isListenOff('') && isListenOff(' OFF ') && isListenOff(undefined));
  t.notOk(isListenOff('127.0.0.1:0'));
  t.end();
});

void t.test('serves /metrics from its registry, /livez, /readyz; anything else is 404', async (t) => {
  const registry = new Registry();
  const counter = new Counter({ name: 'test_things_total', help: 'things', registers: [registry] });
  counter.inc(3);
  let ready = false;
  const server = await serve(t, () => [
    { name: 'store', ready: true, detail: 'open' },
    { name: 'session', ready, detail: ready ? 'registered' : 'connecting' },
  ], registry);
  t.match(server.address, /^127\.0\.0\.1:\d+$/);
  t.not(server.address, '127.0.0.1:0', 'the bound port, not 0');

  const metrics = await httpGet(server.address, '/metrics');
  t.equal(metrics.status, 200);
  t.equal(metrics.contentType, registry.contentType);
  t.equal(parseExposition(metrics.body).value('test_things_total'), 3);

  const live = await httpGet(server.address, '/livez');
  t.same([live.status, live.body], [200, 'ok\n']);

  const notReady = await httpGet(server.address, '/readyz');
  t.equal(notReady.status, 503);
  t.match(notReady.contentType, 'application/json');
  t.same(JSON.parse(notReady.body), {
    ready: false,
    notReady: ['session'],
    checks: { store: { ready: true, detail: 'open' }, session: { ready: false, detail: 'connecting' } },
  });
  ready = true;
  const readyNow = await httpGet(server.address, '/readyz');
  t.equal(readyNow.status, 200, 'asked afresh on every request');
  t.same((JSON.parse(readyNow.body) as { notReady: string[] }).notReady, []);

  t.equal((await httpGet(server.address, '/')).status, 404);
  t.equal((await httpGet(server.address, '/metrics/extra')).status, 404);
  t.equal((await httpGet(server.address, '/metrics', 'POST')).status, 405);
  const head = await httpGet(server.address, '/livez', 'HEAD');
  t.same([head.status, head.body], [200, '']);
});

void t.test('a failing readiness check answers 500, and the server goes on', async (t) => {
  let fail = true;
  const server = await serve(t, () => {
    if (fail) throw new Error('boom');
    return [];
  });
  const res = await httpGet(server.address, '/readyz');
  t.equal(res.status, 500);
  t.match(res.body, 'boom');
  fail = false;
  t.equal((await httpGet(server.address, '/readyz')).status, 200);
});

void t.test('a port in use is CONFIG_INVALID naming the address and the fix', async (t) => {
  const blocker = net.createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => blocker.close(() => resolve())));
  const port = (blocker.address() as net.AddressInfo).port;
  await t.rejects(StatusHttpServer.start({ listen: `127.0.0.1:${port}`, registry: new Registry(), readiness: () => [], logger: silentLogger() }), {
    code: 'CONFIG_INVALID',
    message: new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} for metrics and health checks \\(EADDRINUSE\\): another process uses that port`),
  });
  await t.rejects(StatusHttpServer.start({ listen: 'nonsense', registry: new Registry(), readiness: () => [], logger: silentLogger() }), { code: 'CONFIG_INVALID' });
});

void t.test('close() ends kept-alive connections and is safe twice', async (t) => {
  const server = await StatusHttpServer.start({ listen: '127.0.0.1:0', registry: new Registry(), readiness: () => [], logger: silentLogger() });
  t.equal((await httpGet(server.address, '/livez')).status, 200);
  await Promise.all([server.close(), server.close()]);
  await t.rejects(httpGet(server.address, '/livez'), 'nothing listens after close');
});
