// The systemd units as an operator meets them: systemd's own checker accepts
// them without a word, and they say what the agent needs (notify, a stop
// timeout that fits the drain, Docker as a soft dependency, a sandbox that
// leaves the state directory and the GPUs reachable), and the coordinator
// starts on mutual TLS from the files `stevedore certs` makes.
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { CONFIG_DEFAULTS, DEFAULT_CONFIG_FILE } from '../../src/agent/agent-config.ts';
import { ControlClient } from '../../src/client/control-client.ts';
import { CA_FILES, createCa, issueCertificate, leafFiles } from '../../src/security/certs.ts';
import { startCli } from '../client/run-cli.ts';
import { eventually } from '../coordinator/fake-agent.ts';

const REPO = path.resolve(import.meta.dirname, '../..');
const UNIT_SRC = path.join(REPO, 'systemd');
const SYSTEMD_ANALYZE = '/usr/bin/systemd-analyze';
const SYSTEM_UNITS = '/usr/lib/systemd/system';
/** The package's place on a host, as scripts/install.sh lays it out. */
const OPT = '/opt/stevedore';
const NODE = `${OPT}/node_modules/.bin/node`;
const ENTRY = `${OPT}/bin/stevedore.js`;
/** Node's flags for the agent (bench/footprint.ts measures the agent with the unit's). */
const AGENT_NODE_FLAGS = ['--max-semi-space-size=1', '--max-old-space-size=256', '--v8-pool-size=1'];

type Unit = Map<string, Map<string, string[]>>;

/** Sections, each key with its values in order (a key may repeat); comments and continuations as systemd reads them. */
function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (section === undefined || eq < 0) throw new Error(`not a unit file line: ${line}`);
    const key = line.slice(0, eq).trim();
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return unit;
}

function readUnit(name: string): Unit {
  return parseUnit(readFileSync(path.join(UNIT_SRC, name), 'utf8'));
}

/** The last value of a key (systemd's rule for single-valued settings). */
function value(unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1);
}

/** All words of a list-valued key (After=, Wants=, ...), across repeats. */
function words(unit: Unit, section: string, key: string): string[] {
  return (unit.get(section)?.get(key) ?? []).flatMap((v) => v.split(/\s+/)).filter((w) => w !== '');
}

/** systemd time spans as seconds: "90", "90s", "2min", "1min 30s". */
function seconds(span: string): number {
  const units: Record<string, number> = { '': 1, s: 1, sec: 1, m: 60, min: 60, h: 3600, hr: 3600 };
  let total = 0;
  for (const part of span.trim().split(/\s+/)) {
    const m = /^(\d+(?:\.\d+)?)([a-z]*)$/.exec(part);
    const factor = m ? units[m[2]!] : undefined;
    if (!m || factor === undefined) throw new Error(`not a time span: ${span}`);
    total += Number(m[1]) * factor;
  }
  return total;
}

/**
 * A file system root for `systemd-analyze --root`: systemd's own units (for
 * sysinit.target, network-online.target, ...), docker.service, the package's
 * entry points at their installed paths, and the given unit files.
 */
function makeRoot(dir: string, units: Record<string, string>): string {
  const unitDir = path.join(dir, 'etc/systemd/system');
  mkdirSync(unitDir, { recursive: true });
  mkdirSync(path.join(dir, 'usr/lib/systemd'), { recursive: true });
  cpSync(SYSTEM_UNITS, path.join(dir, SYSTEM_UNITS), { recursive: true });
  if (!existsSync(path.join(dir, SYSTEM_UNITS, 'docker.service'))) {
    writeFileSync(path.join(unitDir, 'docker.service'), '[Unit]\nDescription=Docker\n[Service]\nExecStart=/bin/true\n');
  }
  mkdirSync(path.join(dir, path.dirname(NODE)), { recursive: true });
  writeFileSync(path.join(dir, NODE), '#!/bin/sh\n');
  chmodSync(path.join(dir, NODE), 0o755);
  mkdirSync(path.join(dir, path.dirname(ENTRY)), { recursive: true });
  copyFileSync(path.join(REPO, 'bin/stevedore.js'), path.join(dir, ENTRY));
  for (const [name, text] of Object.entries(units)) writeFileSync(path.join(unitDir, name), text);
  return dir;
}

