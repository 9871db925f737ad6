// Where a job's files live on the host, and the check that keeps its mounts
// inside its own directory under the work root.
import { mkdirSync, realpathSync } from 'node:fs';
import path from 'node:path';
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

function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (rel.split(path.sep)[0] !== '..' && !path.isAbsolute(rel));
}
