// Structured logs (pino, JSON lines). Secrets are redacted by path wherever
// they can appear in a logged object.
import pino from 'pino';

export type Logger = pino.Logger;

export const REDACT_PATHS = [
  'password', '*.password', '*.*.password',
  'token', '*.token', '*.*.token',
  'secretAccessKey', '*.secretAccessKey', '*.*.secretAccessKey',
  'endpoints.*.secretAccessKey', '*.endpoints.*.secretAccessKey', '*.*.endpoints.*.secretAccessKey',
  'sessionToken', '*.sessionToken', '*.*.sessionToken',
  'authconfig', '*.authconfig',
  'auth', '*.auth',
  'key', '*.key',
];

export interface LoggerOptions {
  level?: string;
  name?: string;
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      name: options.name ?? 'stevedore',
      level: options.level ?? process.env.STEVEDORE_LOG_LEVEL ?? 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}

/** A logger that drops everything, for library code under test. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
