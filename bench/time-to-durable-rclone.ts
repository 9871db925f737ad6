// rclone as users run it against an S3 endpoint: the remote comes from the
// environment (RCLONE_CONFIG_<NAME>_*), everything else is rclone's defaults.
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface S3Credentials {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** The remote's name in rclone paths: `bench:bucket/prefix`. */
export const RCLONE_REMOTE = 'bench';

/** rclone's version ("v1.60.1-DEV"), or undefined when rclone is not installed. */
export function rcloneVersion(): string | undefined {
  try {
    const out = execFileSync('rclone', ['version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return /rclone (v\S+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

/** The environment that defines the remote; rclone refuses to start with AWS_CA_BUNDLE set, so it is left out. */
export function rcloneEnv(s3: S3Credentials): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.AWS_CA_BUNDLE;
  const p = `RCLONE_CONFIG_${RCLONE_REMOTE.toUpperCase()}_`;
  return {
    ...env,
    RCLONE_CONFIG: '/dev/null',
    [`${p}TYPE`]: 's3',
    [`${p}PROVIDER`]: 'Other',
    [`${p}ENDPOINT`]: s3.endpoint,
    [`${p}ACCESS_KEY_ID`]: s3.accessKeyId,
    [`${p}SECRET_ACCESS_KEY`]: s3.secretAccessKey,
    [`${p}REGION`]: 'us-east-1',
    [`${p}FORCE_PATH_STYLE`]: 'true',
  };
}

export interface ToolRun {
  startMs: number;
  endMs: number;
  /** CPU seconds the process used (user + system), from its rusage. */
  cpuSeconds: number;
}

/**
 * Runs `rclone ARGS` to the end. onStart gets the pid (for sampling); a
 * non-zero exit is an error that quotes rclone's last lines.
 */
export async function runRclone(args: string[], s3: S3Credentials, onStart?: (pid: number) => void, timeoutMs = 300_000): Promise<ToolRun> {
  const startMs = Date.now();
  const child = spawn('bash', ['-c', 'rclone "$@"; status=$?; times >&3; exit $status', 'rclone', ...args], {
    env: rcloneEnv(s3),
    stdio: ['ignore', 'ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let times = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  (child.stdio[3] as NodeJS.ReadableStream | null)?.on('data', (d: Buffer) => {
    times += d.toString();
  });
  if (onStart && child.pid !== undefined) {
    // The pid of rclone itself: bash's only child.
    const bashPid = child.pid;
    const find = (tries: number): void => {
      try {
        const kids = readFileSync(`/proc/${bashPid}/task/${bashPid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
        if (kids[0]) {
          onStart(Number(kids[0]));
          return;
        }
      } catch {
        // not there yet, or done
      }
      if (tries > 0) setTimeout(() => find(tries - 1), 5);
    };
    find(200);
  }
  // A hung transfer ends the benchmark with an error instead of holding it forever.
  const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(killer);
  const endMs = Date.now();
  if (code !== 0) throw new Error(`rclone ${args.join(' ')} exited with ${code}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
  return { startMs, endMs, cpuSeconds: childTimes(times) };
}

/** The children's user and system time from bash's `times` (its second line: "0m1.234s 0m0.567s"). */
export function childTimes(text: string): number {
  const line = text.trim().split('\n')[1] ?? '';
  let total = 0;
  for (const m of line.matchAll(/(\d+)m([\d.]+)s/g)) total += Number(m[1]) * 60 + Number(m[2]);
  return total;
}
