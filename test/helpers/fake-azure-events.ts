// A stand-in for Azure Scheduled Events on 127.0.0.1 (port 0), as
// docs/cloud-metadata.md describes it:
// - GET /metadata/scheduledevents?api-version=2020-07-01 with `Metadata: true`
//   (400 without the header, without a known api-version, or with
//   X-Forwarded-For) answers {"DocumentIncarnation": n, "Events": [...]};
//   DocumentIncarnation increases whenever the list changes;
// - POST to the same URL with {"StartRequests": [{"EventId": "..."}]} answers
//   200 and records the acknowledgement (the event then starts: EventStatus
//   Started, NotBefore ""); a malformed body answers 400;
// - the first call after boot can be slow (firstCallDelayMs);
// - faults on demand for the tests of bad input: 'garbage' (a 200 whose body
//   is cut-off JSON), 'bad-shape' (JSON, but not a Scheduled Events document),
//   '500', 'hang' (the request is read and never answered).
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type AzureEventType = 'Preempt' | 'Terminate' | 'Reboot' | 'Redeploy' | 'Freeze';

export interface AzureEvent {
  EventId: string;
  EventStatus: 'Scheduled' | 'Started';
  EventType: AzureEventType;
  ResourceType: 'VirtualMachine';
  Resources: string[];
  /** RFC 1123, such as "Mon, 11 Apr 2022 22:26:58 GMT"; "" once Started. */
  NotBefore: string;
  Description: string;
  EventSource: 'Platform' | 'User';
  DurationInSeconds: number;
}

export type AzureFault = 'garbage' | 'bad-shape' | '500' | 'hang';

export interface AzureRequestRecord {
  method: string;
  query: Record<string, string>;
  /** 0 while unanswered. */
  status: number;
  body: string;
  at: number;
}

export interface FakeAzureEventsOptions {
  /** The first well-formed GET answers only after this long (default 0). */
  firstCallDelayMs?: number;
}

export interface FakeAzureEvents {
  /** http://127.0.0.1:port, the detector's baseUrl. */
  baseUrl: string;
  requests: AzureRequestRecord[];
  /** EventIds from well-formed StartRequests, in order. */
  acknowledgements: string[];
  documentIncarnation(): number;
  events(): AzureEvent[];
  /** Adds an event (defaults: a new EventId, Scheduled, Resources ["vm1"], NotBefore 30 s from now) and bumps the incarnation. */
  addEvent(event: Partial<AzureEvent> & { EventType: AzureEventType }): AzureEvent;
  /** A finished event simply disappears. */
  removeEvent(eventId: string): void;
  /** Bumps the incarnation without changing the events (a change to another VM's events, say). */
  touch(): void;
  /**
   * The next `count` requests (default: every one until cleared with undefined)
   * meet this fault; with `method`, only requests of that method.
   */
  setFault(fault: AzureFault | undefined, count?: number, method?: 'GET' | 'POST'): void;
  close(): Promise<void>;
}

export const SCHEDULED_EVENTS_PATH = '/metadata/scheduledevents';
const API_VERSIONS = new Set(['2017-11-01', '2019-01-01', '2019-08-01', '2020-07-01']);

/** "Mon, 11 Apr 2022 22:26:58 GMT". */
export function rfc1123(ms: number): string {
  return new Date(ms).toUTCString();
}

