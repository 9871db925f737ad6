// The real parts the tests and the demo run against: a private Docker daemon
// whose PATH holds the stand-in NVIDIA hook (so that GPU device requests work
// on a machine without a GPU), and the training stand-in image.
//
// One daemon per user lives under a fixed directory (see engineBaseDir). Every
// run that uses it holds a lease file there; the daemon is stopped when the last
// lease is released, so concurrent test runs share one daemon, and a daemon left
// over from an interrupted run is found through its pidfile and reused. The data
// root is kept between runs, so the trainer image is only rebuilt when its inputs
// change.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  accessSync, chmodSync, closeSync, constants, copyFileSync, existsSync, mkdirSync, openSync, readFileSync,
  readdirSync, readSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import Docker from 'dockerode';

const root = path.resolve(import.meta.dirname, '..');

/** Where the stand-in `nvidia-container-runtime-hook` lives; it is first on the daemon's PATH. */
export const HOOK_DIR = path.join(root, 'test', 'fixtures', 'engine');
/** The training stand-in's scripts and files, copied into the image. */
export const TRAINER_DIR = path.join(root, 'test', 'fixtures', 'trainer');
export const TRAINER_IMAGE = 'stevedore/trainer:test';
/** Image label holding the hash of everything the trainer image is built from. */
export const ROOTFS_HASH_LABEL = 'org.stevedore.test.rootfs-hash';
// Bump when the way the root filesystem is assembled changes.
const ROOTFS_RECIPE = '1';

export interface TestEngineOptions {
  /** Directory for the daemon's data, sockets and leases. Default: engineBaseDir(). */
  baseDir?: string;
  /** Progress messages (daemon start, image build). Default: stderr. */
  log?: (message: string) => void;
  /** How long the daemon may take to answer /_ping. Default 60 s. */
  readyTimeoutMs?: number;
  /**
   * Start the daemon with --live-restore, so that containers survive its restart. Default false:
   * containers stop with the daemon, as with a default Docker install.
   */
  liveRestore?: boolean;
}

export interface TestEngine {
  socketPath: string;
  /** `unix://<socketPath>`, for DOCKER_HOST. */
  dockerHost: string;
  /** The file the stand-in hook appends one JSON line to per GPU container. */
  gpuRecordPath: string;
  /** Releases this run's lease; the last one out stops the daemon. Safe to call twice. */
  stop(): Promise<void>;
  /**
   * Stops the daemon (SIGTERM) and starts it again on the same socket and data root, as an
   * operator's `systemctl restart docker` does. For a daemon of a private baseDir only: other
   * runs share the default one.
   */
  restart(): Promise<void>;
}

/** The per-user directory of the test daemon. Kept short: unix socket paths are limited to 107 bytes. */
export function engineBaseDir(): string {
  const uid = process.getuid?.() ?? 0;
  const preferred = path.join(os.tmpdir(), `stevedore-test-engine-${uid}`);
  return preferred.length <= 60 ? preferred : `/tmp/stevedore-test-engine-${uid}`;
}

const defaultLog = (message: string): void => {
  process.stderr.write(`[test-engine] ${message}\n`);
};

/**
 * The Debian packages the tests need: the engine, busybox for test images, the checkers of the install
 * script and the systemd units, and the benchmarks' peers with GNU time (rclone, s3cmd, awscli, time).
 */
const HOST_PACKAGES = ['docker.io', 'busybox-static', 'shellcheck', 'systemd', 'rclone', 's3cmd', 'awscli', 'time'];

/** Installs HOST_PACKAGES when dockerd, /bin/busybox, shellcheck or systemd-analyze is missing (Debian, as root). */
export function ensureHostPackages(log: (message: string) => void = defaultLog): void {
  const missing = missingHostTools();
  if (missing.length === 0) return;
  const what = `${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing`;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `${what}: install them with \`sudo apt-get install -y --no-install-recommends ${HOST_PACKAGES.join(' ')}\` and run again`,
    );
  }
  if (findOnPath('apt-get') === undefined) {
    throw new Error(`${what} and apt-get is not available: install Docker Engine (dockerd), a static busybox at /bin/busybox, shellcheck and systemd-analyze by hand`);
  }
  log(`${what}: installing ${HOST_PACKAGES.join(', ')} with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update'], ['install', '-y', '--no-install-recommends', ...HOST_PACKAGES]]) {
    const result = spawnSync('apt-get', args, { stdio: ['ignore', 2, 2], env });
    if (result.status !== 0) {
      throw new Error(
        `\`apt-get ${args.join(' ')}\` failed (exit ${result.status ?? result.signal}): the tests need ${HOST_PACKAGES.join(', ')}; install them by hand and run again`,
      );
    }
  }
  const still = missingHostTools();
  if (still.length > 0) throw new Error(`${still.join(' and ')} still missing after installing ${HOST_PACKAGES.join(', ')}`);
}

