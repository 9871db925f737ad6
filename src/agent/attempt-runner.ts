// Drives one attempt from its current state to its end: image, container,
// logs, exit. It starts from whatever state the ledger holds, so the same code
// runs a new attempt and re-adopts one after an agent restart.
import type { ContainerEngine, ContainerSpec, ExitStatus, RegistryAuth } from '../engine/container-engine.ts';
import { checkSecurityPolicy, DEFAULT_SECURITY_POLICY, type JobSpec, type SecurityPolicy } from '../spec/job-spec.ts';
import type { Clock } from '../util/clock.ts';
import { asStevedoreError, isStevedoreError, messageOf, StevedoreError } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { AttemptLedger, AttemptRecord } from './attempt-ledger.ts';
import { isTerminal, transition, toWireState, type AttemptState } from './attempt-state.ts';
import { AttemptCheckpoints, type CheckpointServices } from './attempt-checkpoints.ts';
import type { InputCache } from '../data/input-cache.ts';
import { OutputMirror } from '../data/output-mirror.ts';
import type { ObjectStore } from '../storage/object-store.ts';
import type { OutputSpec } from '../spec/job-spec.ts';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { EventJournal } from './event-journal.ts';
import type { GpuAllocator } from './gpu-allocator.ts';
import { JobLog } from './job-log.ts';
import { attemptKey, prepareHostMounts, resolveDevices, type JobPaths } from './job-paths.ts';
import { formatBytes } from '../util/size.ts';
import type { Notice } from '../preemption/notice.ts';
import { AttemptProgress, PullProgressTotals, urlForDisplay } from './attempt-progress.ts';

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

export const LABELS = {
  managed: 'io.stevedore.managed',
  nodeId: 'io.stevedore.node-id',
  jobId: 'io.stevedore.job-id',
  attempt: 'io.stevedore.attempt',
  gpus: 'io.stevedore.gpus',
  stopSignal: 'io.stevedore.stop-signal',
  stopGrace: 'io.stevedore.stop-grace-seconds',
} as const;

export interface AttemptRunnerDeps {
  nodeId: string;
  engine: ContainerEngine;
  journal: EventJournal;
  ledger: AttemptLedger;
  allocator: GpuAllocator;
  paths: JobPaths;
  clock: Clock;
  logger: Logger;
  registryAuth: (image: string) => RegistryAuth | undefined;
  pullInactivityTimeoutMs: number;
  checkpoints: CheckpointServices;
  data: DataServices;
  /** What jobs may ask for beyond the container defaults; default DEFAULT_SECURITY_POLICY (closed). */
  security?: SecurityPolicy;
}

export interface DataServices {
  inputs: InputCache;
  outputFor: (spec: OutputSpec) => { store: ObjectStore; prefix: string };
  partSizeBytes: number;
}

/** How long, after the container exits, the agent keeps mirroring its output. */
const FINAL_OUTPUT_SYNC_MS = 120_000;

/** How long to wait for the last log lines after the container has exited. */
const LOG_DRAIN_MS = 5000;

/** How long an attempt waits for a container engine that went away to come back before it fails. */
const ENGINE_OUTAGE_MS = 10 * 60_000;

/** After a container ended by a signal the agent did not send, how long to watch whether the engine is shutting down. */
const ENGINE_SHUTDOWN_WATCH_MS = 2000;

export function containerName(nodeId: string, jobId: string, attempt: number): string {
  return `stevedore-${nodeId}-${jobId}-${attempt}`;
}

export class AttemptRunner {
  readonly jobId: string;
  readonly attempt: number;
  readonly key: string;
  private readonly deps: AttemptRunnerDeps;
  private readonly log: Logger;
  /** Aborted when the agent leaves: stop watching, leave the container alone. */
  private readonly detachController = new AbortController();
  /** Aborted by a stop request that comes before the container exists. */
  private readonly startController = new AbortController();
  private jobLog: JobLog | undefined;
  private running: Promise<void> | undefined;
  private checkpoints: AttemptCheckpoints | undefined;
  private output: OutputMirror | undefined;
  /** Progress events of the pull, the input download, the restore and the uploads. */
  private readonly progress: AttemptProgress;

