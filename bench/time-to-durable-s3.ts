// The S3 endpoint of a benchmark, in a child process of its own so that its
// CPU is neither charged to nor shared with the event loop of the subject
// being measured. Every subject of a benchmark talks to the same endpoint:
// - 'sink': the benchmark sink (bench/s3-sink.ts), which counts and discards
//   bodies, so that only the clients' own cost shows (as with a real S3 of
//   ample bandwidth);
// - 's3rver': the S3-compatible server of the tests, which stores every byte
//   and bounds every client near 60 to 300 MB/s on this kind of machine.
//
//   node bench/time-to-durable-s3.ts sink|s3rver BUCKET[,BUCKET...]   (prints one JSON line, serves until stdin closes)
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { S3EndpointConfig } from '../src/storage/s3-config.ts';

export type S3Kind = 'sink' | 's3rver';

export interface S3Child {
  kind: S3Kind;
  endpoint: string;
  /** The store's directory (removed when the server stops). */
  dir: string;
  config: S3EndpointConfig;
  pid: number;
  accessKeyId: string;
  secretAccessKey: string;
  close(): Promise<void>;
}

interface Ready {
  kind: S3Kind;
  endpoint: string;
  dir: string;
  config: S3EndpointConfig;
}

const self = path.join(import.meta.dirname, 'time-to-durable-s3.ts');

/** Starts the endpoint in a child process with the buckets created. */
export async function startS3Child(kind: S3Kind, buckets: string[]): Promise<S3Child> {
  const child: ChildProcess = spawn(process.execPath, [self, kind, buckets.join(',')], { stdio: ['pipe', 'pipe', 'inherit'] });
  const stdout = child.stdout;
  if (!stdout || child.pid === undefined) throw new Error('could not start the S3 server process');
  const lines = createInterface({ input: stdout });
  const ready = await new Promise<Ready>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the S3 server process exited with ${code} before it was ready`)));
    lines.once('line', (line) => resolve(JSON.parse(line) as Ready));
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let closing: Promise<void> | undefined;
  return {
    ...ready,
    pid: child.pid,
    accessKeyId: ready.config.accessKeyId ?? '',
    secretAccessKey: ready.config.secretAccessKey ?? '',
    close() {
      closing ??= (async () => {
        child.stdin?.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      })();
      return closing;
    },
  };
}

async function serve(kind: S3Kind, buckets: string[]): Promise<void> {
  let ready: Ready;
  let close: () => Promise<void>;
  if (kind === 'sink') {
    const { startS3Sink } = await import('./s3-sink.ts');
    const sink = await startS3Sink();
    const config: S3EndpointConfig = { endpoint: sink.endpoint, region: 'us-east-1', forcePathStyle: true, accessKeyId: 'bench', secretAccessKey: 'bench-secret', checksumMode: 'WHEN_SUPPORTED', maxAttempts: 3 };
    ready = { kind, endpoint: sink.endpoint, dir: '', config };
    close = () => sink.close();
  } else {
    const { startS3Server } = await import('../test/helpers/s3-server.ts');
    const server = await startS3Server({ buckets, conditionalWrites: true });
    ready = { kind, endpoint: server.endpoint, dir: server.dir, config: server.config };
    close = () => server.close();
  }
  process.stdout.write(JSON.stringify(ready) + '\n');
  process.stdin.resume();
  await new Promise<void>((resolve) => process.stdin.once('end', resolve));
  await close();
}

if (process.argv[1] && path.resolve(process.argv[1]) === self) {
  const kind = process.argv[2] === 's3rver' ? 's3rver' : 'sink';
  serve(kind, (process.argv[3] ?? 'bench').split(',').filter(Boolean)).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`S3 server: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
