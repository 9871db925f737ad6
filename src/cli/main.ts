// The stevedore executable: one program, one subcommand per concern.
import { Command, CommanderError } from 'commander';
import { isStevedoreError, messageOf } from '../util/errors.ts';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError } from './output.ts';

type Register = (program: Command) => void;

/**
 * Every subcommand, in the order of the help, with the module that defines it.
 * Modules are loaded only for the command being run: `stevedore status` does
 * not load the agent (Docker, S3) nor the coordinator.
 */
const COMMANDS: readonly (readonly [name: string, load: () => Promise<Register>])[] = [
  // deferred-modules first: it must run before the agent's modules are loaded (see there).
  ['agent', async () => {
    await import('../agent/deferred-modules.ts');
    return (await import('./commands/agent.ts')).registerAgent;
  }],
  ['version', async () => (await import('./commands/version.ts')).registerVersion],
  ['coordinator', async () => (await import('./commands/coordinator.ts')).registerCoordinator],
  ['submit', async () => (await import('./commands/submit.ts')).registerSubmit],
  ['status', async () => (await import('./commands/status.ts')).registerStatus],
  ['logs', async () => (await import('./commands/logs.ts')).registerLogs],
  ['cancel', async () => (await import('./commands/cancel.ts')).registerCancel],
  ['checkpoints', async () => (await import('./commands/checkpoints.ts')).registerCheckpoints],
  ['drain', async () => (await import('./commands/drain.ts')).registerDrain],
  ['certs', async () => (await import('./commands/certs.ts')).registerCerts],
];

/**
 * The program with the subcommand `argv` names, or with every subcommand
 * (no argv, help, no command, an unknown one: commander then lists them or
 * suggests the nearest).
 */
export async function buildProgram(argv?: readonly string[]): Promise<Command> {
  const program = new Command('stevedore')
    .description('Node agent for GPU training fleets, with its reference coordinator and operator CLI')
    .showHelpAfterError()
    .exitOverride();
  const named = argv?.find((a) => !a.startsWith('-'));
  const only = COMMANDS.filter(([name]) => name === named);
  for (const [, load] of only.length > 0 ? only : COMMANDS) (await load())(program);
  return program;
}

/**
 * Runs one command line and returns the exit code: 0 success, 1 the
 * operation failed, 2 the command line is wrong (src/cli/output.ts). Errors
 * are one line on stderr with their stable code in brackets; stdout stays
 * empty, with --json too, so that a script never parses an error as a result.
 */
export async function main(argv: string[]): Promise<number> {
  try {
    const program = await buildProgram(argv);
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
