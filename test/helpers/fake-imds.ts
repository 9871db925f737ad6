// A stand-in for the EC2 instance metadata service (IMDSv2) on 127.0.0.1,
// faithful to /work/shared/docs/cloud-metadata.md and to the AWS metadata mock
// (aws/amazon-ec2-metadata-mock): tokens with a TTL, 401 without a valid
// token, X-Forwarded-For refused, HTML error bodies, JSON notices whose time
// moves on every request. Modes inject the bad answers a detector must survive.
import http from 'node:http';
import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';

export type SpotAction = 'terminate' | 'stop' | 'hibernate';
/** normal; garbage: 200 with bodies that are not the documented shape; 500: every answer a 500; hang: no answer at all; slow: the normal answer after `slowMs`. */
export type ImdsMode = 'normal' | 'garbage' | '500' | 'hang' | 'slow';
/** Which requests a mode applies to: the token PUT, the meta-data GETs, or both. */
export type ImdsModeScope = 'all' | 'token' | 'metadata';

export interface FakeImdsOptions {
  /** The fake's clock (ms since the epoch) for token expiry and notice times; share it with the detector's Clock. Default Date.now. */
  now?: () => number;
  /** Delay of the 'slow' mode; default 3000 ms (longer than a detector's 2 s timeout). */
  slowMs?: number;
}

export interface ImdsRequest {
  method: string;
  path: string;
  status: number | 'no answer';
}

export interface FakeImds {
  url: string;
  scheduleSpotAction(action: SpotAction, opts?: { movingTime?: boolean }): void;
  /** Removes the scheduled action: instance-action is a 404 again. */
  clearSpotAction(): void;
  scheduleRebalance(): void;
  /** 'InService', 'Terminated', ...; undefined: not in an Auto Scaling group (404). Default InService. */
  setLifecycleState(state: string | undefined): void;
  setMode(mode: ImdsMode, scope?: ImdsModeScope): void;
  /** Every issued token expires now: the next GET with one gets a 401. */
  expireTokens(): void;
  readonly tokensIssued: number;
  /** "METHOD /path" of every request, in arrival order. */
  readonly requests: string[];
  /** Every request with the status it got (or 'no answer' for hang). */
  readonly log: ImdsRequest[];
  close(): Promise<void>;
}

const TOKEN_TTL_HEADER = 'x-aws-ec2-metadata-token-ttl-seconds';
const TOKEN_HEADER = 'x-aws-ec2-metadata-token';
const MAX_TTL_SECONDS = 21_600;

const REASONS: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error' };

/** The mock's (and IMDS's) HTML error page. */
function htmlError(status: number): string {
  const title = `${status} - ${REASONS[status] ?? 'Error'}`;
  return `<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>${title}</title>
 </head>
 <body>
  <h1>${title}</h1>
 </body>
</html>
`;
}

/** IMDS timestamps: seconds precision, UTC, "Z". */
export function imdsTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

// What the garbage mode answers, in turn: broken JSON, HTML, JSON of the wrong
// shape, an unknown action, a time that is no time, binary noise.
const GARBAGE_BODIES = [
  '{"action": "terminate", "time": ',
  '<html><body>Service Unavailable</body></html>',
  '[]',
  'null',
  '{"action": "explode", "time": "2030-01-01T00:00:00Z"}',
  '{"action": "terminate", "time": "soon"}',
  '{"action": "terminate"}',
  '{"Action": "terminate", "Time": "2030-01-01T00:00:00Z"}',
  '\u0000\u00ff\u00fe garbage',
  '{"noticeTime": 12}',
  'Terminat3d',
];

