// scripts/install.sh run as an operator would, into a temporary root
// (--root) so that the host is left alone; npm is a stand-in that records its
// calls and links the checkout's modules. `stevedore certs` runs for real.
import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, appendFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { loadAgentConfig } from '../../src/agent/agent-config.ts';
import { signedBy } from '../../src/security/certs.ts';
import { identityFromPem } from '../../src/security/identity.ts';
import { readJoinSecret, verifyJoinToken } from '../../src/security/join-token.ts';
import { runCli } from '../client/run-cli.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const SCRIPT = path.join(REPO, 'scripts/install.sh');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A stand-in npm: logs "ARGS | CWD" per call; `ci` creates node_modules with Node.js (this one) and links to the checkout's modules. */
function fakeNpm(dir: string): { npm: string; log: string } {
  const log = path.join(dir, 'npm.log');
  const npm = path.join(dir, 'npm');
  writeFileSync(
    npm,
    [
      '#!/bin/sh',
      `echo "$* | $(pwd)" >> '${log}'`,
      'if [ "$1" = ci ]; then',
      '  mkdir -p node_modules/.bin',
      `  for m in '${path.join(REPO, 'node_modules')}'/*; do ln -s "$m" node_modules/; done`,
      `  printf '#!/bin/sh\\nexec %s "$@"\\n' '${process.execPath}' > node_modules/.bin/node`,
      '  chmod 755 node_modules/.bin/node',
      'fi',
      '',
    ].join('\n'),
  );
  chmodSync(npm, 0o755);
  return { npm, log };
}

