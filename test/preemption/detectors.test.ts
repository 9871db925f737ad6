import t from 'tap';
import type { Test } from 'tap';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import pino from 'pino';
import { createDetector, detectCloud, type DetectorConfig } from '../../src/preemption/detectors.ts';
import { AwsDetector } from '../../src/preemption/aws-detector.ts';
import { GcpDetector } from '../../src/preemption/gcp-detector.ts';
import { AzureDetector } from '../../src/preemption/azure-detector.ts';
import type { Notice, PreemptionDetector } from '../../src/preemption/notice.ts';
import { systemClock } from '../../src/util/clock.ts';
import { startFakeImds } from '../helpers/fake-imds.ts';
import { startFakeGcpMetadata } from '../helpers/fake-gcp-metadata.ts';
import { startFakeAzureEvents } from '../helpers/fake-azure-events.ts';

interface LogLine {
  level: number;
  msg: string;
}

function capture(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return { logger: pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as LogLine) }), lines };
}

function config(cloud: DetectorConfig['cloud'], metadataUrl: string | undefined, pollSeconds?: number): DetectorConfig {
  return { cloud, metadataUrl, pollSeconds };
}

async function create(t: Test, c: DetectorConfig, logger = capture().logger): Promise<PreemptionDetector | undefined> {
  const detector = await createDetector(c, { clock: systemClock, logger, probeTimeoutMs: 300 });
  if (detector) t.teardown(() => detector.close());
  return detector;
}

/** A server that answers every request with the same thing, or never. */
async function serve(t: Test, handler: http.RequestListener): Promise<string> {
  const server = http.createServer(handler);
  const sockets = new Set<Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function deadUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

void t.test('none: no detector, and no metadata request', async (t) => {
  const imds = await startFakeImds();
  t.teardown(() => imds.close());
  t.equal(await create(t, config('none', imds.url)), undefined);
  t.same(imds.requests, []);
});

void t.test('a configured cloud gets its detector, without probing', async (t) => {
  const imds = await startFakeImds();
  t.teardown(() => imds.close());
  const aws = await create(t, config('aws', `${imds.url}/`, 0.02));
  t.ok(aws instanceof AwsDetector);
  t.equal(aws?.cloud, 'aws');
  t.same(imds.requests, [], 'nothing asked before start');
  // The configured URL and poll interval are the detector's: a notice arrives quickly.
  imds.scheduleSpotAction('terminate');
  const notice = await new Promise<Notice>((resolve) => aws?.start(resolve));
  t.equal(notice.kind, 'terminate');

  const gcp = await create(t, config('gcp', 'http://127.0.0.1:9'));
  t.ok(gcp instanceof GcpDetector);
  t.equal(gcp?.cloud, 'gcp');
  const azure = await create(t, config('azure', 'http://127.0.0.1:9'));
  t.ok(azure instanceof AzureDetector);
  t.equal(azure?.cloud, 'azure');
});

void t.test('auto picks the cloud whose metadata service answers', async (t) => {
  const imds = await startFakeImds();
  const gcp = await startFakeGcpMetadata();
  const azure = await startFakeAzureEvents();
  t.teardown(async () => {
    await imds.close();
    await gcp.close();
    await azure.close();
  });
  const { logger, lines } = capture();
  const onAws = await create(t, config('auto', imds.url), logger);
  t.ok(onAws instanceof AwsDetector, 'AWS');
  t.ok(lines.some((l) => l.msg === 'cloud detected: aws'));
  t.ok(imds.requests.includes('PUT /latest/api/token'), 'AWS was asked for a token');
  t.ok((await create(t, config('auto', gcp.baseUrl))) instanceof GcpDetector, 'GCP');
  t.ok((await create(t, config('auto', azure.baseUrl))) instanceof AzureDetector, 'Azure');
});

void t.test('auto with nothing that answers faithfully: no detector, one info line', async (t) => {
  const notFound = await serve(t, (req, res) => {
    res.writeHead(404, { 'Content-Type': 'text/html' });
    res.end('<html>404</html>');
  });
  const alwaysOk = await serve(t, (req, res) => {
    // 200 to everything, but nothing a metadata service would say.
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('hello');
  });
  const hanging = await serve(t, () => {
    /* never answers */
  });
  const imds500 = await startFakeImds();
  imds500.setMode('500');
  const imdsGarbage = await startFakeImds();
  imdsGarbage.setMode('garbage');
  t.teardown(async () => {
    await imds500.close();
    await imdsGarbage.close();
  });
  for (const [name, url] of [
    ['404 everywhere', notFound],
    ['200 with nonsense', alwaysOk],
    ['a server that hangs', hanging],
    ['nothing listening', await deadUrl()],
    ['IMDS answering 500', imds500.url],
    ['IMDS answering garbage', imdsGarbage.url],
  ] as const) {
    const { logger, lines } = capture();
    const started = Date.now();
    t.equal(await create(t, config('auto', url), logger), undefined, `${name}: no detector`);
    t.ok(Date.now() - started < 2000, `${name}: decided within the probe timeout`);
    const info = lines.filter((l) => l.level === 30);
    t.same(info.map((l) => l.msg), ['no cloud metadata service: preemption notices come only from SIGTERM and the coordinator'], `${name}: one info line`);
  }
});

void t.test('detectCloud never throws, even for a URL that is no URL', async (t) => {
  t.equal(await detectCloud('not a url', { clock: systemClock, logger: capture().logger, probeTimeoutMs: 100 }), undefined);
});