export async function startFakeImds(opts: FakeImdsOptions = {}): Promise<FakeImds> {
  const now = opts.now ?? Date.now;
  const slowMs = opts.slowMs ?? 3000;
  const tokens = new Map<string, number>(); // token -> expiry (ms)
  let tokensIssued = 0;
  let spot: { action: SpotAction; movingTime: boolean; fixedTime: number } | undefined;
  let rebalanceAt: number | undefined;
  let lifecycleState: string | undefined = 'InService';
  let tokenMode: ImdsMode = 'normal';
  let metadataMode: ImdsMode = 'normal';
  let garbageIndex = 0;
  const requests: string[] = [];
  const log: ImdsRequest[] = [];
  const sockets = new Set<Socket>();
  const pending = new Set<NodeJS.Timeout>();

  type Answer = { status: number; type: string; body: string; headers?: Record<string, string> };
  const error = (status: number): Answer => ({ status, type: 'text/html', body: htmlError(status) });

  function tokenAnswer(req: http.IncomingMessage): Answer {
    if (req.headers['x-forwarded-for'] !== undefined) return error(403);
    const raw = req.headers[TOKEN_TTL_HEADER];
    const ttl = typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
    if (!(ttl >= 1 && ttl <= MAX_TTL_SECONDS)) return error(400);
    const token = `AQAEA${randomBytes(36).toString('base64url')}==`;
    tokens.set(token, now() + ttl * 1000);
    tokensIssued++;
    return { status: 200, type: 'text/plain', body: token, headers: { [TOKEN_TTL_HEADER]: String(ttl) } };
  }

  function metadataAnswer(req: http.IncomingMessage, path: string): Answer {
    if (req.method !== 'GET') return error(405);
    const token = req.headers[TOKEN_HEADER];
    const expiry = typeof token === 'string' ? tokens.get(token) : undefined;
    if (expiry === undefined || expiry <= now()) return error(401);
    switch (path) {
      case '/latest/meta-data/spot/instance-action':
        if (!spot) return error(404);
        return {
          status: 200,
          type: 'application/json',
          body: JSON.stringify({ action: spot.action, time: imdsTime(spot.movingTime ? now() + 120_000 : spot.fixedTime) }),
        };
      case '/latest/meta-data/spot/termination-time':
        if (!spot) return error(404);
        return { status: 200, type: 'text/plain', body: imdsTime(spot.movingTime ? now() + 120_000 : spot.fixedTime) };
      case '/latest/meta-data/events/recommendations/rebalance':
        if (rebalanceAt === undefined) return error(404);
        return { status: 200, type: 'application/json', body: JSON.stringify({ noticeTime: imdsTime(rebalanceAt) }) };
      case '/latest/meta-data/autoscaling/target-lifecycle-state':
        if (lifecycleState === undefined) return error(404);
        return { status: 200, type: 'text/plain', body: lifecycleState };
      default:
        return error(404);
    }
  }

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const line = `${req.method ?? '?'} ${path}`;
    requests.push(line);
    const isToken = path === '/latest/api/token';
    const mode = isToken ? tokenMode : metadataMode;
    const entry: ImdsRequest = { method: req.method ?? '?', path, status: 'no answer' };
    log.push(entry);

    let answer: Answer;
    if (isToken && req.method !== 'PUT') answer = error(405);
    else if (mode === 'hang') return; // Read nothing, answer nothing; close() ends it.
    else if (mode === '500') answer = error(500);
    else if (mode === 'garbage') {
      const body = GARBAGE_BODIES[garbageIndex++ % GARBAGE_BODIES.length] ?? '';
      answer = { status: 200, type: 'application/json', body };
    } else answer = isToken ? tokenAnswer(req) : metadataAnswer(req, path);

    const send = (): void => {
      entry.status = answer.status;
      res.writeHead(answer.status, { 'Content-Type': answer.type, 'Server': 'EC2ws', ...answer.headers });
      res.end(answer.body);
    };
    req.resume();
    if (mode === 'slow') {
      const timer = setTimeout(() => {
        pending.delete(timer);
        if (!res.destroyed) send();
      }, slowMs);
      pending.add(timer);
    } else {
      send();
    }
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  let closed = false;
  return {
    url,
    scheduleSpotAction(action, o = {}) {
      spot = { action, movingTime: o.movingTime ?? true, fixedTime: now() + 120_000 };
    },
    clearSpotAction() {
      spot = undefined;
    },
    scheduleRebalance() {
      rebalanceAt = now();
    },
    setLifecycleState(state) {
      lifecycleState = state;
    },
    setMode(mode, scope = 'all') {
      if (scope !== 'metadata') tokenMode = mode;
      if (scope !== 'token') metadataMode = mode;
    },
    expireTokens() {
      for (const token of tokens.keys()) tokens.set(token, 0);
    },
    get tokensIssued() {
      return tokensIssued;
    },
    requests,
    log,
    async close() {
      if (closed) return;
      closed = true;
      for (const timer of pending) clearTimeout(timer);
      pending.clear();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