  constructor(deps: AttemptRunnerDeps, jobId: string, attempt: number) {
    this.deps = deps;
    this.jobId = jobId;
    this.attempt = attempt;
    this.key = attemptKey(jobId, attempt);
    this.log = deps.logger.child({ jobId, attempt });
    this.progress = new AttemptProgress({ jobId, attempt, sink: deps.journal, clock: deps.clock, logger: this.log });
  }

  get record(): AttemptRecord {
    const record = this.deps.ledger.get(this.jobId, this.attempt);
    if (!record) throw new StevedoreError('ATTEMPT_UNKNOWN', `no attempt ${this.key} on this node`);
    return record;
  }

  /** Starts driving the attempt; resolves when it has ended or the agent detached. */
  run(): Promise<void> {
    this.running ??= this.drive().catch((err: unknown) => {
      this.log.error({ err }, 'attempt runner failed');
    });
    return this.running;
  }

  /** The agent is leaving: stop following the attempt; its container runs on. */
  async detach(): Promise<void> {
    this.detachController.abort(new StevedoreError('INTERNAL', 'agent shutting down'));
    await this.running;
    await this.checkpoints?.close();
    await this.output?.close({ final: false });
    this.progress.close();
    this.jobLog?.close();
  }

  /** Stops the attempt: the job's stop signal, its grace period, then kill. Idempotent. */
  async requestStop(reason: string): Promise<void> {
    const record = this.record;
    if (isTerminal(record.state)) return;
    if (!record.stopRequested) {
      this.deps.ledger.update(this.jobId, this.attempt, { stopRequested: true, message: reason });
      this.openLog().note(`stop requested: ${reason}`);
    }
    this.startController.abort(new StevedoreError('INTERNAL', `stopped: ${reason}`));
    if (record.containerId && (record.state === 'STARTING' || record.state === 'RUNNING')) {
      this.setState('STOPPING', reason);
    }
    if (this.record.state === 'STOPPING') await this.stopContainer();
  }

  /**
   * The node is going away at notice.deadlineMs: ask the job for its final
   * checkpoint (its checkpoint signal), give it until the cutoff (deadline
   * minus the safety margin) to write and commit it, then stop the container.
   * drive() makes the checkpoint durable and reports the end as PREEMPTED.
   */
  async preempt(notice: Notice, marginMs: number): Promise<void> {
    const record = this.record;
    if (isTerminal(record.state)) return;
    const now = this.deps.clock.now();
    const cutoffMs = notice.deadlineMs - marginMs;
    if (!record.preemption) {
      this.deps.ledger.update(this.jobId, this.attempt, {
        preemption: { noticeId: notice.id, source: notice.source, kind: notice.kind, deadlineMs: notice.deadlineMs, receivedMs: notice.receivedMs, cutoffMs },
        message: `preempted (${notice.source}: ${notice.kind})`,
      });
    }
    const jobLog = this.openLog();
    jobLog.note(`node going away (${notice.source}: ${notice.kind}) in ${seconds(notice.deadlineMs - now)}; final checkpoint due in ${seconds(cutoffMs - now)}`);
    this.startController.abort(new StevedoreError('INTERNAL', 'preempted before the start'));
    const containerId = this.record.containerId;
    if (!containerId || this.record.state !== 'RUNNING') return;
    const checkpoint = this.record.spec?.checkpoint;
    if (checkpoint && this.checkpoints) {
      if (await this.deps.engine.signal(containerId, checkpoint.signal)) jobLog.note(`asked the job for a final checkpoint (${checkpoint.signal})`);
      // The job either exits after its checkpoint or carries on; either way a
      // commit after the notice, or the cutoff, ends the wait.
      const exited = this.deps.engine.wait(containerId).then(() => true, () => true);
      await Promise.race([exited, this.checkpoints.waitForCommitSince(notice.receivedMs, cutoffMs)]);
    }
    if (!(await this.deps.engine.inspect(containerId))?.running || isTerminal(this.record.state)) return;
    if (this.record.state === 'RUNNING') this.setState('STOPPING', 'stopping for the preemption');
    const graceSeconds = Math.max(1, Math.min(this.record.stopGraceSeconds, Math.floor((notice.deadlineMs - this.deps.clock.now()) / 1000) - 1));
    await this.deps.engine.stop(containerId, this.record.stopSignal, graceSeconds).catch((err: unknown) => this.log.error({ err }, 'stopping the preempted container failed'));
  }