/** What `systemd-analyze verify` prints for units installed in `root` (it prints nothing for a clean unit). */
function verify(root: string, names: string[]): string {
  const r = spawnSync(SYSTEMD_ANALYZE, ['--root', root, '--man=no', 'verify', ...names.map((n) => `/etc/systemd/system/${n}`)], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_LOG_COLOR: '0', SYSTEMD_PAGER: 'cat' },
  });
  if (r.error) throw r.error;
  return `${r.stdout}${r.stderr}`.trim();
}

const unitText = (name: string): string => readFileSync(path.join(UNIT_SRC, name), 'utf8');
const UNITS = ['stevedore-agent.service', 'stevedore-coordinator.service'];

void t.test('systemd-analyze verify accepts both units without a warning', (t) => {
  const root = makeRoot(t.testdir(), Object.fromEntries(UNITS.map((n) => [n, unitText(n)])));
  t.equal(verify(root, UNITS), '', 'no output: no unknown setting, no bad value, ExecStart found');
  t.end();
});

void t.test('systemd-analyze verify reports what is wrong: the check can fail', (t) => {
  const agent = unitText('stevedore-agent.service');
  const misspelt = agent.replace(/^KillMode=/m, 'KilMode=');
  t.not(misspelt, agent);
  t.match(verify(makeRoot(t.testdir(), { 'stevedore-agent.service': misspelt }), ['stevedore-agent.service']), /Unknown key 'KilMode'/);

  const badValue = agent.replace(/^TimeoutStopSec=.*$/m, 'TimeoutStopSec=ninety');
  t.match(verify(makeRoot(t.testdir(), { 'stevedore-agent.service': badValue }), ['stevedore-agent.service']), /stevedore-agent\.service:\d+: Failed to parse time value.*ninety/);

  const root = makeRoot(t.testdir(), { 'stevedore-agent.service': agent });
  rmSync(path.join(root, NODE));
  t.match(verify(root, ['stevedore-agent.service']), /node is not executable|No such file/, 'a missing ExecStart binary is reported');
  t.end();
});

void t.test('the agent unit', (t) => {
  const unit = readUnit('stevedore-agent.service');

  t.equal(value(unit, 'Service', 'Type'), 'notify', 'READY=1 after registration with the engine');
  t.equal(value(unit, 'Service', 'NotifyAccess'), 'all', 'systemd-notify, a child process, may extend the stop timeout');

  const exec = value(unit, 'Service', 'ExecStart')?.split(/\s+/) ?? [];
  const entry = exec.indexOf(ENTRY);
  t.equal(exec[0], NODE, 'Node.js 24 from the package');
  t.equal(exec[entry + 1], 'agent', 'runs the CLI');
  t.same(exec.slice(1, entry), AGENT_NODE_FLAGS, 'V8 flags before the entry point: a small young generation, a cap on the old one, one V8 worker thread');
  t.ok(existsSync(path.join(REPO, 'bin/stevedore.js')));
  t.equal(exec[exec.indexOf('--config') + 1], DEFAULT_CONFIG_FILE, 'the configuration file the agent reads by default');

  // Docker: ordered after it, wanted, never a hard dependency.
  t.ok(words(unit, 'Unit', 'After').includes('docker.service'), 'After=docker.service: at shutdown the agent drains before Docker stops');
  t.ok(words(unit, 'Unit', 'After').includes('network-online.target'));
  t.ok(words(unit, 'Unit', 'Wants').includes('docker.service'));
  for (const hard of ['Requires', 'BindsTo', 'PartOf', 'Requisite']) {
    t.notOk(words(unit, 'Unit', hard).includes('docker.service'), `no ${hard}=docker.service: a Docker restart must not stop the agent`);
  }

  // Restarts, with a limit.
  t.equal(value(unit, 'Service', 'Restart'), 'on-failure');
  t.ok(seconds(value(unit, 'Service', 'RestartSec') ?? '0') >= 1, 'a pause between restarts');
  t.ok(Number(value(unit, 'Unit', 'StartLimitBurst')) > 1, 'a start limit');
  t.ok(seconds(value(unit, 'Unit', 'StartLimitIntervalSec') ?? '0') >= seconds(value(unit, 'Service', 'RestartSec') ?? '0') * Number(value(unit, 'Unit', 'StartLimitBurst')), 'the limit can be reached by a crash loop');

  // Stop: the drain window and the agent's own close fit, with a margin.
  const drain = CONFIG_DEFAULTS.preemption.sigtermWindowSeconds + CONFIG_DEFAULTS.shutdownTimeoutSeconds;
  t.ok(seconds(value(unit, 'Service', 'TimeoutStopSec') ?? '0') >= drain + 10, `TimeoutStopSec leaves 10 s beyond the ${drain} s the agent may take`);
  t.equal(value(unit, 'Service', 'KillSignal'), 'SIGTERM', 'SIGTERM starts the drain');
  t.ok(['process', 'mixed'].includes(value(unit, 'Service', 'KillMode') ?? 'control-group'), 'SIGTERM to the agent alone');

  // Root, and a sandbox that keeps what the agent needs.
  t.ok(['root', undefined].includes(value(unit, 'Service', 'User')));
  t.notOk(value(unit, 'Service', 'DynamicUser') === 'yes');
  t.not(value(unit, 'Service', 'PrivateDevices'), 'yes', '/dev/nvidia* stays reachable');
  t.notOk(['closed', 'strict'].includes(value(unit, 'Service', 'DevicePolicy') ?? 'auto'), 'no device allow-list that would hide the GPUs');
  t.not(value(unit, 'Service', 'ProtectKernelLogs'), 'yes', 'the GPU health check reads Xid errors from /dev/kmsg');
  t.not(value(unit, 'Service', 'PrivateNetwork'), 'yes');
  t.not(value(unit, 'Service', 'MemoryDenyWriteExecute'), 'yes', "V8's JIT");
  t.equal(`/var/lib/${value(unit, 'Service', 'StateDirectory')}`, CONFIG_DEFAULTS.stateDir, 'the default state directory (and the work root inside it) is writable');
  t.equal(`/run/${value(unit, 'Service', 'RuntimeDirectory')}`, path.dirname(CONFIG_DEFAULTS.socketPath), "the local API socket's directory is writable");
  t.equal(value(unit, 'Service', 'RuntimeDirectoryPreserve'), 'yes', 'the socket directory survives a restart');
  if (value(unit, 'Service', 'ProtectSystem') === 'strict') {
    t.pass('ProtectSystem=strict: StateDirectory and RuntimeDirectory above are the writable paths');
  }
  t.notOk(words(unit, 'Service', 'InaccessiblePaths').some((p) => /docker\.sock|^\/run$|^\/var\/run/.test(p)), 'the Docker socket stays reachable');
  t.not(value(unit, 'Service', 'ProtectKernelTunables'), undefined, 'hardening is there');
  t.equal(value(unit, 'Service', 'NoNewPrivileges'), 'yes');
  t.equal(value(unit, 'Install', 'WantedBy'), 'multi-user.target');
  t.end();
});

