// Polls one job until it ends and writes its progress as it goes
// (`status JOB --watch`, `submit --wait`).
import type { ControlClient, JobInfo } from '../client/control-client.ts';
import { WatchRenderer, type OutputMode } from './progress.ts';

export const TERMINAL_JOB_STATES: ReadonlySet<string> = new Set(['succeeded', 'failed', 'cancelled']);

export interface WatchOptions {
  mode: OutputMode;
  color: boolean;
  pollMs: number;
  /** Where the progress goes; none: wait silently. */
  out?: NodeJS.WritableStream;
  /** Write the final state line (text modes). Default true. */
  finalLine?: boolean;
  now?: () => number;
}

/** Resolves with the job once it has ended. */
export async function watchJob(client: ControlClient, jobId: string, opts: WatchOptions): Promise<JobInfo> {
  const renderer = new WatchRenderer({ mode: opts.mode, color: opts.color });
  const now = opts.now ?? Date.now;
  for (;;) {
    const job = await client.getJob(jobId);
    if (TERMINAL_JOB_STATES.has(job.state)) {
      const text = opts.finalLine === false ? renderer.frame(job, now()) + renderer.closeLine() : renderer.end(job, now());
      if (text) opts.out?.write(text);
      return job;
    }
    const text = renderer.frame(job, now());
    if (text) opts.out?.write(text);
    await new Promise((resolve) => setTimeout(resolve, opts.pollMs));
  }
}
