// scripts/install.sh run as an operator would, into a temporary root
// (--root) so that the host is left alone; npm is a stand-in that records its
// calls and lays out the few modules the configuration check needs.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, appendFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { loadAgentConfig } from '../../src/agent/agent-config.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const SCRIPT = path.join(REPO, 'scripts/install.sh');

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A stand-in npm: logs "ARGS | CWD" per call; `ci` creates node_modules with Node.js (this one) and yaml and zod. */
function fakeNpm(dir: string): { npm: string; log: string } {
  const log = path.join(dir, 'npm.log');
  const npm = path.join(dir, 'npm');
  const link = (name: string): string => `ln -s '${path.join(REPO, 'node_modules', name)}' node_modules/${name}`;
  writeFileSync(
    npm,
    [
      '#!/bin/sh',
      `echo "$* | $(pwd)" >> '${log}'`,
      'if [ "$1" = ci ]; then',
      '  mkdir -p node_modules/.bin',
      `  ${link('yaml')}`,
      `  ${link('zod')}`,
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

void t.test('installs an agent into an empty root, and a second run keeps the edited configuration', (t) => {
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
  t.match(first.stdout, /systemd left alone/, '--root: no systemctl');
  t.match(first.stdout, /agent\.yaml is valid/);

  // The template passes the agent's own validation, unchanged.
  const config = loadAgentConfig({ file: at('etc/stevedore/agent.yaml'), fileIsExplicit: true, env: {}, cwd: '/' });
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
  t.end();
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

void t.test('a coordinator gets its unit and an environment file, no agent configuration', (t) => {
  const dir = t.testdir();
  const root = makeRoot(dir);
  const { npm } = fakeNpm(dir);
  const r = install(['--role', 'coordinator', '--root', root], { NPM: npm });
  t.equal(r.status, 0, r.stderr);
  t.ok(existsSync(path.join(root, 'etc/systemd/system/stevedore-coordinator.service')));
  t.notOk(existsSync(path.join(root, 'etc/systemd/system/stevedore-agent.service')));
  t.equal(mode(path.join(root, 'etc/stevedore/coordinator.env')), '0600');
  t.notOk(existsSync(path.join(root, 'etc/stevedore/agent.yaml')));
  t.notOk(existsSync(path.join(root, 'etc/sysctl.d')), 'inotify limits are for agents');
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