function missingHostTools(): string[] {
  const missing: string[] = [];
  if (findOnPath('dockerd') === undefined) missing.push('dockerd');
  if (!existsSync('/bin/busybox')) missing.push('/bin/busybox');
  if (findOnPath('shellcheck') === undefined) missing.push('shellcheck');
  if (findOnPath('systemd-analyze') === undefined) missing.push('systemd-analyze');
  // Debian's own binaries by path: `aws` on PATH may be another installation (bench/peers.ts).
  for (const file of ['/usr/bin/rclone', '/usr/bin/s3cmd', '/usr/bin/aws', '/usr/bin/time']) if (!existsSync(file)) missing.push(file);
  return missing;
}

function findOnPath(program: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = path.join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

interface Layout {
  base: string;
  socketPath: string;
  pidFile: string;
  dataRoot: string;
  execRoot: string;
  logFile: string;
  configFile: string;
  leaseDir: string;
  lockDir: string;
  gpuRecordPath: string;
}

function layout(base: string): Layout {
  return {
    base,
    socketPath: path.join(base, 'docker.sock'),
    pidFile: path.join(base, 'docker.pid'),
    dataRoot: path.join(base, 'data'),
    execRoot: path.join(base, 'x'),
    logFile: path.join(base, 'dockerd.log'),
    configFile: path.join(base, 'engine.json'),
    leaseDir: path.join(base, 'leases'),
    lockDir: path.join(base, 'lock'),
    gpuRecordPath: path.join(base, 'gpu-record.jsonl'),
  };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A lock between processes: a directory created atomically, holding its owner's pid; broken when the owner is dead. */
async function withLock<T>(lockDir: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(path.join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create the lock ${lockDir}`, { cause: err });
      const owner = readPid(path.join(lockDir, 'pid'));
      let age: number;
      try {
        age = Date.now() - statSync(lockDir).mtimeMs;
      } catch {
        continue;
      }
      // An owner that died, or a lock without a pid file that is older than a few seconds, is stale.
      if ((owner !== undefined && !isAlive(owner)) || (owner === undefined && age > 5000)) {
        rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`the test engine lock ${lockDir} is held by process ${owner ?? '?'}: wait for it or remove the directory`, { cause: err });
      await sleep(100);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lockDir, { recursive: true, force: true });
  }
}

function liveLeases(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const live: string[] = [];
  for (const name of names) {
    const pid = Number.parseInt(name.split('-')[0] ?? '', 10);
    if (Number.isInteger(pid) && isAlive(pid)) live.push(name);
    else rmSync(path.join(dir, name), { force: true });
  }
  return live;
}

/** GET /_ping on a unix socket: true when the daemon answers OK. */
export function pingSocket(socketPath: string, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function daemonPid(l: Layout): number | undefined {
  const pid = readPid(l.pidFile);
  if (pid === undefined || !isAlive(pid)) return undefined;
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('dockerd') && cmdline.includes(l.socketPath) ? pid : undefined;
  } catch {
    return undefined;
  }
}

async function stopDaemon(l: Layout, log: (m: string) => void): Promise<void> {
  const pid = daemonPid(l);
  if (pid === undefined) return;
  log(`stopping dockerd (pid ${pid})`);
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 20_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) {
    log(`dockerd (pid ${pid}) did not stop within 20 s: killing it`);
    process.kill(pid, 'SIGKILL');
    while (isAlive(pid)) await sleep(50);
  }
}

function logTail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no daemon log)';
  }
}

async function startDaemon(l: Layout, readyTimeoutMs: number, log: (m: string) => void, liveRestore = false): Promise<void> {
  const dockerd = findOnPath('dockerd');
  if (dockerd === undefined) throw new Error('dockerd is not installed: install docker.io');
  for (const dir of [l.dataRoot, l.execRoot]) mkdirSync(dir, { recursive: true });
  rmSync(l.socketPath, { force: true });
  const logFd = openSync(l.logFile, 'w');
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // The stand-in hook first; then this Node.js, which the hook's `#!/usr/bin/env node` needs.
    PATH: [HOOK_DIR, path.dirname(process.execPath), process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':'),
    STEVEDORE_TEST_GPU_RECORD: l.gpuRecordPath,
  };
  delete env.DOCKER_HOST;
  const args = [
    '--data-root', l.dataRoot,
    '--exec-root', l.execRoot,
    '--pidfile', l.pidFile,
    '-H', `unix://${l.socketPath}`,
    '--bridge=none',
    '--iptables=false',
    '--ip6tables=false',
    '--containerd-namespace', 'stevedore-test',
    '--containerd-plugins-namespace', 'stevedore-test-plugins',
    '--shutdown-timeout', '5',
    ...(liveRestore ? ['--live-restore'] : []),
  ];
  log(`starting dockerd: ${dockerd} ${args.join(' ')}`);
  const child = spawn(dockerd, args, { env, detached: true, stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  let exited: string | undefined;
  child.on('exit', (code, signal) => {
    exited = `exited with ${code ?? signal}`;
  });
  child.unref();
  const started = Date.now();
  while (Date.now() - started < readyTimeoutMs) {
    if (exited !== undefined) break;
    if (await pingSocket(l.socketPath, 1000)) {
      writeFileSync(l.configFile, JSON.stringify({ hookDir: HOOK_DIR, gpuRecordPath: l.gpuRecordPath, liveRestore }) + '\n');
      log(`dockerd ready in ${Date.now() - started} ms`);
      return;
    }
    await sleep(100);
  }
  if (exited === undefined) {
    child.kill('SIGKILL');
  }
  throw new Error(
    `dockerd ${exited ?? `did not answer /_ping within ${readyTimeoutMs / 1000} s`}; last lines of ${l.logFile}:\n${logTail(l.logFile)}`,
  );
}

function reusable(l: Layout, liveRestore: boolean): boolean {
  try {
    const config = JSON.parse(readFileSync(l.configFile, 'utf8')) as { hookDir?: string; liveRestore?: boolean };
    return config.hookDir === HOOK_DIR && (config.liveRestore ?? false) === liveRestore;
  } catch {
    return false;
  }
}

/** Removes every container of the private daemon: leftovers of an interrupted run. */
async function removeAllContainers(socketPath: string): Promise<void> {
  const docker = new Docker({ socketPath });
  const containers = await docker.listContainers({ all: true });
  await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true })));
}

