// Where a job's files live on the host, and the check that keeps its mounts
// inside its own directory under the work root.
import { mkdirSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { hostPathAllowance, isPathWithin, type HostMountSpec, type SecurityPolicy } from '../spec/job-spec.ts';
import { StevedoreError } from '../util/errors.ts';

// Ids come from the coordinator; they become path and container-name parts.
const JOB_ID_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;

export function checkJobId(jobId: string): void {
  if (!JOB_ID_RE.test(jobId) || jobId.includes('..')) {
    throw new StevedoreError('SPEC_INVALID', `job id ${JSON.stringify(jobId.slice(0, 80))} is not valid: 1-128 characters of a-z, 0-9, ".", "_" or "-"`);
  }
}

export function attemptKey(jobId: string, attempt: number): string {
  return `${jobId}.${attempt}`;
}

export interface ResolvedMount {
  hostPath: string;
  containerPath: string;
  readOnly: boolean;
}

export class JobPaths {
  readonly workRoot: string;
  readonly stateDir: string;

  constructor(workRoot: string, stateDir: string) {
    this.workRoot = path.resolve(workRoot);
    this.stateDir = path.resolve(stateDir);
  }

  jobDir(jobId: string): string {
    checkJobId(jobId);
    return path.join(this.workRoot, jobId);
  }

  logFile(jobId: string, attempt: number): string {
    checkJobId(jobId);
    return path.join(this.stateDir, 'logs', `${attemptKey(jobId, attempt)}.log`);
  }

  /**
   * Creates the job's directory and each mount source inside it, and returns
   * the host paths. Refuses any source that is absolute, contains "..", or
   * resolves (through symlinks) outside the job's directory.
   */
  prepareMounts(jobId: string, mounts: readonly { source: string; target: string; readOnly: boolean }[]): ResolvedMount[] {
    const jobDir = this.jobDir(jobId);
    mkdirSync(jobDir, { recursive: true, mode: 0o755 });
    const realJobDir = realpathSync(jobDir);
    return mounts.map((m) => {
      if (path.isAbsolute(m.source) || m.source.split(/[\\/]/).includes('..')) {
        throw new StevedoreError('MOUNT_OUTSIDE_JOB_DIR', `mount source "${m.source}" must be a relative path inside the job's directory ${jobDir}, without ".."`);
      }
      const hostPath = path.resolve(jobDir, m.source);
      if (!isInside(hostPath, jobDir)) {
        throw new StevedoreError('MOUNT_OUTSIDE_JOB_DIR', `mount source "${m.source}" resolves to ${hostPath}, outside the job's directory ${jobDir}`);
      }
      mkdirSync(hostPath, { recursive: true, mode: 0o755 });
      const real = realpathSync(hostPath);
      if (!isInside(real, realJobDir)) {
        throw new StevedoreError('MOUNT_OUTSIDE_JOB_DIR', `mount source "${m.source}" leads through a symbolic link to ${real}, outside the job's directory ${jobDir}`);
      }
      return { hostPath: real, containerPath: m.target, readOnly: m.readOnly };
    });
  }
}

/**
 * The host directories of a spec's hostMounts, where they really lead: each
 * must exist (it is never created: it is not the agent's), and its real path,
 * after every symbolic link, must still be inside an allowedHostPaths entry
 * (itself resolved) that permits this kind of mount. SPEC_FORBIDDEN when a link
 * leads elsewhere, HOST_PATH_UNAVAILABLE when the path is missing.
 */
export function prepareHostMounts(mounts: readonly HostMountSpec[], policy: Pick<SecurityPolicy, 'allowedHostPaths'>): ResolvedMount[] {
  const allowed = policy.allowedHostPaths.map((a) => ({ path: realOrSelf(a.path), readOnly: a.readOnly }));
  return mounts.map((m, i) => {
    let real: string;
    try {
      real = realpathSync(m.hostPath);
    } catch (err) {
      throw new StevedoreError('HOST_PATH_UNAVAILABLE', `hostMounts[${i}].hostPath ${m.hostPath} cannot be used on this node (${(err as NodeJS.ErrnoException).code ?? String(err)}): create it on the host first, or fix the path in the job spec`, { cause: err });
    }
    const allowance = hostPathAllowance(real, m.readOnly, { allowedHostPaths: allowed });
    if (!allowance || (allowance.readOnly && !m.readOnly)) {
      throw new StevedoreError('SPEC_FORBIDDEN', `hostMounts[${i}].hostPath ${m.hostPath} leads through a symbolic link to ${real}, which security.allowedHostPaths does not allow${allowance ? ' for writing' : ''}; mount the real directory if it is allowed, or ask the node's administrator`);
    }
    return { hostPath: real, containerPath: m.target, readOnly: m.readOnly };
  });
}

/** A device passed into a container, at the same path. */
export interface ResolvedDevice {
  hostPath: string;
  containerPath: string;
}

/**
 * A spec's devices, where they really lead: each must be a character or block
 * device whose real path is still inside an allowedDevices entry.
 */
export function resolveDevices(devices: readonly string[], policy: Pick<SecurityPolicy, 'allowedDevices'>): ResolvedDevice[] {
  const allowed = policy.allowedDevices.map(realOrSelf);
  return devices.map((device) => {
    let real: string;
    let isDevice: boolean;
    try {
      real = realpathSync(device);
      const st = statSync(real);
      isDevice = st.isCharacterDevice() || st.isBlockDevice();
    } catch (err) {
      throw new StevedoreError('HOST_PATH_UNAVAILABLE', `devices: ${device} cannot be used on this node (${(err as NodeJS.ErrnoException).code ?? String(err)}): check that its driver is loaded, or drop it from the job spec`, { cause: err });
    }
    if (!isDevice) throw new StevedoreError('SPEC_FORBIDDEN', `devices: ${device} is not a device; name a character or block device under /dev, or use hostMounts for a directory`);
    if (!allowed.some((prefix) => isPathWithin(real, prefix))) {
      throw new StevedoreError('SPEC_FORBIDDEN', `devices: ${device} leads through a symbolic link to ${real}, which security.allowedDevices does not allow; name the real device if it is allowed, or ask the node's administrator`);
    }
    return { hostPath: real, containerPath: device };
  });
}

/** The real path of an allowed prefix; itself when it does not exist (nothing below it can exist either). */
function realOrSelf(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (rel.split(path.sep)[0] !== '..' && !path.isAbsolute(rel));
}
