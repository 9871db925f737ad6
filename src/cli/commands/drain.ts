// `stevedore drain NODE`: planned maintenance. The node takes no new job; its
// running jobs make a final checkpoint durable within the deadline, stop, and
// resume on other nodes.
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { COORDINATOR_OPTION_HELP, withControlClient } from '../../client/control-client.ts';
import { printJson } from '../output.ts';

export const DEFAULT_DRAIN_SECONDS = 120;

function parseSeconds(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < 1 || n > 86_400) {
    throw new InvalidArgumentError('must be a whole number of seconds from 1 to 86400, such as 120');
  }
  return n;
}

interface DrainFlags {
  coordinator?: string;
  deadlineSeconds: number;
  reason?: string;
  json?: boolean;
}

export function registerDrain(program: Command): void {
  program
    .command('drain')
    .description('drain a node: no new jobs; its running jobs make a final checkpoint, stop by the deadline and resume elsewhere')
    .argument('<node>', 'node id (see `stevedore status`)')
    .option('--deadline-seconds <n>', 'how long its jobs get to make their final checkpoints durable', parseSeconds, DEFAULT_DRAIN_SECONDS)
    .option('--reason <text>', 'why, for the logs and the jobs\' messages (default: drained by the operator)')
    .option('--coordinator <host:port>', COORDINATOR_OPTION_HELP)
    .option('--json', 'print the node as JSON')
    .action((nodeId: string, flags: DrainFlags) =>
      withControlClient(flags.coordinator, async (client) => {
        const node = await client.drainNode(nodeId, { deadlineSeconds: flags.deadlineSeconds, ...(flags.reason ? { reason: flags.reason } : {}) });
        if (flags.json) {
          printJson(node);
          return;
        }
        process.stdout.write(
          `${node.nodeId}: ${node.state}; it takes no new job, and its running jobs get ${flags.deadlineSeconds} s to make a final checkpoint durable, then stop and resume on other nodes\n`,
        );
      }),
    );
}
