// What the agent knows about each attempt it holds, on disk, so that a
// restart (or kill -9) picks up exactly where it left off. One small JSON
// file per attempt, replaced atomically on every change. An attempt leaves the
// ledger only once the coordinator has acknowledged its end.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { JobSpec } from '../spec/job-spec.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { StevedoreError } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import { ATTEMPT_STATES, type AttemptState } from './attempt-state.ts';
import { attemptKey } from './job-paths.ts';

export interface AttemptRecord {
  jobId: string;
  attempt: number;
  /** Null when the record was rebuilt from a container's labels alone. */
  spec: JobSpec | null;
  state: AttemptState;
  gpuUuids: string[];
  containerName: string;
  containerId: string;
  acceptedAtMs: number;
  startedAtMs: number;
  endedAtMs: number;
  exitCode: number | null;
  /** Set when a stop was asked for; the end is then CANCELLED. */
  stopRequested: boolean;
  /** Journal id of the `exited` event; the container goes once it is acknowledged. */
  exitEventId: number;
  message: string;
  stopSignal: string;
  stopGraceSeconds: number;
  /** Engine timestamp of the last container log line journaled ('' = none yet). */
  logCursor: string;
  /** The coordinator asked to resume from the newest committed checkpoint. */
  resume: boolean;
  /** Set when the node is going away: the attempt ends PREEMPTED after its final checkpoint. */
  preemption?: { noticeId: string; source: string; kind: string; deadlineMs: number; receivedMs: number; cutoffMs: number };
  /** The job's input in the node cache, once prepared. */
  inputPath?: string;
  /** What was restored before the start: undefined = not done yet, null = nothing to restore. */
  restored?: { containerPath: string; step: number | null; checkpointId: string } | null;
}

export class AttemptLedger {
  private readonly dir: string;
  private readonly records = new Map<string, AttemptRecord>();

  constructor(stateDir: string, logger: Logger) {
    this.dir = path.join(stateDir, 'attempts');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(this.dir)) {
      if (!name.endsWith('.json')) continue;
      const file = path.join(this.dir, name);
      try {
        const record = parseRecord(JSON.parse(readFileSync(file, 'utf8')));
        this.records.set(attemptKey(record.jobId, record.attempt), record);
      } catch (err) {
        // A record is written atomically, so this is damage from outside; keep
        // the file for inspection and go on with the others.
        logger.error({ file, err }, 'unreadable attempt record ignored; move it aside once its container is dealt with');
      }
    }
  }

  all(): AttemptRecord[] {
    return [...this.records.values()].sort((a, b) => a.acceptedAtMs - b.acceptedAtMs);
  }

  get(jobId: string, attempt: number): AttemptRecord | undefined {
    return this.records.get(attemptKey(jobId, attempt));
  }

  /** Persists the record (new or changed) before returning. */
  put(record: AttemptRecord): void {
    const key = attemptKey(record.jobId, record.attempt);
    try {
      writeFileAtomic(path.join(this.dir, `${key}.json`), `${JSON.stringify(record)}\n`, 0o600);
    } catch (err) {
      throw new StevedoreError('STATE_DIR_UNWRITABLE', `cannot record attempt ${key} in ${this.dir}: ${(err as Error).message}; free space or fix permissions`, { cause: err });
    }
    this.records.set(key, { ...record });
  }

  update(jobId: string, attempt: number, change: Partial<AttemptRecord>): AttemptRecord {
    const current = this.get(jobId, attempt);
    if (!current) throw new StevedoreError('ATTEMPT_UNKNOWN', `no attempt ${attemptKey(jobId, attempt)} on this node`);
    const next = { ...current, ...change };
    this.put(next);
    return next;
  }

  delete(jobId: string, attempt: number): void {
    const key = attemptKey(jobId, attempt);
    rmSync(path.join(this.dir, `${key}.json`), { force: true });
    this.records.delete(key);
  }
}

function parseRecord(value: unknown): AttemptRecord {
  const r = value as AttemptRecord;
  if (typeof r !== 'object' || r === null || typeof r.jobId !== 'string' || typeof r.attempt !== 'number' || !ATTEMPT_STATES.includes(r.state)) {
    throw new Error('not an attempt record');
  }
  return r;
}
