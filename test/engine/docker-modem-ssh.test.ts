import { createRequire } from 'node:module';
import t from 'tap';
import '../../src/engine/docker-engine.ts';
import { MODEM_SSH_PATH, modemSshLoaded } from '../../src/engine/docker-modem-ssh.ts';

const modemRequire = createRequire(createRequire(import.meta.url).resolve('dockerode'));
const modulePath = modemRequire.resolve('docker-modem');
const ssh2Loaded = (): boolean => Object.keys(modemRequire.cache).some((file) => file.includes('/node_modules/ssh2/'));

void t.test('loading the Docker engine does not load ssh2', (t) => {
  t.ok(modemRequire.cache[modulePath], 'docker-modem is loaded');
  t.ok(MODEM_SSH_PATH.endsWith('/docker-modem/lib/ssh.js'), MODEM_SSH_PATH);
  t.equal(modemSshLoaded(), false);
  t.equal(ssh2Loaded(), false, 'no ssh2 module in require.cache');
  t.end();
});

void t.test('an ssh:// connection through docker-modem loads the real transport and connects with it', async (t) => {
  const Modem = modemRequire('docker-modem') as new (opts: object) => { dial(opts: object, cb: (err: unknown) => void): void };
  // Port 1 on loopback: nothing listens, so ssh2 itself reports the refused connection.
  const modem = new Modem({ protocol: 'ssh', host: '127.0.0.1', port: 1, username: 'nobody' });
  const err = await new Promise<unknown>((resolve) => modem.dial({ path: '/_ping', method: 'GET', statusCodes: { 200: true } }, resolve));
  t.match(String(err), /ECONNREFUSED/);
  t.equal(modemSshLoaded(), true);
  t.equal(ssh2Loaded(), true);
});
