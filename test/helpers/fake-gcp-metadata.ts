// A stand-in for the Google Cloud metadata server on 127.0.0.1 (port 0), as
// docs/cloud-metadata.md describes it:
// - every request must carry `Metadata-Flavor: Google` (403 otherwise) and must
//   not carry `X-Forwarded-For` (403);
// - answers carry `Metadata-Flavor: Google`, an `ETag` and
//   `Content-Type: application/text`;
// - `?wait_for_change=true` hangs until the value changes; `&last_etag=E`
//   answers at once when the current ETag differs from E; `&timeout_sec=N`
//   answers with the current value after N seconds at the latest;
// - values: instance/preempted (FALSE), instance/maintenance-event (NONE),
//   instance/scheduling/preemptible (TRUE); other paths 404.
// Faults on demand for the tests of bad input: '503' (as during host
// maintenance), '500', 'garbage' (a 200 whose body is an HTML page), 'hang'
// (the request is read and never answered), 'reset' (the connection is dropped).
import crypto from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type GcpFault = '503' | '500' | 'garbage' | 'hang' | 'reset';

export type GcpMaintenanceEvent = 'NONE' | 'MIGRATE_ON_HOST_MAINTENANCE' | 'TERMINATE_ON_HOST_MAINTENANCE';

export interface GcpRequestRecord {
  method: string;
  /** Path below /computeMetadata/v1/, such as instance/preempted. */
  path: string;
  query: Record<string, string>;
  /** The status answered; 0 while unanswered (hanging), -1 when the connection was dropped. */
  status: number;
  at: number;
}

export interface FakeGcpMetadata {
  /** http://127.0.0.1:port, the detector's baseUrl. */
  baseUrl: string;
  requests: GcpRequestRecord[];
  setPreempted(value: boolean): void;
  setMaintenanceEvent(value: GcpMaintenanceEvent): void;
  /** Sets any value (for values a real server should never send). */
  setValue(path: string, value: string): void;
  etagOf(path: string): string;
  /** The next `count` metadata requests (default: every one until cleared with undefined) meet this fault. */
  setFault(fault: GcpFault | undefined, count?: number): void;
  /** Requests hanging right now (waiting for a change, or in 'hang'). */
  hanging(): number;
  close(): Promise<void>;
}

const PREFIX = '/computeMetadata/v1/';

function forbidden(what: string): string {
  return `<!DOCTYPE html>\n<html lang=en><title>Error 403 (Forbidden)!!1</title><p><b>403.</b> <ins>That's an error.</ins><p>Your client does not have permission to get URL from this server. ${what} <ins>That's all we know.</ins>\n`;
}

const NOT_FOUND = '<!DOCTYPE html>\n<html lang=en><title>Error 404 (Not Found)!!1</title><p><b>404.</b> <ins>That\'s an error.</ins><p>The requested URL was not found on this server. <ins>That\'s all we know.</ins>\n';

interface Entry {
  value: string;
  version: number;
  etag: string;
}

interface Waiter {
  path: string;
  res: http.ServerResponse;
  record: GcpRequestRecord;
  timer?: NodeJS.Timeout;
}

