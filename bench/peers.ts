// The peer tools (rclone, s3cmd, awscli from Debian's packages) and the one way
// every subject of a benchmark is measured: as a child process under GNU time
// (/usr/bin/time, Debian's `time` package), which reports the child's user and
// system CPU seconds and peak RSS from wait4(2). Wall time is taken here
// around the child, with the same overhead for every subject.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const TIME_BIN = '/usr/bin/time';

export type PeerName = 'rclone' | 's3cmd' | 'awscli';

export interface Peer {
  name: PeerName;
  /** Absolute path of the executable (Debian's, never a shim earlier on PATH). */
  bin: string;
  version: string;
}

/** Where Debian installs each peer; `aws` on PATH may be another installation. */
export const PEER_BINS: Record<PeerName, string> = { rclone: '/usr/bin/rclone', s3cmd: '/usr/bin/s3cmd', awscli: '/usr/bin/aws' };

export interface Measurement {
  wallS: number;
  userS: number;
  sysS: number;
  /** user + sys of the child and everything it waited for. */
  cpuS: number;
  maxRssMiB: number;
  stdout: string;
  stderr: string;
}

export interface Command {
  cmd: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** A child's environment: this process's, without any AWS_* or RCLONE_* setting (rclone refuses to start with AWS_CA_BUNDLE), plus `extra`. */
export function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('AWS_') && !k.startsWith('RCLONE_') && !k.startsWith('S3CMD')) env[k] = v;
  return { ...env, ...extra };
}

function versionOf(bin: string, args: string[], pattern: RegExp): string | undefined {
  try {
    const out = execFileSync(bin, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv({}), timeout: 20_000 });
    return pattern.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/** The peers installed here, with their versions. Missing ones are listed in `missing` with how to install them. */
export function findPeers(): { peers: Peer[]; missing: string[] } {
  const peers: Peer[] = [];
  const missing: string[] = [];
  const probes: [PeerName, string[], RegExp, string][] = [
    ['rclone', ['version'], /rclone v?(\S+)/, 'rclone'],
    ['s3cmd', ['--version'], /s3cmd version (\S+)/, 's3cmd'],
    ['awscli', ['--version'], /aws-cli\/(\S+)/, 'awscli'],
  ];
  for (const [name, args, pattern, pkg] of probes) {
    const bin = PEER_BINS[name];
    const version = fs.existsSync(bin) ? versionOf(bin, args, pattern) : undefined;
    if (version === undefined) missing.push(`${name} (${bin}): install it with \`apt-get install -y --no-install-recommends ${pkg}\``);
    else peers.push({ name, bin, version });
  }
  return { peers, missing };
}

/**
 * Runs a command under /usr/bin/time and measures it. Throws (with the end of
 * its stderr) when the child fails: a failed transfer has no figure.
 */
export async function measure(command: Command, opts: { timeoutMs?: number; label?: string } = {}): Promise<Measurement> {
  if (!fs.existsSync(TIME_BIN)) throw new Error(`${TIME_BIN} is missing: install Debian's time package (apt-get install -y time)`);
  const timeFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-bench-time-')), 'time');
  const args = ['-f', '%e %U %S %M', '-o', timeFile, command.cmd, ...command.args];
  const started = process.hrtime.bigint();
  const child = spawn(TIME_BIN, args, { env: command.env, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (b: Buffer) => out.push(b));
  child.stderr.on('data', (b: Buffer) => err.push(b));
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 600_000);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (c) => resolve(c));
  }).finally(() => clearTimeout(timer));
  const wallS = Number(process.hrtime.bigint() - started) / 1e9;
  const stdout = Buffer.concat(out).toString('utf8');
  const stderr = Buffer.concat(err).toString('utf8');
  const timeText = fs.existsSync(timeFile) ? fs.readFileSync(timeFile, 'utf8') : '';
  fs.rmSync(path.dirname(timeFile), { recursive: true, force: true });
  const label = opts.label ?? path.basename(command.cmd);
  if (code !== 0) throw new Error(`${label} failed (exit ${code ?? 'killed'}): ${`${stderr}\n${stdout}`.trim().split('\n').slice(-8).join('\n')}`);
  // time(1) writes "Command exited with non-zero status" lines before the figures; the figures are the last line.
  const last = timeText.trim().split('\n').at(-1) ?? '';
  const [, user, sys, rssKiB] = last.split(' ').map(Number);
  if (user === undefined || sys === undefined || rssKiB === undefined || [user, sys, rssKiB].some((n) => !Number.isFinite(n))) {
    throw new Error(`${label}: cannot read the measurement of ${TIME_BIN} (${JSON.stringify(timeText)})`);
  }
  return { wallS, userS: user, sysS: sys, cpuS: user + sys, maxRssMiB: rssKiB / 1024, stdout, stderr };
}