/**
 * Starts the private test daemon, or joins the one already running for this user,
 * and takes a lease on it.
 */
export async function startTestEngine(opts: TestEngineOptions = {}): Promise<TestEngine> {
  const log = opts.log ?? defaultLog;
  ensureHostPackages(log);
  const l = layout(opts.baseDir ?? engineBaseDir());
  mkdirSync(l.leaseDir, { recursive: true });
  const lease = path.join(l.leaseDir, `${process.pid}-${randomBytes(4).toString('hex')}`);

  await withLock(l.lockDir, async () => {
    const others = liveLeases(l.leaseDir);
    const pid = daemonPid(l);
    const healthy = pid !== undefined && (await pingSocket(l.socketPath));
    if (healthy && reusable(l, opts.liveRestore ?? false)) {
      log(`using the running dockerd (pid ${pid}) at ${l.socketPath}`);
    } else if (healthy && others.length > 0) {
      throw new Error(
        `the test dockerd at ${l.socketPath} was started from another checkout and is in use by ${others.length} run(s); wait for them or pass another baseDir`,
      );
    } else {
      if (pid !== undefined) log(`dockerd (pid ${pid}) from an earlier run is ${healthy ? 'from another checkout' : 'not answering'}: restarting it`);
      await stopDaemon(l, log);
      await startDaemon(l, opts.readyTimeoutMs ?? 60_000, log, opts.liveRestore ?? false);
    }
    if (others.length === 0) await removeAllContainers(l.socketPath);
    writeFileSync(lease, String(process.pid));
  });

  let stopped: Promise<void> | undefined;
  return {
    socketPath: l.socketPath,
    dockerHost: `unix://${l.socketPath}`,
    gpuRecordPath: l.gpuRecordPath,
    restart(): Promise<void> {
      return withLock(l.lockDir, async () => {
        await stopDaemon(l, log);
        await startDaemon(l, opts.readyTimeoutMs ?? 60_000, log, opts.liveRestore ?? false);
      });
    },
    stop(): Promise<void> {
      stopped ??= withLock(l.lockDir, async () => {
        rmSync(lease, { force: true });
        if (liveLeases(l.leaseDir).length === 0) await stopDaemon(l, log);
      });
      return stopped;
    },
  };
}

