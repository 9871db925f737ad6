// Runs a command against the private test engine:
//   node scripts/with-test-env.ts <command...>      (npm test: `node scripts/with-test-env.ts tap`)
// Starts (or joins) the test dockerd, builds the trainer image when its inputs
// changed, runs the command with DOCKER_HOST, STEVEDORE_TEST_DOCKER_SOCKET,
// STEVEDORE_TEST_GPU_RECORD and STEVEDORE_TEST_TRAINER_IMAGE set, then releases
// the engine and exits with the command's exit code. Ctrl-C and SIGTERM are
// passed to the command and release the engine too.
//
// The run's logs: STEVEDORE_TEST_LOG_DIR names a directory created fresh for
// the run (or the one given in the environment), where the tests' processes and
// loggers write (test/helpers/test-log.ts); when this script's output is not a
// terminal, the command's own output is kept there too. After the command,
// scripts/check-secrets.ts scans it for the canary secrets: a hit fails the run
// (exit 1 unless the command failed already). The directory is removed after a
// clean, passing run and kept otherwise.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, type WriteStream } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { checkSecrets } from './check-secrets.ts';
import { buildTrainerImage, startTestEngine, testEngineEnv } from './test-env.ts';

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };

/** Copies the child's output to ours and to a file; resolves when it ends. */
function tee(from: Readable, to: NodeJS.WriteStream, file: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    from.on('data', (chunk: Buffer) => {
      to.write(chunk);
      file.write(chunk);
    });
    from.on('end', resolve);
    from.on('error', () => resolve());
  });
}

function closeFile(file: WriteStream): Promise<void> {
  return new Promise((resolve) => file.end(resolve));
}

async function run(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined) {
    process.stderr.write('usage: node scripts/with-test-env.ts <command> [args...]\n');
    return 2;
  }
  const engine = await startTestEngine();
  const givenLogDir = process.env.STEVEDORE_TEST_LOG_DIR;
  const logDir = givenLogDir !== undefined && givenLogDir !== '' ? givenLogDir : mkdtempSync(path.join(os.tmpdir(), 'stevedore-test-logs-'));
  mkdirSync(logDir, { recursive: true });
  let code: number;
  try {
    const image = await buildTrainerImage(engine.dockerHost);
    const keepOutput = !process.stdout.isTTY || !process.stderr.isTTY;
    const child = spawn(command, args, {
      stdio: keepOutput ? ['inherit', 'pipe', 'pipe'] : 'inherit',
      env: { ...process.env, ...testEngineEnv(engine, image), STEVEDORE_TEST_LOG_DIR: logDir },
    });
    const outputs: Promise<void>[] = [];
    const files: WriteStream[] = [];
    if (keepOutput && child.stdout && child.stderr) {
      const out = createWriteStream(path.join(logDir, 'command-stdout.log'));
      const err = createWriteStream(path.join(logDir, 'command-stderr.log'));
      files.push(out, err);
      outputs.push(tee(child.stdout, process.stdout, out), tee(child.stderr, process.stderr, err));
    }
    let received: NodeJS.Signals | undefined;
    const forward = (signal: NodeJS.Signals): void => {
      received = signal;
      child.kill(signal);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const signal of signals) process.on(signal, forward);
    try {
      code = await new Promise<number>((resolve) => {
        child.on('error', (err) => {
          process.stderr.write(`cannot run ${command}: ${err.message}\n`);
          resolve(127);
        });
        child.on('exit', (exitCode, signal) => {
          if (exitCode !== null) resolve(exitCode);
          else resolve(128 + (SIGNAL_NUMBERS[signal ?? received ?? 'SIGTERM'] ?? 15));
        });
      });
      // A process the command left behind may hold the pipes open: wait for the output a few seconds at most.
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(outputs), new Promise<void>((resolve) => (waited = setTimeout(resolve, 5000)))]);
      clearTimeout(waited);
      child.stdout?.destroy();
      child.stderr?.destroy();
      await Promise.all(files.map(closeFile));
    } finally {
      for (const signal of signals) process.off(signal, forward);
    }
  } finally {
    await engine.stop();
  }
  const scan = checkSecrets([logDir]);
  if (scan !== 0 && code === 0) code = 1;
  if (code === 0 && logDir !== givenLogDir) rmSync(logDir, { recursive: true, force: true });
  else process.stderr.write(`the run's logs are in ${logDir}\n`);
  return code;
}

try {
  process.exitCode = await run(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`test engine: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
}
