// Runs a command against the private test engine:
//   node scripts/with-test-env.ts <command...>      (npm test: `node scripts/with-test-env.ts tap`)
// Starts (or joins) the test dockerd, builds the trainer image when its inputs
// changed, runs the command with DOCKER_HOST, STEVEDORE_TEST_DOCKER_SOCKET,
// STEVEDORE_TEST_GPU_RECORD and STEVEDORE_TEST_TRAINER_IMAGE set, then releases
// the engine and exits with the command's exit code. Ctrl-C and SIGTERM are
// passed to the command and release the engine too.
import { spawn } from 'node:child_process';
import { buildTrainerImage, startTestEngine, testEngineEnv } from './test-env.ts';

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

async function run(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined) {
    process.stderr.write('usage: node scripts/with-test-env.ts <command> [args...]\n');
    return 2;
  }
  const engine = await startTestEngine();
  try {
    const image = await buildTrainerImage(engine.dockerHost);
    const child = spawn(command, args, {
      stdio: 'inherit',
      env: { ...process.env, ...testEngineEnv(engine, image) },
    });
    let received: NodeJS.Signals | undefined;
    const forward = (signal: NodeJS.Signals): void => {
      received = signal;
      child.kill(signal);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const signal of signals) process.on(signal, forward);
    try {
      return await new Promise<number>((resolve) => {
        child.on('error', (err) => {
          process.stderr.write(`cannot run ${command}: ${err.message}\n`);
          resolve(127);
        });
        child.on('exit', (code, signal) => {
          if (code !== null) resolve(code);
          else resolve(128 + (SIGNAL_NUMBERS[signal ?? received ?? 'SIGTERM'] ?? 15));
        });
      });
    } finally {
      for (const signal of signals) process.off(signal, forward);
    }
  } finally {
    await engine.stop();
  }
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`test engine: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
