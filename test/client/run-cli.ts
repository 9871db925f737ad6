// Runs the real `stevedore` executable as a child process, for CLI tests.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import path from 'node:path';
import { testLogDir } from '../helpers/test-log.ts';
import { ControlClient } from '../../src/client/control-client.ts';
import { FakeAgent } from '../coordinator/fake-agent.ts';

export const REPO_ROOT = path.resolve(import.meta.dirname, '..', '..');
export const BIN = path.join(REPO_ROOT, 'bin', 'stevedore.js');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunningCli {
  child: ChildProcess;
  result: Promise<CliResult>;
  /** Output so far. */
  stdout(): string;
}

export function startCli(args: string[], env: Record<string, string> = {}): RunningCli {
  return startProcess(process.execPath, [BIN, ...args], env);
}

/** Any program (for example `script`, which gives the CLI a pseudo-terminal), with its output collected. */
export function startProcess(command: string, args: string[], env: Record<string, string> = {}): RunningCli {
  const child = spawn(command, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, STEVEDORE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
  child.stderr?.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
  const result = new Promise<CliResult>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      keepStderr(command === process.execPath && args[0] === BIN ? `stevedore ${args[1] ?? ''}` : path.basename(command), code, stderr);
      resolve({ code, stdout, stderr });
    });
  });
  return { child, result, stdout: () => stdout };
}

/**
 * Appends a run's stderr (error messages, logs) to `cli-stderr-<pid>.log` in the
 * run's log directory, for the scan for secrets; headed by the command and its
 * first argument only (arguments are not logs, and a test may pass a secret).
 */
function keepStderr(what: string, code: number | null, stderr: string): void {
  if (stderr === '') return;
  appendFileSync(cliStderrFile(), `--- ${what.trim()} (exit ${code ?? 'signal'})\n${stderr}${stderr.endsWith('\n') ? '' : '\n'}`);
}

/** The file each CLI run's stderr is appended to. */
export function cliStderrFile(): string {
  return path.join(testLogDir(), `cli-stderr-${process.pid}.log`);
}

export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return startCli(args, env).result;
}

/** An in-process coordinator on loopback with a temp database, closed at teardown. */
export async function startTestCoordinator(t: { testdir: () => string; teardown: (fn: () => unknown) => void }): Promise<{ address: string; env: Record<string, string> }> {
  const { Coordinator } = await import('../../src/coordinator/coordinator.ts');
  const coordinator = new Coordinator({ listen: '127.0.0.1:0', dbPath: path.join(t.testdir(), 'coordinator.db') });
  const { address } = await coordinator.start();
  t.teardown(() => coordinator.close());
  return { address, env: { STEVEDORE_COORDINATOR: address } };
}

/** A test coordinator, one fake agent "node-a" on its session, and a Control client, all closed at teardown. */
export async function startCliScene(t: { testdir: () => string; teardown: (fn: () => unknown) => void }): Promise<{ address: string; env: Record<string, string>; agent: FakeAgent; client: ControlClient }> {
  const { address, env } = await startTestCoordinator(t);
  const agent = new FakeAgent(address, 'node-a');
  const client = new ControlClient({ address });
  t.teardown(() => {
    agent.kill();
    client.close();
  });
  return { address, env, agent, client };
}
