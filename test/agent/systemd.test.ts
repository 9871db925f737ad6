// The agent's messages to systemd, received on a real notify socket (a unix
// datagram socket, which Node cannot bind: python3 listens on it).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { extendStopWhile, sdNotify, underSystemd } from '../../src/agent/systemd.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { listenForNotify } from '../helpers/notify-socket.ts';

void t.test('outside systemd nothing is sent', (t) => {
  const saved = process.env.NOTIFY_SOCKET;
  delete process.env.NOTIFY_SOCKET;
  t.teardown(() => {
    if (saved !== undefined) process.env.NOTIFY_SOCKET = saved;
  });
  t.equal(underSystemd(), false);
  const stop = extendStopWhile(silentLogger(), 50);
  stop();
  t.end();
});

void t.test('readiness, and stop-timeout extensions while a drain runs', async (t) => {
  // Short: a unix socket path is at most 107 bytes.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-notify-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = path.join(dir, 'notify.sock');
  const { messages } = await listenForNotify(socketPath, 2.5);
  process.env.NOTIFY_SOCKET = socketPath;
  t.teardown(() => {
    delete process.env.NOTIFY_SOCKET;
  });
  t.equal(underSystemd(), true);
  sdNotify('READY=1', silentLogger());
  const stop = extendStopWhile(silentLogger(), 300);
  await new Promise((r) => setTimeout(r, 1000));
  stop();
  const received = await messages;
  t.ok(received.some((m) => /(^| )READY=1/.test(m)), 'READY=1 sent');
  const extensions = received.filter((m) => /EXTEND_TIMEOUT_USEC=900000(\s|$)/.test(m));
  t.ok(extensions.length >= 3, `EXTEND_TIMEOUT_USEC repeated while draining (${extensions.length} times), each for three steps`);
  // systemd-notify follows each message with a BARRIER=1 of its own.
  const states = received.filter((m) => m !== 'BARRIER=1');
  t.ok(states.length > 0 && states.every((m) => m.includes(`MAINPID=${process.pid}`)), 'sent on behalf of the agent process');
  t.ok(extensions.length <= 5, 'and no more once the drain is over (the listener ran 1.5 s longer)');
});