function sha256File(hash: ReturnType<typeof createHash>, file: string): void {
  const fd = openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    let n: number;
    while ((n = readSync(fd, buf, 0, buf.length, null)) > 0) hash.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
}

function busyboxApplets(): string[] {
  return execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' })
    .split('\n')
    .map((name) => name.trim())
    .filter((name) => name !== '' && name !== 'busybox' && !name.includes('/'));
}

/** The hash of everything the trainer image is built from. */
export function trainerInputsHash(): string {
  const hash = createHash('sha256');
  hash.update(`recipe ${ROOTFS_RECIPE}\n`);
  sha256File(hash, '/bin/busybox');
  hash.update(busyboxApplets().join(','));
  for (const name of readdirSync(TRAINER_DIR).sort()) {
    hash.update(`\n${name}\n`);
    sha256File(hash, path.join(TRAINER_DIR, name));
  }
  return hash.digest('hex');
}

function assembleRootfs(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  for (const sub of ['bin', 'etc', 'stevedore', 'tmp', 'checkpoints', 'root']) mkdirSync(path.join(dir, sub), { recursive: true });
  chmodSync(path.join(dir, 'tmp'), 0o1777);
  chmodSync(path.join(dir, 'checkpoints'), 0o1777);
  copyFileSync('/bin/busybox', path.join(dir, 'bin', 'busybox'));
  chmodSync(path.join(dir, 'bin', 'busybox'), 0o755);
  for (const applet of busyboxApplets()) symlinkSync('busybox', path.join(dir, 'bin', applet));
  for (const name of readdirSync(TRAINER_DIR)) {
    const source = path.join(TRAINER_DIR, name);
    if (name.endsWith('.sh')) {
      copyFileSync(source, path.join(dir, 'stevedore', name));
      chmodSync(path.join(dir, 'stevedore', name), 0o755);
    } else if (name === 'passwd' || name === 'group') {
      copyFileSync(source, path.join(dir, 'etc', name));
      chmodSync(path.join(dir, 'etc', name), 0o644);
    }
  }
}

async function consumeJsonStream(stream: NodeJS.ReadableStream): Promise<void> {
  let text = '';
  for await (const chunk of stream) text += String(chunk);
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const message = JSON.parse(line) as { error?: string };
    if (message.error !== undefined) throw new Error(message.error);
  }
}

/**
 * Builds the training stand-in image from a busybox root filesystem with
 * `docker import`, unless an image with the same inputs' hash is already tagged.
 * Returns the image reference.
 */
export async function buildTrainerImage(dockerHost: string, log: (message: string) => void = defaultLog): Promise<string> {
  if (!dockerHost.startsWith('unix://')) throw new Error(`buildTrainerImage needs a unix:// docker host, not ${dockerHost}`);
  const socketPath = dockerHost.slice('unix://'.length);
  const docker = new Docker({ socketPath });
  const inputs = trainerInputsHash();
  try {
    const info = await docker.getImage(TRAINER_IMAGE).inspect();
    if (info.Config.Labels?.[ROOTFS_HASH_LABEL] === inputs) return TRAINER_IMAGE;
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode !== 404) throw err;
  }
  const started = Date.now();
  const dir = path.join(os.tmpdir(), `stevedore-trainer-rootfs-${process.pid}`);
  try {
    assembleRootfs(dir);
    const tar = spawn('tar', ['-C', dir, '--numeric-owner', '--owner=0', '--group=0', '-c', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const tarDone = new Promise<void>((resolve, reject) => {
      tar.on('error', reject);
      tar.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`tar exited with ${code}`))));
    });
    const [repo, tag] = TRAINER_IMAGE.split(':') as [string, string];
    const stream = await docker.importImage(tar.stdout, {
      repo,
      tag,
      changes: ['CMD ["/stevedore/train.sh"]', `LABEL ${ROOTFS_HASH_LABEL}=${inputs}`],
    });
    await consumeJsonStream(stream);
    await tarDone;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  log(`built ${TRAINER_IMAGE} in ${Date.now() - started} ms`);
  return TRAINER_IMAGE;
}

/** The environment the tests read through test/helpers/engine.ts. */
export function testEngineEnv(engine: TestEngine, trainerImage: string): Record<string, string> {
  return {
    DOCKER_HOST: engine.dockerHost,
    STEVEDORE_TEST_DOCKER_SOCKET: engine.socketPath,
    STEVEDORE_TEST_GPU_RECORD: engine.gpuRecordPath,
    STEVEDORE_TEST_TRAINER_IMAGE: trainerImage,
  };
}
