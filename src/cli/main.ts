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

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    const code = isStevedoreError(err) ? ` [${err.code}]` : '';
    process.stderr.write(`stevedore: ${messageOf(err)}${code}\n`);
    return 1;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
