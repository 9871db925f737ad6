// A second caller for the coordinator scale benchmark, in its own process:
// ListJobs back to back for a while. Decoding a reply of thousands of jobs
// takes the caller's own event loop for tens of milliseconds; in the process
// that times GetJob it would add that to GetJob's latency, which is not the
// coordinator's.
//
//   node bench/coordinator-scale-lister.ts '{"address":...,"seconds":...}'
// prints one JSON line on stdout: {"latencyMs":[...],"loop":{...}}.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ControlClient } from '../src/client/control-client.ts';
import { LoopMeter, type LoopFigures } from './coordinator-scale-agents.ts';

export interface ListerResult {
  latencyMs: number[];
  /** The lister's own event-loop delay and CPU over the loop. */
  loop: LoopFigures;
}

const self = path.join(import.meta.dirname, 'coordinator-scale-lister.ts');

/** Runs ListJobs back to back for `seconds` in a process of its own; resolves with each call's latency. */
export function listJobsElsewhere(address: string, seconds: number): Promise<ListerResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [self, JSON.stringify({ address, seconds })], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => (out += chunk));
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) {
        reject(new Error(`the ListJobs caller exited with code ${code}`));
        return;
      }
      try {
        resolve(JSON.parse(out) as ListerResult);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  });
}

async function main(opts: { address: string; seconds: number }): Promise<void> {
  const client = new ControlClient({ address: opts.address, deadlineMs: 60_000 });
  const meter = new LoopMeter();
  const latencyMs: number[] = [];
  const until = Date.now() + opts.seconds * 1000;
  try {
    while (Date.now() < until) {
      const t = performance.now();
      await client.listJobs();
      latencyMs.push(performance.now() - t);
    }
  } finally {
    client.close();
  }
  const result: ListerResult = { latencyMs, loop: meter.take() };
  meter.stop();
  process.stdout.write(JSON.stringify(result) + '\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === self) {
  main(JSON.parse(process.argv[2] ?? '{}') as { address: string; seconds: number }).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`ListJobs caller: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
