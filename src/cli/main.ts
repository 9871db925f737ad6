// The stevedore executable: one program, one subcommand per concern.
import { Command, CommanderError } from 'commander';
import { isStevedoreError, messageOf } from '../util/errors.ts';
import { registerAgent } from './commands/agent.ts';
import { registerVersion } from './commands/version.ts';
import { registerCoordinator } from './commands/coordinator.ts';
import { registerSubmit } from './commands/submit.ts';
import { registerStatus } from './commands/status.ts';
import { registerLogs } from './commands/logs.ts';
import { registerCancel } from './commands/cancel.ts';
import { registerCheckpoints } from './commands/checkpoints.ts';
import { registerDrain } from './commands/drain.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from './output.ts';

export function buildProgram(): Command {
  const program = new Command('stevedore')
    .description('Node agent for GPU training fleets, with its reference coordinator and operator CLI')
    .showHelpAfterError()
    .exitOverride();
  registerAgent(program);
  registerVersion(program);
  registerCoordinator(program);
  registerSubmit(program);
  registerStatus(program);
  registerLogs(program);
  registerCancel(program);
  registerCheckpoints(program);
  registerDrain(program);
  return program;
}

/**
 * Runs one command line and returns the exit code: 0 success, 1 the
 * operation failed, 2 the command line is wrong (src/cli/output.ts). Errors
 * are one line on stderr with their stable code in brackets; stdout stays
 * empty, with --json too, so that a script never parses an error as a result.
 */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Commander has printed the help, or its message, already; --help exits 0.
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    const usage = err instanceof UsageError;
    process.stderr.write(`stevedore: ${messageOf(err)}${isStevedoreError(err) ? ` [${err.code}]` : ''}\n`);
    return usage ? EXIT_USAGE : EXIT_FAILED;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
