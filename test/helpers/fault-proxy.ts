// An HTTP proxy on 127.0.0.1 in front of an S3 endpoint that fails a share of
// requests, chosen by a seeded PRNG so that a run can be repeated:
// - '503': answers 503 SlowDown with S3's XML error body, without forwarding;
// - 'reset': destroys the client's connection without forwarding;
// - 'truncate': forwards, then sends the answer's headers and only half of its
//   body (or, for an empty body, drops the connection before the headers) and
//   destroys the connection: the server did the work, the client does not know;
// - 'stall': waits stallMs before forwarding (the client's timeout should fire).
// The proxy never retries anything itself. Forwarding is plain HTTP/1.1 with the
// request's headers unchanged, so signatures stay valid.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault = '503' | 'reset' | 'truncate' | 'stall';

export const ALL_FAULTS: readonly Fault[] = ['503', 'reset', 'truncate', 'stall'];

export interface FaultProxyOptions {
  /** http://127.0.0.1:port */
  target: string;
  /** Share of requests that fail, 0..1. */
  failureRate: number;
  /** Default all four. */
  faults?: Fault[];
  /** Default 2000. */
  stallMs?: number;
  /** Default 1. */
  seed?: number;
}

export interface FaultProxy {
  endpoint: string;
  /** Requests seen ('requests'), forwarded ('forwarded'), and each fault injected (by its name). */
  counts: Record<string, number>;
  setFailureRate(r: number): void;
  close(): Promise<void>;
}

/** mulberry32: a small, fast, seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SLOW_DOWN = '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>FAULTPROXY</RequestId></Error>';

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(opts.target);
  const faults = opts.faults ?? [...ALL_FAULTS];
  const stallMs = opts.stallMs ?? 2000;
  const random = prng(opts.seed ?? 1);
  let failureRate = opts.failureRate;
  const counts: Record<string, number> = { requests: 0, forwarded: 0 };
  const bump = (name: string): void => {
    counts[name] = (counts[name] ?? 0) + 1;
  };
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const agent = new http.Agent({ keepAlive: true });

  const forward = (req: http.IncomingMessage, res: http.ServerResponse, truncate: boolean): void => {
    bump('forwarded');
    const upstream = http.request(
      { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent },
      (answer) => {
        if (!truncate) {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          answer.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        answer.on('data', (c: Buffer) => chunks.push(c));
        answer.on('end', () => {
          const body = Buffer.concat(chunks);
          if (body.length === 0) {
            res.socket?.destroy();
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.destroy());
        });
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    req.pipe(upstream);
  };

  const server = http.createServer((req, res) => {
    bump('requests');
    const fault = random() < failureRate ? faults[Math.floor(random() * faults.length)] : undefined;
    if (fault === undefined) {
      forward(req, res, false);
      return;
    }
    bump(fault);
    switch (fault) {
      case '503':
        req.resume();
        req.on('end', () => {
          res.writeHead(503, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(SLOW_DOWN) });
          res.end(SLOW_DOWN);
        });
        return;
      case 'reset':
        req.socket.resetAndDestroy();
        return;
      case 'truncate':
        forward(req, res, true);
        return;
      case 'stall': {
        req.pause();
        const timer = setTimeout(() => {
          timers.delete(timer);
          if (!req.socket.destroyed) forward(req, res, false);
        }, stallMs);
        timers.add(timer);
        return;
      }
    }
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let closed: Promise<void> | undefined;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    counts,
    setFailureRate(r: number): void {
      failureRate = r;
    },
    close(): Promise<void> {
      closed ??= new Promise<void>((resolve) => {
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
        agent.destroy();
      });
      return closed;
    },
  };
}
