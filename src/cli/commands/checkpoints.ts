// `stevedore checkpoints JOB`: the job's committed checkpoints as agents
// reported them, newest first, and where the newest one's manifest is.
import type { Command } from 'commander';
import { COORDINATOR_OPTION_HELP, withControlClient } from '../../client/control-client.ts';
import type { CheckpointInfo, JobInfo } from '../../client/control-client.ts';
import { formatBytes } from '../../util/size.ts';
import { formatTable, printJson } from '../output.ts';
import { formatAge } from './status.ts';

/** A short duration with its unit: 850ms, 1.5s, 42s, 3m 20s, 2h 5m. */
export function formatDuration(ms: number): string {
  const v = Math.max(0, Math.round(ms));
  if (v < 1000) return `${v}ms`;
  if (v < 10_000) return `${(v / 1000).toFixed(1)}s`;
  const s = Math.round(v / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/** The table of checkpoints, then the newest one's manifest URL. */
export function formatCheckpoints(job: JobInfo, checkpoints: CheckpointInfo[], now: number): string {
  if (checkpoints.length === 0) {
    if (!job.spec?.checkpoint) {
      return `job ${job.jobId} has no checkpoint section: the agent does not manage its checkpoints (add one to the job spec, see docs/checkpoints.md)\n`;
    }
    return `no committed checkpoints for job ${job.jobId} yet\n`;
  }
  const table = formatTable(
    ['CHECKPOINT', 'STEP', 'SIZE', 'FILES', 'UPLOADED', 'TIME TO COMMIT', 'COMMITTED', 'ATTEMPT', 'NODE'],
    checkpoints.map((c) => [
      c.checkpointId,
      c.step >= 0 ? String(c.step) : '-',
      formatBytes(c.totalBytes),
      String(c.files),
      formatBytes(c.uploadedBytes),
      formatDuration(c.timeToCommitMs),
      c.committedMs ? `${formatAge(now - c.committedMs)} ago` : '-',
      String(c.attempt),
      c.nodeId,
    ]),
  );
  const newest = checkpoints[0];
  return `${table}\n\nnewest manifest: ${newest?.manifestKey || '-'}\n`;
}

export function registerCheckpoints(program: Command): void {
  program
    .command('checkpoints')
    .description("list a job's committed checkpoints, newest first")
    .argument('<job>', 'job id')
    .option('--coordinator <host:port>', COORDINATOR_OPTION_HELP)
    .option('--json', 'print JSON')
    .action((jobId: string, flags: { coordinator?: string; json?: boolean }) =>
      withControlClient(flags.coordinator, async (client) => {
        const checkpoints = await client.listCheckpoints(jobId);
        if (flags.json) {
          printJson({ checkpoints });
          return;
        }
        const job = await client.getJob(jobId);
        process.stdout.write(formatCheckpoints(job, checkpoints, Date.now()));
      }),
    );
}
