// `stevedore submit SPEC.yaml [--wait] [--follow]`: validates the spec here,
// submits it, prints the job id; optionally waits for the end.
import type { Command } from 'commander';
import { COORDINATOR_OPTION_HELP, withControlClient } from '../../client/control-client.ts';
import type { ControlClient, JobInfo } from '../../client/control-client.ts';
import { readJobSpecFile } from '../../spec/job-spec.ts';
import { parsePollSeconds, printJson } from '../output.ts';
import { finalLine, outputMode, useColor } from '../progress.ts';
import { watchJob } from '../watch.ts';
import { printLogs } from './logs.ts';

interface SubmitFlags {
  wait?: boolean;
  follow?: boolean;
  coordinator?: string;
  json?: boolean;
  pollSeconds: string;
}

export function registerSubmit(program: Command): void {
  program
    .command('submit')
    .description('submit a job spec (YAML or JSON) and print the job id')
    .argument('<spec>', 'job spec file')
    .option('--wait', "wait for the job to end, showing its long operations' progress; exit 0 only if it succeeded")
    .option('--follow', "print the job's output while waiting (implies --wait; progress then goes to stderr, and with --json the output too)")
    .option('--poll-seconds <n>', 'how often --wait asks for the job state', '1')
    .option('--coordinator <host:port>', COORDINATOR_OPTION_HELP)
    .option('--json', 'print the job as JSON (with --wait: once it ended)')
    .action(async (file: string, flags: SubmitFlags) => {
      const pollMs = parsePollSeconds(flags.pollSeconds);
      const spec = readJobSpecFile(file);
      await withControlClient(flags.coordinator, async (client) => {
        const submitted = await client.submitJob(spec);
        const wait = Boolean(flags.wait || flags.follow);
        if (!wait) {
          if (flags.json) printJson(submitted);
          else process.stdout.write(`${submitted.jobId}\n`);
          return;
        }
        const job = flags.json
          ? await waitQuietly(client, submitted.jobId, pollMs, Boolean(flags.follow))
          : await waitWithProgress(client, submitted.jobId, pollMs, Boolean(flags.follow));
        if (flags.json) printJson(job);
        process.exitCode = job.state === 'succeeded' ? 0 : 1;
      });
    });
}

/** --json: stdout holds one JSON document, the ended job; the output (with --follow) goes to stderr. */
async function waitQuietly(client: ControlClient, jobId: string, pollMs: number, follow: boolean): Promise<JobInfo> {
  if (follow) await printLogs(client, jobId, { follow: true, json: false, out: process.stderr });
  return watchJob(client, jobId, { mode: 'json', color: false, pollMs, finalLine: false });
}

/**
 * The job id, then the progress of its long operations (live on a terminal),
 * then its final state. With --follow the output goes to stdout and the
 * progress to stderr as plain lines, so that the two do not mix.
 */
async function waitWithProgress(client: ControlClient, jobId: string, pollMs: number, follow: boolean): Promise<JobInfo> {
  process.stdout.write(`${jobId}\n`);
  const env = process.env;
  if (!follow) {
    const isTTY = Boolean(process.stdout.isTTY);
    return watchJob(client, jobId, { mode: outputMode({ json: false, isTTY, env }), color: useColor({ isTTY, env }), pollMs, out: process.stdout });
  }
  const [, job] = await Promise.all([
    printLogs(client, jobId, { follow: true, json: false, out: process.stdout }),
    watchJob(client, jobId, { mode: 'plain', color: false, pollMs, out: process.stderr, finalLine: false }),
  ]);
  process.stdout.write(`${finalLine(job)}\n`);
  return job;
}