function install(args: string[], env: Record<string, string> = {}): Run {
  const r = spawnSync('sh', [SCRIPT, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A target root with an /etc/group, so that the script can add its group there. */
function makeRoot(dir: string): string {
  const root = path.join(dir, 'root');
  mkdirSync(path.join(root, 'etc'), { recursive: true });
  writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\ndocker:x:998:\n');
  return root;
}

const mode = (file: string): string => (statSync(file).mode & 0o7777).toString(8).padStart(4, '0');

/** Where the units and agent.yaml expect certificates, keys and secrets on a host. */
const PKI = '/etc/stevedore/pki';
/** What `stevedore certs node --out DIR` writes, and agent.yaml names. */
const NODE_FILES = ['ca.pem', 'node.pem', 'node-key.pem', 'join-token'];

/** agent.yaml as it would read with /etc/stevedore/pki under `root` (agent.yaml names host paths). */
function configUnder(root: string, file: string): string {
  const moved = path.join(path.dirname(file), 'agent-under-root.yaml');
  writeFileSync(moved, readFileSync(file, 'utf8').replaceAll(`${PKI}/`, `${path.join(root, PKI)}/`), { mode: 0o600 });
  return moved;
}

/** The subject alternative names of a certificate, as Node.js writes them. */
const sans = (file: string): string[] => (new X509Certificate(readFileSync(file)).subjectAltName ?? '').split(', ');

void t.test('installs an agent into an empty root, and a second run keeps the edited configuration', async (t) => {
  const dir = t.testdir();
  const root = makeRoot(dir);
  const { npm, log } = fakeNpm(dir);

  const first = install(['--root', root], { NPM: npm });
  t.equal(first.status, 0, first.stderr);
  const at = (p: string): string => path.join(root, p);

  // The release, with its runtime dependencies installed by npm in the staging directory.
  for (const f of ['package.json', 'package-lock.json', 'bin/stevedore.js', 'src/agent/agent-config.ts', 'proto', 'systemd/stevedore-agent.service', 'docs/operations.md']) {
    t.ok(existsSync(at(`opt/stevedore/${f}`)), `opt/stevedore/${f}`);
  }
  t.notOk(existsSync(at('opt/stevedore.new')), 'no staging directory left');
  const calls = readFileSync(log, 'utf8').trim().split('\n');
  t.same(calls, [`ci --omit=dev --ignore-scripts --no-audit --no-fund | ${at('opt/stevedore.new')}`, `rebuild node | ${at('opt/stevedore.new')}`]);
  t.match(first.stdout, /Node\.js v\d+\./);

  // The unit, the command, the configuration and the directories, with their modes.
  const unit = at('etc/systemd/system/stevedore-agent.service');
  t.equal(readFileSync(unit, 'utf8'), readFileSync(path.join(REPO, 'systemd/stevedore-agent.service'), 'utf8'));
  t.equal(mode(unit), '0644');
  t.equal(mode(at('usr/local/bin/stevedore')), '0755');
  t.match(readFileSync(at('usr/local/bin/stevedore'), 'utf8'), 'exec /opt/stevedore/node_modules/.bin/node /opt/stevedore/bin/stevedore.js "$@"');
  t.equal(mode(at('etc/stevedore/agent.yaml')), '0600', 'the configuration may hold secrets');
  t.equal(mode(at('var/lib/stevedore')), '0700');
  t.equal(mode(at('var/lib/stevedore/jobs')), '0755');
  t.notOk(existsSync(at('etc/systemd/system/stevedore-agent.service.d/paths.conf')), 'no drop-in for the default paths');
  t.match(readFileSync(at('etc/group'), 'utf8'), /^stevedore:x:\d+:$/m, 'the local API group');
  const sysctl = readFileSync(at('etc/sysctl.d/60-stevedore-inotify.conf'), 'utf8');
  const watches = Number(/^fs\.inotify\.max_user_watches = (\d+)$/m.exec(sysctl)?.[1]);
  t.ok(watches >= 1_048_576, `max_user_watches ${watches}`);
  t.ok(watches >= Number(readFileSync('/proc/sys/fs/inotify/max_user_watches', 'utf8')), "never below the host's value");
  t.match(first.stdout, /agent\.yaml is valid/);

  // TLS by default: the template names the node's four files in /etc/stevedore/pki;
  // they are not there yet, so the script lists them and says how to make them.
  t.equal(mode(at('etc/stevedore/pki')), '0700', 'the directory the files are copied into');
  t.match(first.stderr, /warning: the agent cannot start yet: its certificate and join token are missing/);
  const listed = first.stdout.split('\n').filter((l) => l.startsWith(`  ${PKI}/`)).map((l) => l.trim());
  t.same(listed, NODE_FILES.map((f) => `${PKI}/${f}`), 'each missing file, as agent.yaml names it');
  t.match(first.stdout, `stevedore certs node [NODE_ID] --ca ${PKI} --out ./NODE`);
  t.match(first.stdout, /copy the four files it writes \(ca\.pem, node\.pem, node-key\.pem, join-token\) into \/etc\/stevedore\/pki/);
  t.match(first.stdout, /systemctl enable stevedore-agent\.service; copy its certificate and join token first/, 'not started before its files are there');
  t.notMatch(first.stdout, /enable --now/);

  // The template as the agent reads it: refused for the missing files only
  // (the agent's own clear error), valid with them in place.
  const template = at('etc/stevedore/agent.yaml');
  t.throws(() => loadAgentConfig({ file: template, fileIsExplicit: true, env: {}, cwd: '/' }), {
    code: 'CONFIG_INVALID',
    message: /^invalid agent configuration \(file .*\):\n {2}coordinator\.tls\.ca: cannot read \/etc\/stevedore\/pki\/ca\.pem \(ENOENT\): check the path\n {2}coordinator\.tls\.cert: cannot read \/etc\/stevedore\/pki\/node\.pem \(ENOENT\)[^\n]*\n {2}coordinator\.tls\.key: cannot read \/etc\/stevedore\/pki\/node-key\.pem \(ENOENT\)[^\n]*$/,
  });
  const issued = await runCli(['certs', 'ca', '--out', path.join(dir, 'ca')]);
  t.equal(issued.code, 0, issued.stderr);
  const node = await runCli(['certs', 'node', 'node-0123456789ab', '--ca', path.join(dir, 'ca'), '--out', at(PKI)]);
  t.equal(node.code, 0, node.stderr);
  const config = loadAgentConfig({ file: configUnder(root, template), fileIsExplicit: true, env: {}, cwd: '/' });
  t.same(config.coordinator.tls, { ca: at(`${PKI}/ca.pem`), cert: at(`${PKI}/node.pem`), key: at(`${PKI}/node-key.pem`), joinToken: readFileSync(at(`${PKI}/join-token`), 'utf8').trim() });
  t.notOk(config.coordinator.insecure);
  t.equal(config.socketGroup, 'stevedore');
  t.equal(config.stateDir, '/var/lib/stevedore');
  t.equal(config.workRoot, '/var/lib/stevedore/jobs');

  // Second run: an operator's edits survive; a work root elsewhere gets a drop-in.
  const edited = `${readFileSync(at('etc/stevedore/agent.yaml'), 'utf8')}nodeName: gpu-node-17\nworkRoot: /mnt/nvme/stevedore/jobs\n`;
  writeFileSync(at('etc/stevedore/agent.yaml'), edited);
  writeFileSync(at('opt/stevedore/left-over'), 'from the previous release');
  const second = install(['--root', root], { NPM: npm });
  t.equal(second.status, 0, second.stderr);
  t.equal(readFileSync(at('etc/stevedore/agent.yaml'), 'utf8'), edited, 'the edited configuration is kept');
  t.match(second.stdout, /Keeping .*agent\.yaml/);
  t.notOk(existsSync(at('opt/stevedore/left-over')), 'the release is replaced whole');
  t.equal(readFileSync(at('etc/group'), 'utf8').match(/^stevedore:/gm)?.length, 1, 'the group is added once');
  t.equal(mode(at('mnt/nvme/stevedore/jobs')), '0755', 'the configured work root is created');
  const dropIn = readFileSync(at('etc/systemd/system/stevedore-agent.service.d/paths.conf'), 'utf8');
  t.match(dropIn, /^\[Service\]\nReadWritePaths=\/mnt\/nvme\/stevedore\/jobs$/m, 'the sandbox lets the agent write there');

  // Back to the default work root: the drop-in goes.
  writeFileSync(at('etc/stevedore/agent.yaml'), `${edited.replace(/^workRoot:.*\n/m, '')}`);
  const third = install(['--root', root], { NPM: npm });
  t.equal(third.status, 0, third.stderr);
  t.notOk(existsSync(at('etc/systemd/system/stevedore-agent.service.d/paths.conf')));
  t.notMatch(third.stdout, /not here yet/, 'the files copied in: nothing missing');
  t.match(third.stdout, /systemctl enable --now stevedore-agent\.service/);
});

void t.test('an invalid configuration is kept and reported with the agent\'s own message', (t) => {
  const dir = t.testdir();
  const root = makeRoot(dir);
  const { npm } = fakeNpm(dir);
  mkdirSync(path.join(root, 'etc/stevedore'), { recursive: true });
  writeFileSync(path.join(root, 'etc/stevedore/agent.yaml'), 'coordinator:\n  address: localhost\n');
  const r = install(['--root', root], { NPM: npm });
  t.equal(r.status, 0, 'the install itself succeeds: the configuration can be fixed after');
  t.match(r.stderr, /CONFIG_INVALID: invalid agent configuration/);
  t.match(r.stderr, /coordinator\.address: "localhost" has no port/);
  t.match(r.stderr, /agent\.yaml is not valid \(above\): fix it/);
  t.equal(readFileSync(path.join(root, 'etc/stevedore/agent.yaml'), 'utf8'), 'coordinator:\n  address: localhost\n');
  t.end();
});

void t.test('a coordinator gets its unit, an environment file, a CA, its certificate and the join secret; a second run keeps them', async (t) => {
  const dir = t.testdir();
  const root = makeRoot(dir);
  const { npm } = fakeNpm(dir);
  const at = (p: string): string => path.join(root, p);
  const pki = (f: string): string => at(`${PKI}/${f}`);
  const r = install(['--role', 'coordinator', '--root', root], { NPM: npm });
  t.equal(r.status, 0, r.stderr);
  t.ok(existsSync(at('etc/systemd/system/stevedore-coordinator.service')));
  t.notOk(existsSync(at('etc/systemd/system/stevedore-agent.service')));
  t.equal(mode(at('etc/stevedore/coordinator.env')), '0600');
  t.notOk(existsSync(at('etc/stevedore/agent.yaml')));
  t.notOk(existsSync(at('etc/sysctl.d')), 'inotify limits are for agents');

  // The PKI, with keys and the secret for root alone.
  t.equal(mode(at(PKI)), '0700');
  t.same(Object.fromEntries(readdirSync(at(PKI)).sort().map((f) => [f, mode(pki(f))])), {
    'ca-key.pem': '0600', 'ca.pem': '0644', 'coordinator-key.pem': '0600', 'coordinator.pem': '0644', 'join-secret': '0600',
  });
  const caPem = readFileSync(pki('ca.pem'), 'utf8');
  t.ok(signedBy(readFileSync(pki('coordinator.pem'), 'utf8'), caPem), "the coordinator's certificate is the CA's");
  const fqdn = spawnSync('hostname', ['-f'], { encoding: 'utf8' }).stdout.trim();
  t.same(identityFromPem(readFileSync(pki('coordinator.pem'))), { kind: 'coordinator', name: fqdn }, 'named after hostname -f');
  const names = sans(pki('coordinator.pem'));
  t.ok(names.includes(`DNS:${fqdn}`) && names.includes('IP Address:127.0.0.1'), `its SANs ${names.join(', ')}`);
  for (const ip of spawnSync('hostname', ['-I'], { encoding: 'utf8' }).stdout.trim().split(/\s+/).filter((a) => /^\d+\.\d+\.\d+\.\d+$/.test(a))) {
    t.ok(names.includes(`IP Address:${ip}`), `the host's address ${ip}`);
  }
  const secret = readJoinSecret(pki('join-secret'));
  const secretText = readFileSync(pki('join-secret'), 'utf8').trim();
  t.notOk(`${r.stdout}${r.stderr}`.includes(secretText), 'the join secret is never printed');

  // The unit finds every file it hands to the coordinator.
  const unit = readFileSync(at('etc/systemd/system/stevedore-coordinator.service'), 'utf8');
  const sources = [...unit.matchAll(/^LoadCredential=[^:]+:(.+)$/gm)].map((m) => m[1]!);
  t.equal(sources.length, 4);
  for (const source of sources) t.ok(existsSync(at(source)), `${source} is there`);

  // What to do next: nodes, tokens, operators.
  t.match(r.stdout, /Made a CA in .*\/etc\/stevedore\/pki/);
  t.match(r.stdout, `stevedore certs node [NODE_ID] --ca ${PKI} --out ./NODE`);
  t.match(r.stdout, `stevedore certs token NODE_ID --ca ${PKI}`);
  t.match(r.stdout, `stevedore certs operator NAME --ca ${PKI}`);
  t.match(r.stdout, /systemctl enable --now stevedore-coordinator\.service/);

  // A node made with those next steps validates, and its token is the coordinator's.
  const node = await runCli(['certs', 'node', '--ca', at(PKI), '--out', path.join(dir, 'node')]);
  t.equal(node.code, 0, node.stderr);
  t.ok(verifyJoinToken(secret, readFileSync(path.join(dir, 'node', 'join-token'), 'utf8').trim()).ok);

  // Again, with other hosts: nothing is replaced.
  const before = Object.fromEntries(readdirSync(at(PKI)).map((f) => [f, readFileSync(pki(f), 'utf8')]));
  const again = install(['--role', 'coordinator', '--root', root, '--coordinator-host', 'coord.example.com'], { NPM: npm });
  t.equal(again.status, 0, again.stderr);
  t.same(Object.fromEntries(readdirSync(at(PKI)).map((f) => [f, readFileSync(pki(f), 'utf8')])), before, 'CA, certificate, key and secret kept byte for byte');
  t.match(again.stdout, /Keeping the CA in/);
  t.match(again.stdout, /Keeping the join secret/);
  t.match(again.stdout, /Keeping the coordinator's certificate/);

  // The coordinator's certificate and the secret gone (a new host name, say): made again, under the same CA.
  rmSync(pki('coordinator.pem'));
  rmSync(pki('coordinator-key.pem'));
  rmSync(pki('join-secret'));
  const renamed = install(['--role', 'coordinator', '--root', root, '--coordinator-host', 'coord.example.com,10.0.0.5'], { NPM: npm });
  t.equal(renamed.status, 0, renamed.stderr);
  t.equal(readFileSync(pki('ca.pem'), 'utf8'), caPem, 'the same CA');
  t.same(sans(pki('coordinator.pem')), ['DNS:coord.example.com', 'IP Address:10.0.0.5', 'URI:stevedore:coordinator:coord.example.com'], 'only the hosts of --coordinator-host');
  t.ok(signedBy(readFileSync(pki('coordinator.pem'), 'utf8'), caPem));
  t.equal(mode(pki('coordinator-key.pem')), '0600');
  t.equal(mode(pki('join-secret')), '0600');
  t.ok(readJoinSecret(pki('join-secret')).length >= 32, 'a new join secret the coordinator accepts');
  t.notOk(verifyJoinToken(readJoinSecret(pki('join-secret')), readFileSync(path.join(dir, 'node', 'join-token'), 'utf8').trim()).ok, 'a new secret: old tokens stop working');
});

void t.test('a coordinator host holding the CA certificate without its key is told what to copy, and not started', (t) => {
  const dir = t.testdir();
  const root = makeRoot(dir);
  const { npm } = fakeNpm(dir);
  const ca = spawnSync(process.execPath, [path.join(REPO, 'bin/stevedore.js'), 'certs', 'ca', '--out', path.join(dir, 'offline-ca')], { encoding: 'utf8' });
  t.equal(ca.status, 0, ca.stderr);
  mkdirSync(path.join(root, PKI), { recursive: true });
  writeFileSync(path.join(root, PKI, 'ca.pem'), readFileSync(path.join(dir, 'offline-ca', 'ca.pem')));
  const r = install(['--role', 'coordinator', '--root', root], { NPM: npm });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /Keeping the CA/);
  t.match(r.stderr, /no coordinator certificate in .*, and no CA key here to make one: make it where the CA key is \(stevedore certs coordinator/);
  t.match(r.stderr, /coordinator\.pem is missing: the coordinator refuses to start without it/);
  t.match(r.stdout, /systemctl enable stevedore-coordinator\.service; put ca\.pem, coordinator\.pem, coordinator-key\.pem and join-secret into \/etc\/stevedore\/pki first/);
  t.notOk(existsSync(path.join(root, PKI, 'ca-key.pem')), 'no CA made over the one that exists');
  t.ok(existsSync(path.join(root, PKI, 'join-secret')), 'the join secret is made here');
  t.end();
});

void t.test('installs from a release tarball laid out as `npm pack` makes it', (t) => {
  const dir = t.testdir();
  const root = makeRoot(dir);
  const { npm } = fakeNpm(dir);
  const pkg = path.join(dir, 'pkg');
  mkdirSync(pkg);
  const tar = spawnSync('tar', ['-czf', path.join(dir, 'stevedore.tgz'), '--transform', 's,^\\.,package,', '-C', REPO, './package.json', './package-lock.json', './bin', './src', './proto', './systemd'], { encoding: 'utf8' });
  t.equal(tar.status, 0, tar.stderr);
  const r = install(['--from', path.join(dir, 'stevedore.tgz'), '--root', root], { NPM: npm });
  t.equal(r.status, 0, r.stderr);
  t.ok(existsSync(path.join(root, 'opt/stevedore/bin/stevedore.js')));
  t.ok(existsSync(path.join(root, 'opt/stevedore/systemd/stevedore-agent.service')));
  t.end();
});

void t.test('--dry-run changes nothing', (t) => {
  const dir = t.testdir();
  const root = makeRoot(dir);
  const { npm, log } = fakeNpm(dir);
  const r = install(['--dry-run', '--root', root], { NPM: npm });
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /would run: .*npm ci --omit=dev/);
  t.match(r.stdout, /would write .*etc\/stevedore\/agent\.yaml \(mode 0600\)/);
  t.same(readdirSync(root), ['etc']);
  t.same(readdirSync(path.join(root, 'etc')), ['group']);
  t.notOk(existsSync(log), 'npm not run');

  const c = install(['--dry-run', '--role', 'coordinator', '--root', root, '--coordinator-host', 'coord.example.com'], { NPM: npm });
  t.equal(c.status, 0, c.stderr);
  t.match(c.stdout, `would run: stevedore certs ca --out ${path.join(root, PKI)}`);
  t.match(c.stdout, `would run: stevedore certs coordinator --ca ${path.join(root, PKI)} --host coord.example.com --out ${path.join(root, PKI)}`);
  t.same(readdirSync(path.join(root, 'etc')), ['group'], 'no PKI made');
  t.end();
});

void t.test('wrong usage is a clear error', (t) => {
  const bad = install(['--rol', 'agent']);
  t.equal(bad.status, 2);
  t.equal(bad.stderr, 'install.sh: unknown option "--rol" (see --help)\n');
  const role = install(['--role', 'worker']);
  t.equal(role.status, 2);
  t.match(role.stderr, '--role must be agent or coordinator, not "worker"');
  const missing = install(['--role']);
  t.equal(missing.status, 2);
  t.match(missing.stderr, '--role needs a value');
  const hostForAgent = install(['--coordinator-host', 'coord.example.com']);
  t.equal(hostForAgent.status, 2);
  t.match(hostForAgent.stderr, '--coordinator-host is for --role coordinator');
  const from = install(['--from', '/nonexistent/stevedore.tgz', '--root', t.testdir()]);
  t.equal(from.status, 1);
  t.match(from.stderr, '--from /nonexistent/stevedore.tgz: no such file or directory');
  const help = install(['--help']);
  t.equal(help.status, 0);
  t.match(help.stdout, /--role agent\|coordinator/);
  t.end();
});

void t.test('the script is POSIX sh: dash parses it and shellcheck finds nothing', (t) => {
  const parse = spawnSync('sh', ['-n', SCRIPT], { encoding: 'utf8' });
  t.equal(parse.status, 0, parse.stderr);
  const check = spawnSync('shellcheck', ['--shell=sh', '--severity=style', SCRIPT], { encoding: 'utf8' });
  t.equal(check.error, undefined, 'shellcheck is installed (scripts/test-env.ts installs it)');
  t.equal(check.stdout, '', 'no findings');
  t.equal(check.status, 0);

  // The same check finds a bashism: it can fail.
  const broken = path.join(t.testdir(), 'broken.sh');
  writeFileSync(broken, readFileSync(SCRIPT, 'utf8'));
  appendFileSync(broken, 'if [[ -n "$ROLE" ]]; then local x=1; fi\n');
  const found = spawnSync('shellcheck', ['--shell=sh', '--severity=style', broken], { encoding: 'utf8' });
  t.not(found.status, 0);
  t.match(found.stdout, /SC3010/, '[[ ]] is not POSIX');
  t.end();
});
