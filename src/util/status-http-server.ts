// A small plain-HTTP server for the machines that watch a Stevedore process:
// GET /metrics (Prometheus text format), GET /livez (200 while the event loop
// turns) and GET /readyz (200 when every readiness check passes, 503 with a
// JSON body naming the checks that do not). Anything else is 404. It serves
// only what the process hands it: no configuration, no secrets.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, type Registry } from 'prom-client';
import { StevedoreError, messageOf } from './errors.ts';
import type { Logger } from './logger.ts';

/** One thing that must be true before the process takes work. */
export interface ReadinessCheck {
  name: string;
  ready: boolean;
  /** What is wrong (or what is fine), in a few words. */
  detail: string;
}

export interface StatusHttpServerOptions {
  /** host:port; port 0 picks a free port (see `address`). IPv6 hosts in brackets: [::1]:9464. */
  listen: string;
  registry: Registry;
  /** The checks behind /readyz, asked afresh for every request. */
  readiness: () => Promise<ReadinessCheck[]> | ReadinessCheck[];
  logger: Logger;
}

/** Values of a listen setting that turn the server off. */
export const LISTEN_OFF: readonly string[] = ['', 'off'];

/** host and port of a listen address, or the reason it is not one. */
export function parseListenAddress(text: string): { host: string; port: number } | { error: string } {
  const example = 'write host:port such as 0.0.0.0:9464 or 127.0.0.1:0 (IPv6: [::1]:9464), or off';
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text.trim());
  if (!m) return { error: `${JSON.stringify(text)} is not host:port; ${example}` };
  const port = Number(m[3]);
  if (port > 65535) return { error: `port ${m[3]} is out of range; use a port from 0 to 65535` };
  return { host: m[1] ?? m[2] ?? '', port };
}

/** True when the setting means "no server". */
export function isListenOff(text: string | undefined): boolean {
  return text === undefined || LISTEN_OFF.includes(text.trim().toLowerCase());
}

/**
 * The process's own metrics (memory, CPU, file descriptors, event loop, GC) in
 * `registry`, without prom-client's three gauges named like counters
 * (nodejs_active_{handles,requests,resources}_total): the same numbers stay
 * in nodejs_active_handles, nodejs_active_requests and nodejs_active_resources.
 */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
}

const REQUEST_TIMEOUT_MS = 10_000;

export class StatusHttpServer {
  /** host:port actually bound (the real port when 0 was asked for). */
  readonly address: string;
  private readonly server: http.Server;
  private closing: Promise<void> | undefined;

  private constructor(server: http.Server, address: string) {
    this.server = server;
    this.address = address;
  }

  /** Binds and starts serving; CONFIG_INVALID when the address cannot be bound. */
  static async start(opts: StatusHttpServerOptions): Promise<StatusHttpServer> {
    const parsed = parseListenAddress(opts.listen);
    if ('error' in parsed) throw new StevedoreError('CONFIG_INVALID', `metrics listen address: ${parsed.error}`);
    const server = http.createServer((req, res) => {
      handle(req, res, opts).catch((err: unknown) => {
        opts.logger.error({ err: messageOf(err), path: req.url }, 'status request failed');
        if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', `internal error: ${messageOf(err)}\n`);
        else res.destroy();
      });
    });
    server.requestTimeout = REQUEST_TIMEOUT_MS;
    server.headersTimeout = REQUEST_TIMEOUT_MS;
    // A scraper keeps its connection open; it must not hold the process at exit.
    server.keepAliveTimeout = 5_000;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: parsed.host, port: parsed.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const fix = code === 'EADDRINUSE' ? 'another process uses that port: choose another one' : code === 'EADDRNOTAVAIL' ? 'that address is not on this host: use 0.0.0.0, 127.0.0.1 or one of its addresses' : code === 'EACCES' ? 'ports below 1024 need privileges: use a higher port' : 'check the address';
      throw new StevedoreError('CONFIG_INVALID', `cannot listen on ${opts.listen} for metrics and health checks (${code ?? messageOf(err)}): ${fix}, or turn the server off`, { cause: err });
    }
    server.on('error', (err) => opts.logger.error({ err: messageOf(err) }, 'metrics server error'));
    const bound = server.address() as AddressInfo;
    const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    const address = `${host}:${bound.port}`;
    opts.logger.info({ address }, 'metrics listening');
    return new StatusHttpServer(server, address);
  }

  /** Stops listening and ends open connections. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, opts: StatusHttpServerOptions): Promise<void> {
  const path = new URL(req.url ?? '/', 'http://status').pathname;
  const known = path === '/metrics' || path === '/livez' || path === '/readyz';
  if (!known) {
    send(res, 404, 'text/plain; charset=utf-8', 'not found: this server answers GET /metrics, /livez and /readyz\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'text/plain; charset=utf-8', `method ${req.method ?? ''} not allowed: use GET\n`);
    return;
  }
  if (path === '/livez') {
    send(res, 200, 'text/plain; charset=utf-8', 'ok\n');
    return;
  }
  if (path === '/metrics') {
    const body = await opts.registry.metrics();
    send(res, 200, opts.registry.contentType, body);
    return;
  }
  const checks = await opts.readiness();
  const notReady = checks.filter((c) => !c.ready);
  const body = {
    ready: notReady.length === 0,
    notReady: notReady.map((c) => c.name),
    checks: Object.fromEntries(checks.map((c) => [c.name, { ready: c.ready, detail: c.detail }])),
  };
  send(res, body.ready ? 200 : 503, 'application/json', `${JSON.stringify(body)}\n`);
}

function send(res: http.ServerResponse, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