  private async drive(): Promise<void> {
    const signal = this.detachController.signal;
    try {
      let record = this.record;
      if (isTerminal(record.state)) return;
      if (record.state === 'ACCEPTED' || record.state === 'PULLING') {
        await this.ensureImage(record);
        record = this.record;
      }
      if ((record.stopRequested || record.preemption) && !record.containerId) {
        this.finish(record.preemption ? 'PREEMPTED' : 'CANCELLED', -1, null, false);
        return;
      }
      if (!record.containerId) {
        await this.prepareInput();
        await this.restoreCheckpoint();
      }
      // create() is idempotent by name, so a crash between create and the
      // ledger write finds the same container again.
      if (!this.record.containerId) await this.createContainer();
      const info = await this.deps.engine.inspect(this.record.containerId);
      if (!info) {
        this.finish('FAILED', -1, new StevedoreError('CONTAINER_VANISHED', `container ${record.containerName} was removed by someone else while the attempt ran`), false);
        return;
      }
      if (info.state === 'created') {
        if (this.record.stopRequested) {
          this.finish('CANCELLED', -1, null, false);
          return;
        }
        await this.startContainer();
      } else {
        if (this.record.state === 'STARTING') this.setState('RUNNING', 'container found running after a restart');
        this.log.info({ containerId: info.id, state: info.state }, 'adopted container');
      }
      if (this.record.state === 'STOPPING' || (this.record.stopRequested && this.record.state === 'RUNNING')) {
        if (this.record.state === 'RUNNING') this.setState('STOPPING', this.record.message);
        void this.stopContainer();
      }
      const containerId = this.record.containerId;
      const logs = this.followLogs(containerId, signal);
      await this.startCheckpointSync();
      this.startOutputMirror();
      const { exit, engineLost } = await this.waitForExit(containerId, signal);
      await Promise.race([logs, this.deps.clock.sleep(LOG_DRAIN_MS).catch(() => undefined)]);
      if (this.output) {
        const stats = await this.output.close({ final: true, deadlineMs: this.deps.clock.now() + FINAL_OUTPUT_SYNC_MS });
        this.output = undefined;
        this.openLog().note(`output mirrored: ${stats.filesUploaded} files uploaded${stats.errors > 0 ? `, ${stats.errors} upload errors (see the agent's log)` : ''}`);
      }
      const preemption = this.record.preemption;
      if (this.checkpoints) {
        this.openLog().note('container exited; making its last checkpoints durable');
        await this.checkpoints.finish(preemption?.cutoffMs);
      }
      if (preemption) {
        this.reportDrain(preemption);
        this.finish('PREEMPTED', exit.exitCode, null, exit.oomKilled);
        return;
      }
      const stopped = this.record.state === 'STOPPING';
      const end: AttemptState = stopped ? 'CANCELLED' : exit.exitCode === 0 ? 'SUCCEEDED' : 'FAILED';
      const reason = end === 'FAILED' && engineLost
        ? new StevedoreError('ENGINE_UNREACHABLE', `container ${this.record.containerName} stopped (exit code ${exit.exitCode}) when the container engine went away while it ran (restarted or crashed); its checkpoints committed so far are kept: run the job again to resume, and run the engine with live-restore so that containers survive its restarts`)
        : null;
      this.finish(end, exit.exitCode, reason, exit.oomKilled);
    } catch (err) {
      if (signal.aborted) return;
      const failure = asStevedoreError(err, 'INTERNAL', `attempt ${this.key}`);
      const interrupted = this.startController.signal.aborted;
      if (interrupted && this.record.preemption) this.finish('PREEMPTED', -1, null, false);
      else if (interrupted && this.record.stopRequested) this.finish('CANCELLED', -1, null, false);
      else this.finish('FAILED', -1, failure, false);
    }
  }

  /**
   * Waits for the container's exit. When the engine goes away meanwhile (restarted,
   * crashed), waits for it to come back and looks again: a container that survived
   * (live-restore) is followed on; one that stopped with the engine gives its exit,
   * with engineLost set so that the end names the cause. An engine that stays away
   * for ENGINE_OUTAGE_MS fails the attempt with ENGINE_UNREACHABLE.
   */
  private async waitForExit(containerId: string, signal: AbortSignal): Promise<{ exit: ExitStatus; engineLost: boolean }> {
    let engineLost = false;
    for (;;) {
      let exit: ExitStatus;
      try {
        exit = await this.deps.engine.wait(containerId, signal);
      } catch (err) {
        if (signal.aborted || !isStevedoreError(err) || err.code !== 'ENGINE_UNREACHABLE') throw err;
        engineLost = true;
        await this.awaitEngineReturn(containerId, signal, err);
        continue;
      }
      // Ended by a signal nobody here sent, with the engine gone right after: the engine stopped the container on its way out.
      if (exit.exitCode > 128 && this.record.state === 'RUNNING' && !engineLost) {
        if (await this.engineGoingAway(signal)) {
          engineLost = true;
          await this.awaitEngineReturn(containerId, signal, new StevedoreError('ENGINE_UNREACHABLE', 'the container engine stopped answering right after the container exited'));
          continue;
        }
      }
      return { exit, engineLost };
    }
  }

  /** Whether the engine stops answering within ENGINE_SHUTDOWN_WATCH_MS (it stops its containers first, then goes). */
  private async engineGoingAway(signal: AbortSignal): Promise<boolean> {
    const deadline = this.deps.clock.now() + ENGINE_SHUTDOWN_WATCH_MS;
    for (;;) {
      if (await this.deps.engine.ping().then(() => false, () => true)) return true;
      if (this.deps.clock.now() >= deadline) return false;
      await this.deps.clock.sleep(200, signal);
    }
  }

  /** The engine went away: note it, wait for it (ENGINE_OUTAGE_MS at most) and say what became of the container. */
  private async awaitEngineReturn(containerId: string, signal: AbortSignal, cause: StevedoreError): Promise<void> {
    const jobLog = this.openLog();
    this.log.warn({ err: cause, containerId }, 'the container engine went away while the attempt ran; waiting for it to come back');
    jobLog.note(`the container engine went away; waiting up to ${seconds(ENGINE_OUTAGE_MS)} for it to come back`);
    if (!(await this.engineBack(signal))) {
      throw new StevedoreError('ENGINE_UNREACHABLE', `the container engine has been away for ${seconds(ENGINE_OUTAGE_MS)} while container ${this.record.containerName} ran: its end is unknown. Bring the engine back; the agent re-adopts the container at its next start if it still runs`, { cause });
    }
    const info = await this.deps.engine.inspect(containerId);
    jobLog.note(info?.running ? 'the container engine is back and the container still runs: following it on' : `the container engine is back; the container ${info ? `stopped with it (exit code ${info.exitCode ?? '?'})` : 'is gone'}`);
    this.log.info({ containerId, running: info?.running ?? false, exitCode: info?.exitCode }, 'the container engine is back');
  }

  /** Pings the engine with backoff until it answers (true) or ENGINE_OUTAGE_MS has passed (false). */
  private async engineBack(signal: AbortSignal): Promise<boolean> {
    const deadline = this.deps.clock.now() + ENGINE_OUTAGE_MS;
    let delay = 250;
    for (;;) {
      signal.throwIfAborted();
      if (await this.deps.engine.ping().then(() => true, () => false)) return true;
      if (this.deps.clock.now() >= deadline) return false;
      await this.deps.clock.sleep(delay, signal);
      delay = Math.min(delay * 2, 5000);
    }
  }

  private async ensureImage(record: AttemptRecord): Promise<void> {
    const spec = this.specOf(record);
    const { engine } = this.deps;
    const present = spec.pullPolicy === 'always' ? false : await engine.hasImage(spec.image);
    if (present) return;
    if (spec.pullPolicy === 'never') {
      throw new StevedoreError('IMAGE_NOT_FOUND', `image ${spec.image} is not on this node and the job's pullPolicy is "never": load the image first or use pullPolicy if-not-present`);
    }
    if (record.state !== 'PULLING') this.setState('PULLING', `pulling ${spec.image}`);
    const jobLog = this.openLog();
    jobLog.note(`pulling image ${spec.image}`);
    let lastNote = 0;
    const signal = AbortSignal.any([this.detachController.signal, this.startController.signal]);
    const auth = this.deps.registryAuth(spec.image);
    const totals = new PullProgressTotals();
    try {
      await engine.pullImage(spec.image, {
        ...(auth ? { auth } : {}),
        inactivityTimeoutMs: this.deps.pullInactivityTimeoutMs,
        signal,
        onProgress: (p) => {
          this.progress.update('pull', { ...totals.update(p), detail: spec.image });
          const now = this.deps.clock.now();
          if (now - lastNote < 1000) return;
          lastNote = now;
          const bytes = p.total ? ` ${Math.round((p.current ?? 0) / 1e6)}/${Math.round(p.total / 1e6)} MB` : '';
          const text = `pull ${spec.image}: ${p.id ? `${p.id} ` : ''}${p.status}${bytes}`;
          jobLog.note(text);
          this.log.info({ image: spec.image, layer: p.id, status: p.status, current: p.current, total: p.total }, 'image pull progress');
        },
      });
    } finally {
      this.progress.finish('pull', { ...totals.totals(), detail: spec.image });
    }
    jobLog.note(`pulled image ${spec.image}`);
  }

  /** The attempt's checkpoint handling, when its spec has a checkpoint section. */
  private checkpointsOf(record: AttemptRecord): AttemptCheckpoints | undefined {
    const spec = record.spec?.checkpoint;
    if (!spec) return undefined;
    this.checkpoints ??= new AttemptCheckpoints({
      jobId: this.jobId,
      attempt: this.attempt,
      nodeId: this.deps.nodeId,
      spec,
      jobDir: this.deps.paths.jobDir(this.jobId),
      services: this.deps.checkpoints,
      journal: this.deps.journal,
      clock: this.deps.clock,
      logger: this.log,
      note: (text) => this.openLog().note(text),
      progress: this.progress,
    });
    return this.checkpoints;
  }

  /** The job's dataset, from the node's cache (downloaded once per node and source version). */
  private async prepareInput(): Promise<void> {
    const record = this.record;
    const input = record.spec?.input;
    if (!input || record.inputPath) return;
    const jobLog = this.openLog();
    let lastNote = 0;
    let prepared: Awaited<ReturnType<InputCache['prepare']>>;
    try {
      prepared = await this.deps.data.inputs.prepare(input, {
        signal: AbortSignal.any([this.detachController.signal, this.startController.signal]),
        onProgress: (bytes, total) => {
          this.progress.update('input', { doneBytes: bytes, totalBytes: total ?? 0, detail: urlForDisplay(input.url) });
          const now = this.deps.clock.now();
          if (now - lastNote < 2000) return;
          lastNote = now;
          jobLog.note(`downloading input: ${formatBytes(bytes)}${total ? ` of ${formatBytes(total)}` : ''}`);
        },
      });
    } finally {
      this.progress.finish('input');
    }
    this.deps.ledger.update(this.jobId, this.attempt, { inputPath: prepared.hostPath });
    jobLog.note(`input ${prepared.reused ? 'found in the node cache' : `downloaded (${formatBytes(prepared.bytes)} in ${prepared.durationMs} ms)`}; mounted read-only at ${input.target}`);
  }

  private outputDir(): string {
    return path.join(this.deps.paths.jobDir(this.jobId), 'output');
  }

  private startOutputMirror(): void {
    const spec = this.record.spec?.output;
    if (!spec || this.output) return;
    try {
      const { store, prefix } = this.deps.data.outputFor(spec);
      this.output = new OutputMirror({ dir: this.outputDir(), store, prefix, intervalMs: spec.intervalSeconds * 1000, clock: this.deps.clock, logger: this.log, partSizeBytes: this.deps.data.partSizeBytes });
      this.output.start();
    } catch (err) {
      this.log.error({ err }, 'output mirror could not start');
      this.openLog().note(`output mirror could not start: ${messageOf(err)}`);
    }
  }

  /** Once per attempt, before its container exists: bring back the newest committed checkpoint. */
  private async restoreCheckpoint(): Promise<void> {
    const record = this.record;
    const checkpoints = this.checkpointsOf(record);
    if (!checkpoints || record.restored !== undefined) return;
    if (!record.resume && !checkpoints.spec.resume) {
      this.deps.ledger.update(this.jobId, this.attempt, { restored: null });
      return;
    }
    const jobLog = this.openLog();
    jobLog.note(`restoring the newest committed checkpoint from ${checkpoints.spec.destination}`);
    const restored = await checkpoints.restore(AbortSignal.any([this.detachController.signal, this.startController.signal]));
    this.deps.ledger.update(this.jobId, this.attempt, { restored: restored ?? null });
    jobLog.note(restored ? `restored ${restored.checkpointId} (step ${restored.step ?? '?'}) to ${restored.containerPath}` : 'no committed checkpoint yet: starting fresh');
  }

  private async startCheckpointSync(): Promise<void> {
    const checkpoints = this.checkpointsOf(this.record);
    if (!checkpoints) return;
    try {
      await checkpoints.start();
    } catch (err) {
      // The job runs on; its checkpoints stay on the host and are picked up by the final scan.
      this.log.error({ err }, 'checkpoint sync could not start');
      this.openLog().note(`checkpoint sync could not start: ${messageOf(err)}`);
    }
  }

  private async createContainer(): Promise<void> {
    const record = this.record;
    const spec = this.specOf(record);
    // Checked again here, not only when the job was accepted: the policy may
    // have been narrowed by a restart of the agent since.
    const security = this.deps.security ?? DEFAULT_SECURITY_POLICY;
    checkSecurityPolicy(spec, security);
    const mounts = this.deps.paths.prepareMounts(this.jobId, spec.mounts);
    mounts.push(...prepareHostMounts(spec.hostMounts ?? [], security));
    const devices = resolveDevices(spec.devices ?? [], security);
    const checkpoints = this.checkpointsOf(record);
    if (checkpoints) mounts.push(checkpoints.mount());
    if (spec.input && record.inputPath) mounts.push({ hostPath: record.inputPath, containerPath: spec.input.target, readOnly: true });
    if (spec.output) {
      mkdirSync(this.outputDir(), { recursive: true, mode: 0o755 });
      mounts.push({ hostPath: this.outputDir(), containerPath: spec.output.path, readOnly: false });
    }
    const containerSpec: ContainerSpec = {
      name: record.containerName,
      image: spec.image,
      command: spec.command,
      env: this.environment(spec, record),
      labels: {
        [LABELS.managed]: 'true',
        [LABELS.nodeId]: this.deps.nodeId,
        [LABELS.jobId]: this.jobId,
        [LABELS.attempt]: String(this.attempt),
        [LABELS.gpus]: record.gpuUuids.join(','),
        [LABELS.stopSignal]: spec.stopSignal,
        [LABELS.stopGrace]: String(spec.stopGraceSeconds),
      },
      gpuUuids: record.gpuUuids,
      cpus: spec.resources.cpus,
      memoryBytes: spec.resources.memoryBytes,
      shmBytes: spec.resources.shmBytes,
      ulimits: spec.ulimits,
      hostIpc: spec.hostIpc,
      hostNetwork: spec.hostNetwork,
      mounts,
      privileged: spec.privileged === true,
      capAdd: spec.capabilities ?? [],
      devices,
      stopSignal: spec.stopSignal,
      workingDir: spec.workingDir,
    };
    const containerId = await this.deps.engine.create(containerSpec);
    this.deps.ledger.update(this.jobId, this.attempt, { containerId });
    if (this.record.state !== 'STARTING') this.setState('STARTING', `container ${record.containerName} created`);
  }

  private async startContainer(): Promise<void> {
    const record = this.record;
    await this.deps.engine.start(record.containerId);
    this.deps.ledger.update(this.jobId, this.attempt, { startedAtMs: this.deps.clock.now() });
    this.setState('RUNNING', `running on GPUs ${record.gpuUuids.join(',') || '(none)'}`);
    this.openLog().note(`container ${record.containerName} started`);
  }

  /** Variables every job gets: its identity, and what single-node distributed launchers read. */
  private environment(spec: JobSpec, record: AttemptRecord): Record<string, string> {
    const gpus = record.gpuUuids.length;
    return {
      RANK: '0',
      WORLD_SIZE: '1',
      NODE_RANK: '0',
      LOCAL_RANK: '0',
      LOCAL_WORLD_SIZE: String(Math.max(gpus, 1)),
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: '29500',
      CUDA_DEVICE_ORDER: 'PCI_BUS_ID',
      ...spec.env,
      STEVEDORE_JOB_ID: this.jobId,
      STEVEDORE_JOB_NAME: spec.name,
      STEVEDORE_ATTEMPT: String(this.attempt),
      STEVEDORE_NODE_ID: this.deps.nodeId,
      STEVEDORE_GPU_UUIDS: record.gpuUuids.join(','),
      ...(spec.checkpoint ? { STEVEDORE_CHECKPOINT_DIR: spec.checkpoint.path } : {}),
      ...(record.restored
        ? { STEVEDORE_RESTORE_PATH: record.restored.containerPath, STEVEDORE_RESTORE_STEP: String(record.restored.step ?? ''), STEVEDORE_RESTORE_CHECKPOINT: record.restored.checkpointId }
        : {}),
    };
  }

  /** Captures the container's output until it ends; follows again from the last line kept when the engine went away and came back. */
  private async followLogs(containerId: string, signal: AbortSignal): Promise<void> {
    const jobLog = this.openLog();
    try {
      for (;;) {
        const since = jobLog.resumeAfter();
        try {
          await this.deps.engine.followLogs(containerId, { ...(since ? { since } : {}), signal }, (line) => {
            jobLog.write({ timeMs: line.timeMs, timestamp: line.timestamp, stream: line.stream, text: line.text });
          });
          return;
        } catch (err) {
          if (signal.aborted) return;
          if (!isStevedoreError(err) || err.code !== 'ENGINE_UNREACHABLE') {
            this.log.warn({ err }, 'log capture ended early');
            return;
          }
          this.log.warn({ err }, 'log capture interrupted: the container engine went away; following again once it is back');
          jobLog.flush();
          if (!(await this.engineBack(signal).catch(() => false))) return;
        }
      }
    } finally {
      jobLog.flush();
    }
  }

  private async stopContainer(): Promise<void> {
    const record = this.record;
    try {
      await this.deps.engine.stop(record.containerId, record.stopSignal, record.stopGraceSeconds);
    } catch (err) {
      this.log.error({ err }, 'stopping the container failed; it will be stopped again at the next stop request or restart');
    }
  }

  private openLog(): JobLog {
    this.jobLog ??= new JobLog({
      file: this.deps.paths.logFile(this.jobId, this.attempt),
      journal: this.deps.journal,
      clock: this.deps.clock,
      jobId: this.jobId,
      attempt: this.attempt,
      journalCursor: this.record.logCursor || undefined,
      logger: this.log,
      onJournaled: (logCursor) => {
        if (this.deps.ledger.get(this.jobId, this.attempt)) this.deps.ledger.update(this.jobId, this.attempt, { logCursor });
      },
    });
    return this.jobLog;
  }

  private specOf(record: AttemptRecord): JobSpec {
    if (!record.spec) throw new StevedoreError('INTERNAL', `attempt ${this.key} has no spec on this node`);
    return record.spec;
  }

  private setState(to: AttemptState, message: string): void {
    const record = this.record;
    transition(this.key, record.state, to);
    const updated = this.deps.ledger.update(this.jobId, this.attempt, { state: to, message });
    this.deps.journal.append({
      timeMs: this.deps.clock.now(),
      jobId: this.jobId,
      attempt: this.attempt,
      body: { stateChanged: { state: toWireState(to), message, gpuUuids: updated.gpuUuids, containerId: updated.containerId } },
    });
    this.log.info({ state: to, message }, 'attempt state');
  }

  /** What the drain achieved: the final committed checkpoint, and how long before the deadline. */
  private reportDrain(p: NonNullable<AttemptRecord['preemption']>): void {
    const newest = this.checkpoints?.newestCommitted();
    const isNew = newest !== undefined && newest.committedMs >= p.receivedMs;
    const body = {
      noticeId: p.noticeId,
      finalCheckpointId: newest?.checkpointId ?? '',
      finalStep: newest?.step ?? -1,
      finalCheckpointIsNew: isNew,
      committedMs: newest?.committedMs ?? 0,
      deadlineMs: p.deadlineMs,
      marginMs: isNew ? p.deadlineMs - newest.committedMs : 0,
    };
    this.deps.journal.append({ timeMs: this.deps.clock.now(), jobId: this.jobId, attempt: this.attempt, body: { drainReport: body } });
    this.openLog().note(
      newest
        ? `drain: final checkpoint ${newest.checkpointId} (step ${newest.step ?? '?'})${isNew ? `, committed ${seconds(body.marginMs)} before the deadline` : ', committed before the notice: the job wrote no newer one in time'}`
        : 'drain: no committed checkpoint for this job',
    );
    this.log.warn({ ...body }, 'drain report');
  }

  /** Reports the end exactly once: journal first, then the ledger remembers it was journaled. */
  private finish(state: AttemptState, exitCode: number, error: StevedoreError | null, oomKilled: boolean): void {
    const record = this.record;
    if (isTerminal(record.state)) return;
    transition(this.key, record.state, state);
    const jobLog = this.openLog();
    if (error) jobLog.note(`attempt failed: ${error.message} [${error.code}]`);
    else jobLog.note(`attempt ended: ${state.toLowerCase()}, exit code ${exitCode}${oomKilled ? ' (killed: out of memory)' : ''}`);
    jobLog.flush();
    const message = error ? error.message : oomKilled ? 'killed: out of memory' : `exit code ${exitCode}`;
    const event = this.deps.journal.append({
      timeMs: this.deps.clock.now(),
      jobId: this.jobId,
      attempt: this.attempt,
      body: { exited: { state: toWireState(state), exitCode, error: error ? { code: error.code, message: error.message } : null, oomKilled } },
    });
    this.deps.ledger.update(this.jobId, this.attempt, { state, exitCode, exitEventId: event.eventId, endedAtMs: this.deps.clock.now(), message });
    this.deps.allocator.release(this.key);
    this.progress.close();
    this.log.info({ state, exitCode, error: error ? messageOf(error) : undefined, code: isStevedoreError(error) ? error.code : undefined }, 'attempt ended');
  }
}