/** An S3 location as every subject is told about it. */
export interface S3Location {
  endpoint: string;
  bucket: string;
  /** Key prefix without a trailing slash. */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
}

/** Writes the peers' configuration files into `dir` (once per run): an empty rclone config, s3cmd's, awscli's. */
function peerConfig(peer: Peer, loc: S3Location, dir: string): Record<string, string> {
  fs.mkdirSync(dir, { recursive: true });
  const host = new URL(loc.endpoint).host;
  if (peer.name === 'rclone') {
    const conf = path.join(dir, 'rclone.conf');
    fs.writeFileSync(conf, '');
    return {
      RCLONE_CONFIG: conf,
      RCLONE_CONFIG_BENCH_TYPE: 's3',
      RCLONE_CONFIG_BENCH_PROVIDER: 'Other',
      RCLONE_CONFIG_BENCH_ENDPOINT: loc.endpoint,
      RCLONE_CONFIG_BENCH_ACCESS_KEY_ID: loc.accessKeyId,
      RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY: loc.secretAccessKey,
      RCLONE_CONFIG_BENCH_REGION: loc.region,
      RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE: 'true',
    };
  }
  if (peer.name === 's3cmd') {
    const conf = path.join(dir, 's3cmd.cfg');
    fs.writeFileSync(
      conf,
      ['[default]', `access_key = ${loc.accessKeyId}`, `secret_key = ${loc.secretAccessKey}`, `host_base = ${host}`, `host_bucket = ${host}`, 'use_https = False', `bucket_location = ${loc.region}`, 'signature_v2 = False', 'progress_meter = False', ''].join('\n'),
    );
    return { S3CMD_CONFIG: conf };
  }
  const conf = path.join(dir, 'aws-config');
  fs.writeFileSync(conf, ['[default]', `region = ${loc.region}`, 's3 =', '  addressing_style = path', ''].join('\n'));
  return {
    AWS_CONFIG_FILE: conf,
    AWS_SHARED_CREDENTIALS_FILE: path.join(dir, 'aws-credentials-none'),
    AWS_ACCESS_KEY_ID: loc.accessKeyId,
    AWS_SECRET_ACCESS_KEY: loc.secretAccessKey,
    AWS_DEFAULT_REGION: loc.region,
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PAGER: '',
  };
}

/** The command that uploads the contents of `localDir` to s3://bucket/prefix/ with the peer's defaults. */
export function uploadCommand(peer: Peer, localDir: string, loc: S3Location, configDir: string): Command {
  const env = cleanEnv(peerConfig(peer, loc, configDir));
  const dest = `${loc.bucket}/${loc.prefix}/`;
  if (peer.name === 'rclone') return { cmd: peer.bin, args: ['copy', '--s3-no-check-bucket', '-q', localDir, `bench:${dest}`], env };
  if (peer.name === 's3cmd') return { cmd: peer.bin, args: ['-c', env.S3CMD_CONFIG ?? '', '--no-progress', '-q', 'put', '--recursive', `${localDir.replace(/\/+$/, '')}/`, `s3://${dest}`], env };
  return { cmd: peer.bin, args: ['--endpoint-url', loc.endpoint, 's3', 'cp', '--recursive', '--only-show-errors', '--no-progress', localDir, `s3://${dest}`], env };
}

/** The command that downloads everything under s3://bucket/prefix/ into `localDir`. */
export function downloadCommand(peer: Peer, loc: S3Location, localDir: string, configDir: string): Command {
  const env = cleanEnv(peerConfig(peer, loc, configDir));
  const src = `${loc.bucket}/${loc.prefix}/`;
  if (peer.name === 'rclone') return { cmd: peer.bin, args: ['copy', '-q', `bench:${src}`, localDir], env };
  if (peer.name === 's3cmd') return { cmd: peer.bin, args: ['-c', env.S3CMD_CONFIG ?? '', '--no-progress', '-q', 'get', '--recursive', `s3://${src}`, `${localDir.replace(/\/+$/, '')}/`], env };
  return { cmd: peer.bin, args: ['--endpoint-url', loc.endpoint, 's3', 'cp', '--recursive', '--only-show-errors', '--no-progress', `s3://${src}`, localDir], env };
}
