// Logs of the test run: every process the tests start and every in-process
// logger that matters writes into one directory, STEVEDORE_TEST_LOG_DIR (set by
// scripts/with-test-env.ts for the whole run), which scripts/check-secrets.ts
// scans for the canary secrets after the tests. Without it (tap run directly)
// the logs go to a directory of this process, removed when it exits.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { createLogger, type Logger } from '../../src/util/logger.ts';

let ownDir: string | undefined;

/** The directory the run's logs go to. */
export function testLogDir(): string {
  const fromEnv = process.env.STEVEDORE_TEST_LOG_DIR;
  if (fromEnv !== undefined && fromEnv !== '') {
    mkdirSync(fromEnv, { recursive: true });
    return fromEnv;
  }
  if (ownDir === undefined) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'stevedore-test-logs-'));
    ownDir = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return ownDir;
}

let counter = 0;

/** A new file name in the run's log directory: `<name>-<pid>-<n>.log`, name reduced to safe characters. */
export function testLogFile(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 80) || 'log';
  counter += 1;
  return path.join(testLogDir(), `${safe}-${process.pid}-${counter}.log`);
}

export interface TestLog {
  logger: Logger;
  /** The file the logger writes to. */
  file: string;
  /** The file's content so far. */
  text(): string;
  /** The file's lines, parsed. */
  lines(): Record<string, unknown>[];
}

export interface TestLogOptions {
  /** Default info. */
  level?: string;
  /** The logger's name in each line; default stevedore. */
  loggerName?: string;
}

/**
 * A real logger (JSON lines, the product's redaction) writing synchronously to a
 * new file of the run's log directory, named after `name` (a test's name, say).
 */
export function testLog(name: string, opts: TestLogOptions = {}): TestLog {
  const file = testLogFile(name);
  const logger = createLogger({ name: opts.loggerName ?? 'stevedore', level: opts.level ?? 'info', destination: pino.destination({ dest: file, sync: true, mkdir: true }) });
  const text = (): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  return {
    logger,
    file,
    text,
    lines: () => text().split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** testLog(name, opts).logger */
export function testLogger(name: string, opts: TestLogOptions = {}): Logger {
  return testLog(name, opts).logger;
}
