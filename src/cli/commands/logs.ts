// `stevedore logs JOB [-f]`: a job's output, stdout as is, other streams marked.
import type { Command } from 'commander';
import { COORDINATOR_OPTION_HELP, withControlClient } from '../../client/control-client.ts';
import type { ControlClient, JobLogLineInfo } from '../../client/control-client.ts';

/** One line for people: stdout as is, `[stderr] ...`, `[agent] ...`. */
export function formatLogLine(l: JobLogLineInfo): string {
  const stream = l.line?.stream ?? 'stdout';
  const text = l.line?.text ?? '';
  return stream === 'stdout' ? text : `[${stream}] ${text}`;
}

/** Streams a job's log lines to stdout; with follow, until the job ends. Returns the number of lines. */
export async function printLogs(
  client: ControlClient,
  jobId: string,
  options: { follow: boolean; json: boolean; out?: NodeJS.WritableStream },
): Promise<number> {
  const out = options.out ?? process.stdout;
  let count = 0;
  let attempt = 0;
  for await (const l of client.streamLogs(jobId, { follow: options.follow })) {
    count++;
    if (options.json) {
      out.write(`${JSON.stringify({ attempt: l.attempt, timeMs: l.line?.timeMs ?? 0, stream: l.line?.stream ?? 'stdout', text: l.line?.text ?? '' })}\n`);
      continue;
    }
    if (attempt !== 0 && l.attempt !== attempt) out.write(`--- attempt ${l.attempt} ---\n`);
    attempt = l.attempt;
    out.write(`${formatLogLine(l)}\n`);
  }
  return count;
}

export function registerLogs(program: Command): void {
  program
    .command('logs')
    .description("print a job's output; stderr lines are marked [stderr]")
    .argument('<job>', 'job id')
    .option('-f, --follow', 'keep printing new lines until the job ends')
    .option('--coordinator <host:port>', COORDINATOR_OPTION_HELP)
    .option('--json', 'print one JSON object per line')
    .action((jobId: string, flags: { follow?: boolean; coordinator?: string; json?: boolean }) =>
      withControlClient(flags.coordinator, async (client) => {
        await printLogs(client, jobId, { follow: Boolean(flags.follow), json: Boolean(flags.json) });
      }),
    );
}
