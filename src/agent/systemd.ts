// Talks to systemd when the agent runs under it (Type=notify): readiness, and
// extending the stop timeout while a drain is still making checkpoints durable.
// Node cannot write to a unix datagram socket, so `systemd-notify` does it
// (the unit sets NotifyAccess=all for that).
import { execFile } from 'node:child_process';
import type { Logger } from '../util/logger.ts';

export function underSystemd(): boolean {
  return Boolean(process.env.NOTIFY_SOCKET);
}

export function sdNotify(state: string, logger: Logger): void {
  if (!underSystemd()) return;
  execFile('systemd-notify', [`--pid=${process.pid}`, state], (err) => {
    if (err) logger.warn({ err: err.message, state }, 'systemd-notify failed');
  });
}

/** Keeps telling systemd the stop needs more time, until the returned function is called. */
export function extendStopWhile(logger: Logger, stepMs = 5000): () => void {
  if (!underSystemd()) return () => undefined;
  const send = (): void => sdNotify(`EXTEND_TIMEOUT_USEC=${(stepMs * 3) * 1000}`, logger);
  send();
  const timer = setInterval(send, stepMs);
  return () => clearInterval(timer);
}

/** True when systemd is shutting the host down (not just restarting the agent). */
export function hostShuttingDown(): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('systemctl', ['is-system-running'], { timeout: 2000 }, (_err, stdout) => {
      resolve(String(stdout).trim() === 'stopping');
    });
  });
}