void t.test('the coordinator unit', (t) => {
  const unit = readUnit('stevedore-coordinator.service');
  const exec = value(unit, 'Service', 'ExecStart')?.split(/\s+/) ?? [];
  t.same(exec.slice(0, 3), [NODE, ENTRY, 'coordinator']);
  t.equal(exec[exec.indexOf('--listen') + 1], '0.0.0.0:7443');
  const db = exec[exec.indexOf('--db') + 1] ?? '';
  t.equal(path.dirname(db), `/var/lib/${value(unit, 'Service', 'StateDirectory')}`, 'the database lives in the state directory');
  t.equal(value(unit, 'Service', 'DynamicUser'), 'yes', 'a user of its own');
  t.equal(value(unit, 'Service', 'ProtectSystem'), 'strict');
  t.equal(value(unit, 'Service', 'PrivateDevices'), 'yes');
  t.equal(value(unit, 'Service', 'CapabilityBoundingSet'), '', 'no capabilities');
  t.equal(value(unit, 'Service', 'Restart'), 'on-failure');
  t.ok(words(unit, 'Unit', 'After').includes('network-online.target'));
  t.end();
});

/** The coordinator unit's credentials: id -> source path. */
function credentials(unit: Unit): Map<string, string> {
  return new Map((unit.get('Service')?.get('LoadCredential') ?? []).map((v) => {
    const colon = v.indexOf(':');
    return [v.slice(0, colon), v.slice(colon + 1)];
  }));
}

/** The value after `flag` in ExecStart. */
function flagValue(exec: string[], flag: string): string | undefined {
  const i = exec.indexOf(flag);
  return i < 0 ? undefined : exec[i + 1];
}

/** Where `stevedore certs ca --out /etc/stevedore/pki` and `certs coordinator --ca /etc/stevedore/pki --out /etc/stevedore/pki` (scripts/install.sh) write. */
const PKI = '/etc/stevedore/pki';

