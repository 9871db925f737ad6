// The raw loopback HTTP PUT rate: a minimal node:http client (a child process,
// measured like every other subject) PUTs one preallocated buffer over a few
// keep-alive connections to the S3 sink's /_raw/ route, which counts the bytes
// and answers 200. No file is read, nothing is hashed or signed: this is the
// most any S3 client can move to the sink on this machine, the ceiling quoted
// next to the upload figures.
//   node bench/ceiling.ts <endpoint> <totalBytes> [connections] [bodyBytes]
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import type { Command } from './peers.ts';

export const CEILING_SUBJECT = 'raw loopback PUT (ceiling)';
const DEFAULT_CONNECTIONS = 4;
const DEFAULT_BODY_BYTES = 16 * 1024 * 1024;

/** The command that sends `totalBytes` to the sink at `endpoint` (run it with measure()). */
export function ceilingCommand(endpoint: string, totalBytes: number, connections = DEFAULT_CONNECTIONS, bodyBytes = DEFAULT_BODY_BYTES): Command {
  return { cmd: process.execPath, args: [fileURLToPath(import.meta.url), endpoint, String(totalBytes), String(connections), String(bodyBytes)], env: process.env };
}

async function put(agent: http.Agent, url: URL, body: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const req = http.request(url, { method: 'PUT', agent, headers: { 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`PUT ${url.pathname}: HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function main(endpoint: string, totalBytes: number, connections: number, bodyBytes: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const body = Buffer.alloc(bodyBytes, 0x5a);
  let sent = 0;
  let n = 0;
  const worker = async (): Promise<void> => {
    while (sent < totalBytes) {
      const length = Math.min(bodyBytes, totalBytes - sent);
      sent += length;
      await put(agent, new URL(`/_raw/${n++}`, endpoint), length === bodyBytes ? body : body.subarray(0, length));
    }
  };
  await Promise.all(Array.from({ length: connections }, () => worker()));
  agent.destroy();
}

if (import.meta.main) {
  const [endpoint, total, connections, body] = process.argv.slice(2);
  if (endpoint === undefined || total === undefined) {
    process.stderr.write('usage: node bench/ceiling.ts <endpoint> <totalBytes> [connections] [bodyBytes]\n');
    process.exitCode = 2;
  } else {
    main(endpoint, Number(total), Number(connections ?? DEFAULT_CONNECTIONS), Number(body ?? DEFAULT_BODY_BYTES)).catch((err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    });
  }
}