export async function startFakeGcpMetadata(): Promise<FakeGcpMetadata> {
  const entries = new Map<string, Entry>();
  const requests: GcpRequestRecord[] = [];
  const waiters = new Set<Waiter>();
  const hung = new Set<http.ServerResponse>();
  const sockets = new Set<Socket>();
  let fault: GcpFault | undefined;
  let faultCount = Infinity;

  const etagFor = (path: string, version: number, value: string): string =>
    crypto.createHash('sha256').update(`${path}\n${version}\n${value}`).digest('hex').slice(0, 16);

  const put = (path: string, value: string): void => {
    const old = entries.get(path);
    if (old && old.value === value) return;
    const version = (old?.version ?? 0) + 1;
    entries.set(path, { value, version, etag: etagFor(path, version, value) });
    if (!old) return;
    for (const waiter of [...waiters]) {
      if (waiter.path === path) answerValue(waiter.res, waiter.record, path);
    }
  };

  const answer = (res: http.ServerResponse, record: GcpRequestRecord, status: number, headers: Record<string, string>, body: string): void => {
    for (const waiter of waiters) {
      if (waiter.res === res) {
        if (waiter.timer) clearTimeout(waiter.timer);
        waiters.delete(waiter);
      }
    }
    if (res.writableEnded || res.destroyed) return;
    record.status = status;
    res.writeHead(status, { 'Metadata-Flavor': 'Google', ...headers });
    res.end(body);
  };

  const answerValue = (res: http.ServerResponse, record: GcpRequestRecord, path: string): void => {
    const entry = entries.get(path)!;
    answer(res, record, 200, { ETag: entry.etag, 'Content-Type': 'application/text' }, entry.value);
  };

  const takeFault = (): GcpFault | undefined => {
    if (!fault || faultCount <= 0) return undefined;
    const current = fault;
    faultCount--;
    if (faultCount <= 0) fault = undefined;
    return current;
  };

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://metadata.google.internal');
    const record: GcpRequestRecord = {
      method: req.method ?? '',
      path: url.pathname.startsWith(PREFIX) ? url.pathname.slice(PREFIX.length) : url.pathname,
      query: Object.fromEntries(url.searchParams),
      status: 0,
      at: Date.now(),
    };
    requests.push(record);
    const html = { 'Content-Type': 'text/html; charset=UTF-8' };
    if (req.headers['x-forwarded-for'] !== undefined) {
      answer(res, record, 403, html, forbidden('Request had an X-Forwarded-For header and was refused.'));
      return;
    }
    if (req.headers['metadata-flavor'] !== 'Google') {
      answer(res, record, 403, html, forbidden('Missing Metadata-Flavor:Google header.'));
      return;
    }
    const entry = entries.get(record.path);
    if (req.method !== 'GET' || !url.pathname.startsWith(PREFIX) || !entry) {
      answer(res, record, 404, html, NOT_FOUND);
      return;
    }
    switch (takeFault()) {
      case '503':
        answer(res, record, 503, { 'Content-Type': 'text/plain' }, 'Service Unavailable');
        return;
      case '500':
        answer(res, record, 500, { 'Content-Type': 'text/plain' }, 'Internal Server Error');
        return;
      case 'garbage':
        answer(res, record, 200, { ETag: 'garbage0', 'Content-Type': 'application/text' }, '<html><body>Temporarily unavailable</body></html>');
        return;
      case 'hang':
        hung.add(res);
        return;
      case 'reset':
        record.status = -1;
        req.socket.destroy();
        return;
      case undefined:
        break;
    }
    if (url.searchParams.get('wait_for_change') !== 'true') {
      answerValue(res, record, record.path);
      return;
    }
    const timeoutText = url.searchParams.get('timeout_sec');
    if (timeoutText !== null && !/^[1-9]\d*$/.test(timeoutText)) {
      answer(res, record, 400, { 'Content-Type': 'text/plain' }, 'timeout_sec must be a positive integer\n');
      return;
    }
    const lastEtag = url.searchParams.get('last_etag');
    if (lastEtag !== null && lastEtag !== entry.etag) {
      answerValue(res, record, record.path);
      return;
    }
    const waiter: Waiter = { path: record.path, res, record };
    if (timeoutText !== null) {
      waiter.timer = setTimeout(() => answerValue(res, record, record.path), Number(timeoutText) * 1000);
    }
    waiters.add(waiter);
    res.on('close', () => {
      if (waiter.timer) clearTimeout(waiter.timer);
      waiters.delete(waiter);
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));

  put('instance/preempted', 'FALSE');
  put('instance/maintenance-event', 'NONE');
  put('instance/scheduling/preemptible', 'TRUE');

  return {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    setPreempted: (value) => put('instance/preempted', value ? 'TRUE' : 'FALSE'),
    setMaintenanceEvent: (value) => put('instance/maintenance-event', value),
    setValue: put,
    etagOf: (path) => entries.get(path)?.etag ?? '',
    setFault(next, count) {
      fault = next;
      faultCount = count ?? Infinity;
    },
    hanging: () => waiters.size + [...hung].filter((res) => !res.destroyed).length,
    async close() {
      for (const waiter of waiters) if (waiter.timer) clearTimeout(waiter.timer);
      waiters.clear();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
