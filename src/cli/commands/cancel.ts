// `stevedore cancel JOB`
import type { Command } from 'commander';
import { COORDINATOR_OPTION_HELP, withControlClient } from '../../client/control-client.ts';
import { printJson } from '../output.ts';

export function registerCancel(program: Command): void {
  program
    .command('cancel')
    .description('cancel a job: a queued job ends at once, a running one is stopped on its node')
    .argument('<job>', 'job id')
    .option('--coordinator <host:port>', COORDINATOR_OPTION_HELP)
    .option('--json', 'print the job as JSON')
    .action((jobId: string, flags: { coordinator?: string; json?: boolean }) =>
      withControlClient(flags.coordinator, async (client) => {
        const job = await client.cancelJob(jobId);
        if (flags.json) printJson(job);
        else process.stdout.write(`${job.jobId}: ${job.state}${job.message ? ` (${job.message})` : ''}\n`);
      }),
    );
}