function badRequest(res: http.ServerResponse, record: AzureRequestRecord, error: string): void {
  record.status = 400;
  res.writeHead(400, { 'Content-Type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify({ error }));
}

/** Null when the body is not a well-formed StartRequests document. */
function parseStartRequests(body: string): string[] | null {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return null;
  }
  if (typeof doc !== 'object' || doc === null || !('StartRequests' in doc)) return null;
  const requests = doc.StartRequests;
  if (!Array.isArray(requests) || requests.length === 0) return null;
  const ids: string[] = [];
  for (const request of requests as unknown[]) {
    if (typeof request !== 'object' || request === null) return null;
    const id = (request as { EventId?: unknown }).EventId;
    if (typeof id !== 'string' || id === '') return null;
    ids.push(id);
  }
  return ids;
}

export async function startFakeAzureEvents(opts: FakeAzureEventsOptions = {}): Promise<FakeAzureEvents> {
  let incarnation = 1;
  const events: AzureEvent[] = [];
  const requests: AzureRequestRecord[] = [];
  const acknowledgements: string[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let fault: AzureFault | undefined;
  let faultCount = Infinity;
  let faultMethod: string | undefined;
  let firstCallDone = false;

  const takeFault = (method: string): AzureFault | undefined => {
    if (!fault || faultCount <= 0 || (faultMethod !== undefined && faultMethod !== method)) return undefined;
    const current = fault;
    faultCount--;
    if (faultCount <= 0) fault = undefined;
    return current;
  };

  const json = (res: http.ServerResponse, record: AzureRequestRecord, status: number, body: string): void => {
    if (res.destroyed) return;
    record.status = status;
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
    res.end(body);
  };

  const document = (): string => JSON.stringify({ DocumentIncarnation: incarnation, Events: events });

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://169.254.169.254');
    const record: AzureRequestRecord = { method: req.method ?? '', query: Object.fromEntries(url.searchParams), status: 0, body: '', at: Date.now() };
    requests.push(record);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      record.body = Buffer.concat(chunks).toString('utf8');
      if (url.pathname !== SCHEDULED_EVENTS_PATH) {
        record.status = 404;
        res.writeHead(404, { 'Content-Type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify({ error: 'Not found' }));
        return;
      }
      if (req.headers['x-forwarded-for'] !== undefined) {
        badRequest(res, record, 'Bad request. Requests with an X-Forwarded-For header are refused');
        return;
      }
      if (req.headers.metadata !== 'true') {
        badRequest(res, record, 'Bad request. Required metadata header not specified');
        return;
      }
      if (!API_VERSIONS.has(url.searchParams.get('api-version') ?? '')) {
        badRequest(res, record, 'Bad request. api-version is invalid or was not specified in the request');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'POST') {
        record.status = 405;
        res.writeHead(405, { 'Content-Type': 'application/json; charset=utf-8' });
        res.end(JSON.stringify({ error: 'Method not allowed' }));
        return;
      }
      switch (takeFault(req.method ?? '')) {
        case 'garbage':
          json(res, record, 200, `{"DocumentIncarnation": ${incarnation}, "Events": [{"EventId": "`);
          return;
        case 'bad-shape':
          json(res, record, 200, JSON.stringify({ DocumentIncarnation: 'soon', Events: { Preempt: true } }));
          return;
        case '500':
          json(res, record, 500, JSON.stringify({ error: 'Internal server error' }));
          return;
        case 'hang':
          return;
        case undefined:
          break;
      }
      if (req.method === 'POST') {
        const ids = parseStartRequests(record.body);
        if (!ids) {
          badRequest(res, record, 'Bad request. The body must be {"StartRequests": [{"EventId": "..."}]}');
          return;
        }
        acknowledgements.push(...ids);
        let changed = false;
        for (const event of events) {
          if (ids.includes(event.EventId) && event.EventStatus !== 'Started') {
            event.EventStatus = 'Started';
            event.NotBefore = '';
            changed = true;
          }
        }
        if (changed) incarnation++;
        json(res, record, 200, '');
        return;
      }
      const delay = firstCallDone ? 0 : (opts.firstCallDelayMs ?? 0);
      firstCallDone = true;
      if (delay <= 0) {
        json(res, record, 200, document());
        return;
      }
      const timer = setTimeout(() => {
        timers.delete(timer);
        json(res, record, 200, document());
      }, delay);
      timers.add(timer);
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    acknowledgements,
    documentIncarnation: () => incarnation,
    events: () => events.map((event) => ({ ...event, Resources: [...event.Resources] })),
    addEvent(partial) {
      const event: AzureEvent = {
        EventId: crypto.randomUUID().toUpperCase(),
        EventStatus: 'Scheduled',
        ResourceType: 'VirtualMachine',
        Resources: ['vm1'],
        NotBefore: rfc1123(Date.now() + 30_000),
        Description: `${partial.EventType} scheduled by the platform`,
        EventSource: 'Platform',
        DurationInSeconds: -1,
        ...partial,
      };
      events.push(event);
      incarnation++;
      return { ...event };
    },
    removeEvent(eventId) {
      const index = events.findIndex((event) => event.EventId === eventId);
      if (index < 0) return;
      events.splice(index, 1);
      incarnation++;
    },
    touch() {
      incarnation++;
    },
    setFault(next, count, method) {
      fault = next;
      faultCount = count ?? Infinity;
      faultMethod = method;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
