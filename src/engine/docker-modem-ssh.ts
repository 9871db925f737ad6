// docker-modem (under dockerode) requires its ssh transport, and with it the
// ssh2 library (its crypto, native add-ons and tables: about 8 MB of resident
// memory), when it loads, although only an ssh:// Docker host uses it. Imported
// before dockerode, this module puts a stand-in for that transport in
// require's cache: the stand-in loads the real one on its first call, that is
// when an ssh:// host is first connected to, so that unix:// and tcp:// hosts
// never load ssh2.
import Module, { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** The path of docker-modem's ssh transport, as dockerode resolves it. */
export const MODEM_SSH_PATH = path.join(path.dirname(createRequire(require.resolve('dockerode')).resolve('docker-modem')), 'ssh.js');

type SshTransport = (opts: unknown) => unknown;

let real: SshTransport | undefined;

/** Whether the real transport (and ssh2) has been loaded. */
export function modemSshLoaded(): boolean {
  return real !== undefined;
}

function loadReal(): SshTransport {
  if (!real) {
    const standIn = require.cache[MODEM_SSH_PATH];
    delete require.cache[MODEM_SSH_PATH];
    try {
      real = require(MODEM_SSH_PATH) as SshTransport;
    } finally {
      if (standIn) require.cache[MODEM_SSH_PATH] = standIn;
    }
  }
  return real;
}

if (!require.cache[MODEM_SSH_PATH]) {
  const standIn = new Module(MODEM_SSH_PATH);
  standIn.filename = MODEM_SSH_PATH;
  standIn.loaded = true;
  standIn.exports = function sshTransport(opts: unknown): unknown {
    return loadReal()(opts);
  };
  require.cache[MODEM_SSH_PATH] = standIn;
}
