// `stevedore submit SPEC.yaml [--wait] [--follow]`: validates the spec here,
// submits it, prints the job id; optionally waits for the end.
import type { Command } from 'commander';
import { COORDINATOR_OPTION_HELP, withControlClient } from '../../client/control-client.ts';
import type { ControlClient, JobInfo } from '../../client/control-client.ts';
import { readJobSpecFile } from '../../spec/job-spec.ts';
import { printJson } from '../output.ts';
import { printLogs } from './logs.ts';

const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

interface SubmitFlags {
  wait?: boolean;
  follow?: boolean;
  coordinator?: string;
  json?: boolean;
  pollSeconds: string;
}

async function waitForEnd(client: ControlClient, jobId: string, pollMs: number): Promise<JobInfo> {
  for (;;) {
    const job = await client.getJob(jobId);
    if (TERMINAL.has(job.state)) return job;
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

export function registerSubmit(program: Command): void {
  program
    .command('submit')
    .description('submit a job spec (YAML or JSON) and print the job id')
    .argument('<spec>', 'job spec file')
    .option('--wait', 'wait for the job to end; exit 0 only if it succeeded')
    .option('--follow', "print the job's output while waiting (implies --wait; to stderr with --json)")
    .option('--poll-seconds <n>', 'how often --wait asks for the job state', '1')
    .option('--coordinator <host:port>', COORDINATOR_OPTION_HELP)
    .option('--json', 'print the job as JSON (with --wait: once it ended)')
    .action((file: string, flags: SubmitFlags) =>
      withControlClient(flags.coordinator, async (client) => {
        const spec = readJobSpecFile(file);
        const submitted = await client.submitJob(spec);
        const wait = Boolean(flags.wait || flags.follow);
        if (!wait) {
          if (flags.json) printJson(submitted);
          else process.stdout.write(`${submitted.jobId}\n`);
          return;
        }
        if (!flags.json) process.stdout.write(`${submitted.jobId}\n`);
        // With --json, stdout holds one JSON document: the output goes to stderr.
        if (flags.follow) await printLogs(client, submitted.jobId, { follow: true, json: false, out: flags.json ? process.stderr : process.stdout });
        const pollMs = Math.max(50, Number(flags.pollSeconds) * 1000 || 1000);
        const job = await waitForEnd(client, submitted.jobId, pollMs);
        if (flags.json) printJson(job);
        else process.stdout.write(`${job.jobId} ${job.state}${job.message ? `: ${job.message}` : ''}\n`);
        process.exitCode = job.state === 'succeeded' ? 0 : 1;
      }),
    );
}