void t.test('the coordinator unit serves TLS by default, with the files stevedore certs makes handed in as credentials', (t) => {
  const unit = readUnit('stevedore-coordinator.service');
  const creds = credentials(unit);
  const coordinatorFiles = leafFiles(PKI, 'coordinator');
  t.same(Object.fromEntries(creds), {
    ca: path.join(PKI, CA_FILES.cert),
    cert: coordinatorFiles.cert,
    key: coordinatorFiles.key,
    'join-secret': path.join(PKI, CA_FILES.joinSecret),
  }, 'the CA certificate, the coordinator\'s certificate and key, the join secret; never the CA key');
  t.notOk([...creds.values()].includes(path.join(PKI, CA_FILES.key)), 'the CA key stays out of the service');

  const exec = value(unit, 'Service', 'ExecStart')?.split(/\s+/) ?? [];
  t.same(
    { ca: flagValue(exec, '--tls-ca'), cert: flagValue(exec, '--tls-cert'), key: flagValue(exec, '--tls-key'), joinSecret: flagValue(exec, '--join-secret') },
    { ca: '%d/ca', cert: '%d/cert', key: '%d/key', joinSecret: '%d/join-secret' },
    'each flag names its credential in the credentials directory (%d)',
  );
  t.notOk(exec.includes('--insecure'), 'no plaintext by default');
  t.equal(exec.at(-1), '$STEVEDORE_COORDINATOR_OPTS', "the environment file's flags come last and win");
  t.end();
});

void t.test("the coordinator starts with the unit's arguments and the install's files in a credentials directory, and an operator reaches it", async (t) => {
  const dir = t.testdir();
  // /etc/stevedore/pki as scripts/install.sh makes it, under a temporary root.
  const pki = path.join(dir, 'root', PKI);
  await createCa(pki);
  await issueCertificate({ caDir: pki, kind: 'coordinator', name: 'coord.example.com', hosts: ['coord.example.com', '127.0.0.1'], outDir: pki });
  const operator = await issueCertificate({ caDir: pki, kind: 'operator', name: 'alice', outDir: path.join(dir, 'alice') });
  // What systemd does at start: a copy of each credential in %d.
  const credDir = path.join(dir, 'credentials');
  mkdirSync(credDir);
  const unit = readUnit('stevedore-coordinator.service');
  for (const [id, source] of credentials(unit)) copyFileSync(path.join(dir, 'root', source), path.join(credDir, id));

  const exec = (value(unit, 'Service', 'ExecStart') ?? '').split(/\s+/);
  const args = exec.slice(exec.indexOf(ENTRY) + 1)
    .filter((a) => a !== '$STEVEDORE_COORDINATOR_OPTS')
    .map((a) => a.replace(/^%d\//, `${credDir}/`));
  // As coordinator.env would: a port and a database of the test's own.
  const cli = startCli([...args, '--listen', '127.0.0.1:0', '--db', path.join(dir, 'coordinator.db'), '--metrics-listen', 'off']);
  t.teardown(() => { if (cli.child.exitCode === null) cli.child.kill('SIGKILL'); });
  const address = (await eventually(() => /listening on (127\.0\.0\.1:\d+)/.exec(cli.stdout()) ?? undefined, 15_000))[1] ?? '';

  const client = new ControlClient({ address, tls: { ca: operator.ca, cert: operator.cert, key: operator.key } });
  t.same(await client.listNodes(), [], 'mutual TLS with an operator certificate from the same CA');
  client.close();
  const plain = new ControlClient({ address });
  await t.rejects(plain.listNodes(), 'plaintext is refused');
  plain.close();
  cli.child.kill('SIGTERM');
  t.equal((await cli.result).code, 0);
});

void t.test('systemd-analyze security rates the coordinator sandbox OK', (t) => {
  const root = makeRoot(t.testdir(), { 'stevedore-coordinator.service': unitText('stevedore-coordinator.service') });
  const r = spawnSync(SYSTEMD_ANALYZE, ['security', '--offline=yes', '--root', root, '--no-pager', '/etc/systemd/system/stevedore-coordinator.service'], {
    encoding: 'utf8',
    env: { ...process.env, SYSTEMD_LOG_COLOR: '0', SYSTEMD_COLORS: '0' },
  });
  const m = /Overall exposure level for stevedore-coordinator\.service: (\d+\.\d+)/.exec(r.stdout);
  if (!m) t.fail(`no exposure level in: ${r.stdout.slice(-500)}${r.stderr}`);
  t.ok(Number(m?.[1]) <= 2, `exposure ${m?.[1]} out of 10 (0 is best)`);
  t.end();
});
