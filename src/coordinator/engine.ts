// The coordinator's rules. Every change of state goes through here, inside one
// database transaction; commands to agents and notifications to followers go
// out only after the transaction has committed.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Clock } from '../util/clock.ts';
import type { Logger } from '../util/logger.ts';
import { StevedoreError, isStevedoreError, messageOf } from '../util/errors.ts';
import { DEFAULT_RESTART, fromSpecMessage } from '../spec/job-spec.ts';
import type { JobSpec, RestartPolicy } from '../spec/job-spec.ts';
import type { Command } from '../gen/stevedore/v1/Command.ts';
import type { Register__Output } from '../gen/stevedore/v1/Register.ts';
import type { AttemptStatus__Output } from '../gen/stevedore/v1/AttemptStatus.ts';
import type { Event__Output } from '../gen/stevedore/v1/Event.ts';
import type { CommandAck__Output } from '../gen/stevedore/v1/CommandAck.ts';
import type { AttemptExited__Output } from '../gen/stevedore/v1/AttemptExited.ts';
import type { AttemptStateChanged__Output } from '../gen/stevedore/v1/AttemptStateChanged.ts';
import type { LogChunk__Output } from '../gen/stevedore/v1/LogChunk.ts';
import type { CheckpointCommitted__Output } from '../gen/stevedore/v1/CheckpointCommitted.ts';
import type { CheckpointRestored__Output } from '../gen/stevedore/v1/CheckpointRestored.ts';
import type { PreemptionNotice__Output } from '../gen/stevedore/v1/PreemptionNotice.ts';
import type { DrainReport__Output } from '../gen/stevedore/v1/DrainReport.ts';
import type { GpuHealth__Output } from '../gen/stevedore/v1/GpuHealth.ts';
import type { Heartbeat__Output } from '../gen/stevedore/v1/Heartbeat.ts';
import type { Inventory__Output } from '../gen/stevedore/v1/Inventory.ts';
import type { AttemptProgress__Output } from '../gen/stevedore/v1/AttemptProgress.ts';
import { isAttemptActive } from './store.ts';
import type {
  Store, AttemptRecord, AttemptStateName, CheckpointRecord, CommandKind, DrainReportRecord, JobHistory, JobRecord, NodeRecord, NoticeRecord,
  PlacementRecord, RestartCounts, RestoreRecord,
} from './store.ts';
import { assertTransition, isTerminal } from './job-state.ts';
import type { JobState } from './job-state.ts';
import { planPlacement } from './scheduler.ts';
import type { Location, NodeCapacity, PendingJob } from './scheduler.ts';
import type { JobBus } from './job-bus.ts';
import type { EngineMetrics } from './coordinator-metrics.ts';

/** Where commands go: the open agent sessions. */
export interface CommandSink {
  /** Sends on the node's open session; false when it has none (the command is dropped). */
  send(nodeId: string, command: Command): boolean;
  isOnline(nodeId: string): boolean;
  /** Ends the node's session, if open. */
  disconnect(nodeId: string, reason: string): void;
}

export interface EngineOptions {
  store: Store;
  sink: CommandSink;
  bus: JobBus;
  clock: Clock;
  logger: Logger;
  leaseMs: number;
  heartbeatIntervalMs: number;
  /** Counts events and placements for the coordinator's metrics. */
  metrics?: EngineMetrics;
}

/** An attempt with its history: where it ran, what it restored, why it was preempted, what its drain achieved (null: not known). */
export interface AttemptView extends AttemptRecord {
  restore: RestoreRecord | null;
  /** Where it was placed (null for attempts placed before this was recorded: then the node's current record stands in). */
  placement: PlacementRecord | null;
  /** The node's notice that ended a PREEMPTED attempt. */
  notice: NoticeRecord | null;
  drain: DrainReportRecord | null;
  /** The latest long operation the agent reported (pull, restore, input, upload); null when none since this coordinator started. */
  progress: AttemptProgress__Output | null;
}

/** The job view: a job with its attempts and how often it was started again. */
export interface JobView extends JobRecord {
  attempts: AttemptView[];
  restarts: RestartCounts;
}

export type NodeViewState = 'online' | 'offline' | 'lost' | 'draining' | 'preempting';

export interface NodeView extends NodeRecord {
  viewState: NodeViewState;
  /** The notice that says the node is going away, while it lasts. */
  notice: NoticeRecord | null;
  allocatedGpuUuids: string[];
  totalGpus: number;
  /** Healthy GPUs not held by an active attempt: what a new attempt can get. */
  freeGpus: number;
  /** GPUs whose last reported health is healthy (or not reported yet). */
  healthyGpus: number;
  /** Why GPUs are not healthy, one entry per GPU. */
  unhealthy: string[];
  /** Attempts not yet ended on the node. */
  activeAttempts: number;
}

/** Refusal codes after which the job goes back to the queue instead of failing. */
const REQUEUE_CODES: ReadonlySet<string> = new Set(['GPUS_UNAVAILABLE', 'NODE_DRAINING']);

const ACTIVE_REPORTED_STATES: ReadonlySet<string> = new Set([
  'ATTEMPT_STATE_ACCEPTED', 'ATTEMPT_STATE_PULLING', 'ATTEMPT_STATE_STARTING', 'ATTEMPT_STATE_RUNNING', 'ATTEMPT_STATE_STOPPING',
]);

const EXIT_STATES: ReadonlySet<string> = new Set(['ATTEMPT_STATE_SUCCEEDED', 'ATTEMPT_STATE_FAILED', 'ATTEMPT_STATE_CANCELLED', 'ATTEMPT_STATE_PREEMPTED']);

/** The drain window of `DrainNode` when the request gives none. */
export const DEFAULT_DRAIN_DEADLINE_SECONDS = 120;

/** Notice sources that are only a hint: the node stays eligible. */
const ADVISORY_SOURCES: ReadonlySet<string> = new Set(['aws-rebalance']);

interface Outgoing {
  nodeId: string;
  command: Command;
}

function progressKey(jobId: string, attempt: number): string {
  return `${jobId}#${attempt}`;
}

export class Engine {
  private readonly store: Store;
  private readonly sink: CommandSink;
  private readonly bus: JobBus;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly leaseMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly metrics: EngineMetrics | undefined;
  /** When this coordinator started: leases of nodes without a session count from here. */
  readonly startedMs: number;
  /** Duplicate events dropped (already stored), since start. */
  duplicateEvents = 0;
  /**
   * The latest progress event of each attempt ("job#attempt"). Kept in memory
   * only: it is stale within seconds, an agent sends a newer one at least once
   * a second while an operation runs, and storing one row a second per
   * attempt would only grow the database.
   */
  private readonly progress = new Map<string, AttemptProgress__Output>();

  private outbox: Outgoing[] = [];
  private touched = new Set<string>();
  /** Job -> node that just refused it for lack of GPUs, and until when to avoid that node. */
  private readonly avoid = new Map<string, { nodeId: string; untilMs: number }>();
  /**
   * Order of registrations and of attempts whose node went away, since this
   * coordinator started: a node that registered after it preempted or lost a
   * job's attempt may take that job again.
   */
  private sequence = 0;
  private readonly registeredAt = new Map<string, number>();
  /**
   * The latest GPU health each node reported (node -> GPU UUID -> health),
   * from its registration and every heartbeat. The store holds it too, but
   * is written only when a GPU's health changes, not for every heartbeat.
   */
  private readonly gpuHealth = new Map<string, Map<string, GpuHealth__Output>>();
  private readonly goneAt = new Map<string, number>();
  /**
   * Lease renewals heard and not yet stored (node -> time of its latest
   * message). A heartbeat must not cost a disk flush of its own: with
   * thousands of nodes the flushes alone would fill the event loop. They are
   * stored together, once per tick and before any view of the nodes; a
   * restart loses nothing that matters, as leases count from the start then.
   */
  private readonly seenSince = new Map<string, number>();
  /**
   * What waits for the next flush (afterDurable), in order. Commits are not
   * flushed to disk one by one: a flush once per turn of the event loop makes
   * all of that turn's commits durable together, then these run.
   */
  private durableWaiters: (() => void)[] = [];
  private flushPending = false;
  /** A placement pass is due at the next flush (scheduleSoon). */
  private scheduleWanted = false;
  /** A flush of the database runs in the background. */
  private syncing = false;
  private syncFailures = 0;

  constructor(options: EngineOptions) {
    this.store = options.store;
    this.sink = options.sink;
    this.bus = options.bus;
    this.clock = options.clock;
    this.logger = options.logger;
    this.leaseMs = options.leaseMs;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs;
    this.metrics = options.metrics;
    this.startedMs = this.clock.now();
    this.store.markOnlineNodesOffline();
  }

  // ---------------------------------------------------------------- plumbing

  /** Runs fn in one transaction, then sends the queued commands and notifications. */
  private mutate<T>(fn: () => T): T {
    let result: T;
    try {
      result = this.store.transaction(fn);
    } catch (err) {
      this.outbox = [];
      this.touched.clear();
      throw err;
    }
    const outbox = this.outbox;
    const touched = this.touched;
    this.outbox = [];
    this.touched = new Set();
    if (outbox.length === 0 && touched.size === 0) return result;
    this.afterDurable(() => {
      for (const { nodeId, command } of outbox) {
        if (!this.sink.send(nodeId, command)) {
          this.logger.info({ nodeId, commandId: command.commandId, body: command.body }, 'node is not connected; reconciliation at its next register covers this command');
        }
      }
      for (const jobId of touched) this.bus.notify(jobId);
    });
    return result;
  }

  /**
   * Runs fn once every commit so far is durable: at once when nothing waits
   * for a flush, else right after the flush that covers them, in the order
   * asked. Whatever tells the outside world of a change goes through here:
   * commands, event acknowledgements (the agent then forgets the events),
   * registrations, replies to Control calls.
   */
  afterDurable(fn: () => void): void {
    if (!this.syncing && this.durableWaiters.length === 0 && !this.store.needsSync) {
      fn();
      return;
    }
    this.durableWaiters.push(fn);
    this.requestFlush();
  }

  private requestFlush(): void {
    if (this.flushPending) return;
    this.flushPending = true;
    setImmediate(() => this.flushSoon());
  }

  /** Places queued jobs before the next flush: one pass for all the changes of this turn of the event loop. */
  private scheduleSoon(): void {
    this.scheduleWanted = true;
    this.requestFlush();
  }

  private runSchedulePass(): void {
    if (!this.scheduleWanted) return;
    this.scheduleWanted = false;
    try {
      this.schedule();
    } catch (err) {
      this.logger.error({ err: messageOf(err) }, 'placement pass failed; it runs again at the next change');
    }
  }

  /**
   * Once per turn of the event loop while there is work: the placement pass
   * that is due, then a flush of the database in the background for every
   * commit so far; what waited for those commits runs when it completes.
   * Messages keep arriving and committing meanwhile; the next flush covers
   * them. At most one flush runs at a time.
   */
  private flushSoon(): void {
    this.flushPending = false;
    if (this.store.isClosed) return; // shut down in this turn: close() flushed what there was
    // While a flush runs, what a pass places could only go out after the next
    // flush, which starts when this one ends: the pass waits for it, and then
    // covers every change made meanwhile at once (one pass per flush instead
    // of one per turn of the event loop).
    if (this.syncing) return;
    this.runSchedulePass();
    if (this.durableWaiters.length === 0) return;
    const waiters = this.durableWaiters;
    this.durableWaiters = [];
    this.syncing = true;
    this.store.flushWal((err) => {
      this.syncing = false;
      if (err) {
        // Nothing that depends on these commits may leave before they are durable: try again shortly.
        this.syncFailures++;
        this.durableWaiters = [...waiters, ...this.durableWaiters];
        this.logger.error({ err: messageOf(err), attempts: this.syncFailures }, 'cannot flush the coordinator database to disk; acknowledgements and replies wait until it succeeds: check the disk of --db');
        setTimeout(() => this.requestFlush(), Math.min(5000, 100 * 2 ** Math.min(this.syncFailures, 6))).unref();
        return;
      }
      this.syncFailures = 0;
      this.runWaiters(waiters);
      if (this.durableWaiters.length > 0 || this.scheduleWanted) this.requestFlush();
    });
  }

  private runWaiters(waiters: readonly (() => void)[]): void {
    for (const fn of waiters) {
      try {
        fn();
      } catch (err) {
        this.logger.error({ err: messageOf(err) }, 'could not send after a flush');
      }
    }
  }

  /**
   * Runs the placement pass that is due, flushes every commit so far to disk
   * and runs what waited for them, before it returns (shutdown). What waits
   * for a flush already in the background runs when that completes.
   */
  flush(): void {
    this.runSchedulePass();
    this.store.syncNow();
    if (this.syncing) return;
    const waiters = this.durableWaiters;
    this.durableWaiters = [];
    this.runWaiters(waiters);
  }

  /** Records a command and queues it for sending after the commit, if the node is online. */
  private command(nodeId: string, kind: CommandKind, jobId: string, attempt: number, body: Omit<Command, 'commandId'>): void {
    if (!this.sink.isOnline(nodeId)) return;
    const commandId = randomUUID();
    this.store.insertCommand({ commandId, nodeId, kind, jobId, attempt, createdMs: this.clock.now() });
    this.outbox.push({ nodeId, command: { commandId, ...body } });
  }

  /** Every attempt after the first resumes from the job's newest committed checkpoint. */
  private startJob(nodeId: string, job: JobRecord, attempt: number): void {
    this.command(nodeId, 'startJob', job.jobId, attempt, { startJob: { jobId: job.jobId, attempt, spec: job.spec, resume: isResume(attempt) } });
  }

  private stopJob(nodeId: string, jobId: string, attempt: number, reason: string): void {
    this.command(nodeId, 'stopJob', jobId, attempt, { stopJob: { jobId, attempt, reason } });
  }

  private setJob(job: JobRecord, state: JobState, message: string): void {
    assertTransition(job.jobId, job.state, state);
    this.store.updateJob(job.jobId, { state, message }, this.clock.now());
    job.state = state;
    job.message = message;
    this.touched.add(job.jobId);
  }

  private setJobMessage(jobId: string, message: string): void {
    this.store.updateJob(jobId, { message }, this.clock.now());
    this.touched.add(jobId);
  }

  private endAttempt(a: AttemptRecord, state: AttemptStateName, message: string, exitCode: number | null = null): void {
    this.store.updateAttempt(a.jobId, a.attempt, { state, message, exitCode, endedMs: this.clock.now() });
    a.state = state;
    // An operation the agent never reported the end of ended with the attempt.
    const key = progressKey(a.jobId, a.attempt);
    const p = this.progress.get(key);
    if (p && !p.finished) this.progress.set(key, { ...p, finished: true });
    this.touched.add(a.jobId);
  }

  // ---------------------------------------------------------------- views

  requireJob(jobId: string): JobRecord {
    const job = this.store.getJob(jobId);
    if (!job) throw new StevedoreError('JOB_NOT_FOUND', `no job ${jobId}; \`stevedore status\` lists jobs`);
    return job;
  }

  getJob(jobId: string): JobView {
    return this.jobView(this.requireJob(jobId));
  }

  listJobs(): JobView[] {
    const histories = this.store.allJobHistories();
    // A job missing from every table of histories has no attempt, report or restart yet.
    const none = (): JobHistory => ({ attempts: [], restores: new Map(), placements: new Map(), drains: new Map(), restarts: { preemptions: 0, failures: 0 } });
    return this.store.listJobs().map((job) => this.jobView(job, histories.get(job.jobId) ?? none()));
  }

  private jobView(job: JobRecord, history: JobHistory = this.store.jobHistory(job.jobId)): JobView {
    const { restores, placements, drains } = history;
    const notices = new Map<string, NoticeRecord[]>();
    const noticesOf = (nodeId: string): NoticeRecord[] => {
      let list = notices.get(nodeId);
      if (!list) {
        list = this.store.noticesOfNode(nodeId);
        notices.set(nodeId, list);
      }
      return list;
    };
    const attempts = history.attempts.map((a): AttemptView => {
      const drain = drains.get(a.attempt) ?? null;
      let notice: NoticeRecord | null = null;
      if (drain?.noticeId) notice = this.store.getNotice(a.nodeId, drain.noticeId) ?? null;
      if (!notice && a.state === 'ATTEMPT_STATE_PREEMPTED') {
        // No report names it: the node's newest notice stored before the attempt ended.
        notice = noticesOf(a.nodeId).filter((n) => !n.advisory && n.storedMs <= a.endedMs).at(-1) ?? null;
      }
      const progress = this.progress.get(progressKey(a.jobId, a.attempt)) ?? null;
      return { ...a, restore: restores.get(a.attempt) ?? null, placement: placements.get(a.attempt) ?? null, notice, drain, progress };
    });
    return { ...job, attempts, restarts: history.restarts };
  }

  /** The job's committed checkpoints as agents reported them, newest first (by step, then commit time). */
  listCheckpoints(jobId: string): CheckpointRecord[] {
    this.requireJob(jobId);
    return this.store.checkpointsOfJob(jobId);
  }

  listNodes(): NodeView[] {
    this.flushSeen();
    const active = this.store.activeAttempts();
    const gpusOf = this.jobGpuLookup();
    const preempting = this.store.preemptingNodes();
    const activeOn = new Map<string, AttemptRecord[]>();
    for (const a of active) {
      const list = activeOn.get(a.nodeId);
      if (list) list.push(a);
      else activeOn.set(a.nodeId, [a]);
    }
    return this.store.listNodes().map((node) => {
      const mine = activeOn.get(node.nodeId) ?? [];
      const inventory = this.withGpuHealth(node.nodeId, node.inventory);
      const gpus = inventory?.gpus ?? [];
      const totalGpus = gpus.length;
      // Free means healthy and not held: GPUs held by attempts the agent has not confirmed yet count by number.
      const held = new Set(mine.flatMap((a) => a.gpuUuids));
      const unconfirmed = mine.reduce((n, a) => n + (a.gpuUuids.length > 0 ? 0 : gpusOf(a.jobId)), 0);
      const healthy = gpus.filter((g) => g.health?.healthy !== false);
      const unhealthy = gpus.filter((g) => g.health?.healthy === false).map((g) => `GPU ${g.index} (${g.uuid}): ${g.health?.problems.join('; ') || 'not healthy'}`);
      const notice = preempting.get(node.nodeId) ?? null;
      let viewState: NodeViewState = node.state;
      if (node.state === 'online' && notice) viewState = 'preempting';
      else if (node.state === 'online' && node.draining) viewState = 'draining';
      return {
        ...node,
        inventory,
        viewState,
        notice,
        allocatedGpuUuids: mine.flatMap((a) => a.gpuUuids),
        totalGpus,
        freeGpus: Math.max(0, healthy.filter((g) => !held.has(g.uuid)).length - unconfirmed),
        healthyGpus: healthy.length,
        unhealthy,
        activeAttempts: mine.length,
      };
    });
  }

  private jobGpuLookup(): (jobId: string) => number {
    const cache = new Map<string, number>();
    return (jobId) => {
      let n = cache.get(jobId);
      if (n === undefined) {
        n = this.store.getJob(jobId)?.spec.resources.gpus ?? 0;
        cache.set(jobId, n);
      }
      return n;
    };
  }

  // ---------------------------------------------------------------- operator actions

  submit(specMessage: unknown): JobRecord {
    let spec: JobSpec;
    try {
      spec = fromSpecMessage(specMessage);
    } catch (err) {
      if (isStevedoreError(err, 'SPEC_INVALID')) {
        throw new StevedoreError('SPEC_INVALID', err.message.replace(' in start command', '').replace('start command carries no job spec', 'the request carries no job spec'), { cause: err });
      }
      throw err;
    }
    const largest = this.store.largestGpuCount();
    if (largest !== undefined) {
      if (spec.resources.gpus > largest) {
        throw new StevedoreError(
          'GPUS_UNSATISFIABLE',
          `job asks for ${spec.resources.gpus} GPUs; the largest node has ${largest}. Ask for at most ${largest} or add a node with more GPUs`,
        );
      }
    }
    const job = this.mutate(() => {
      let jobId = `${spec.name}-${randomBytes(3).toString('hex')}`;
      while (this.store.getJob(jobId)) jobId = `${spec.name}-${randomBytes(3).toString('hex')}`;
      const now = this.clock.now();
      const created = this.store.insertJob({ jobId, spec, state: 'queued', message: 'waiting to be placed', createdMs: now, updatedMs: now, currentAttempt: 0 });
      this.logger.info({ jobId, gpus: spec.resources.gpus }, 'job submitted');
      return created;
    });
    this.scheduleSoon();
    return this.store.getJob(job.jobId) ?? job;
  }

  cancel(jobId: string): JobRecord {
    this.mutate(() => {
      const job = this.requireJob(jobId);
      if (isTerminal(job.state)) {
        throw new StevedoreError('JOB_NOT_CANCELLABLE', `job ${jobId} already ended (${job.state})`);
      }
      if (job.state === 'queued') {
        this.setJob(job, 'cancelled', 'cancelled before it was placed');
        return;
      }
      const attempt = this.store.getAttempt(jobId, job.currentAttempt);
      if (!attempt || !isAttemptActive(attempt.state)) {
        this.setJob(job, 'cancelled', 'cancelled');
        return;
      }
      const online = this.sink.isOnline(attempt.nodeId);
      const message = online
        ? `cancelling: asked ${attempt.nodeId} to stop attempt ${attempt.attempt}`
        : `cancelling: ${attempt.nodeId} is not connected; it is told to stop attempt ${attempt.attempt} when it reconnects`;
      if (job.state !== 'cancelling') this.setJob(job, 'cancelling', message);
      this.stopJob(attempt.nodeId, jobId, attempt.attempt, 'cancelled by the operator');
    });
    this.logger.info({ jobId }, 'job cancel requested');
    return this.requireJob(jobId);
  }

  /**
   * Tells a connected node to drain: it takes no new job, and its running jobs
   * make a final checkpoint durable, stop by the deadline and are placed again
   * elsewhere. The node is `draining` until it registers again.
   */
  drainNode(nodeId: string, reason: string, deadlineSeconds: number): NodeView {
    const seconds = deadlineSeconds > 0 ? deadlineSeconds : DEFAULT_DRAIN_DEADLINE_SECONDS;
    const why = reason.trim() || 'drained by the operator';
    this.mutate(() => {
      const node = this.store.getNode(nodeId);
      if (!node) throw new StevedoreError('NODE_NOT_FOUND', `no node ${nodeId}; \`stevedore status\` lists nodes`);
      if (!this.sink.isOnline(nodeId)) {
        throw new StevedoreError(
          'NODE_NOT_CONNECTED',
          `node ${nodeId} is not connected (${node.state}), so it cannot be told to drain; it takes no jobs while it is away. Drain it once it is back online`,
        );
      }
      const deadlineMs = this.clock.now() + seconds * 1000;
      this.store.setNodeDraining(nodeId, true);
      const commandId = randomUUID();
      this.store.insertCommand({ commandId, nodeId, kind: 'drain', jobId: '', attempt: 0, createdMs: this.clock.now() });
      this.outbox.push({ nodeId, command: { commandId, drain: { reason: why, deadlineMs } } });
      for (const a of this.store.activeAttemptsOnNode(nodeId)) {
        this.setJobMessage(a.jobId, `node ${nodeId} is draining (${why}): attempt ${a.attempt} makes a final checkpoint and stops within ${seconds} s, then the job is placed again`);
      }
      this.logger.info({ nodeId, reason: why, deadlineMs }, 'node drain requested');
    });
    const view = this.listNodes().find((n) => n.nodeId === nodeId);
    if (!view) throw new StevedoreError('INTERNAL', `node ${nodeId} vanished while it was drained`);
    return view;
  }

  // ---------------------------------------------------------------- sessions

  /** Stores the node as online; returns the highest event id stored for it. */
  register(reg: Register__Output): number {
    this.seenSince.delete(reg.nodeId);
    return this.mutate(() => {
      const now = this.clock.now();
      this.registeredAt.set(reg.nodeId, ++this.sequence);
      // A node back after its notice's deadline survived it (or is a new machine): it may take jobs again.
      if (this.store.clearNotices(reg.nodeId, now) > 0) this.logger.info({ nodeId: reg.nodeId }, 'node registered after its preemption deadline; it takes jobs again');
      const existing = this.store.getNode(reg.nodeId);
      const node = this.store.upsertNode({
        nodeId: reg.nodeId,
        hostname: reg.inventory?.hostname || existing?.hostname || reg.nodeId,
        agentVersion: reg.agentVersion,
        labels: reg.labels,
        inventory: reg.inventory ?? existing?.inventory ?? null,
        state: 'online',
        draining: false,
        lastSeenMs: this.clock.now(),
      });
      // The registration is the whole truth about the node's GPUs; compare with what was stored before it.
      this.gpuHealth.delete(reg.nodeId);
      if (reg.inventory) this.noteGpuHealth(reg.nodeId, reg.inventory.gpus.flatMap((g) => (g.health ? [g.health] : [])), false, existing?.inventory ?? null);
      return node.highestEventId;
    });
  }

  /** A heartbeat: the node's current GPU health, when it checks health. */
  heartbeat(nodeId: string, hb: Heartbeat__Output): void {
    if (hb.gpuHealth.length === 0) return;
    const latest = this.gpuHealth.get(nodeId);
    if (latest && hb.gpuHealth.every((h) => sameHealth(latest.get(h.uuid), h))) {
      // Nothing but readings changed: no transaction for them.
      for (const h of hb.gpuHealth) latest.set(h.uuid, h);
      return;
    }
    let changed = false;
    this.mutate(() => {
      changed = this.noteGpuHealth(nodeId, hb.gpuHealth, true);
    });
    // Placement may proceed (a GPU recovered) and waiting jobs' reasons change.
    if (changed) this.scheduleSoon();
  }

  /**
   * Records the node's latest GPU health; when a GPU's health changed, stores
   * it, logs it, and tells the jobs whose running attempt holds a GPU that
   * turned unhealthy (the attempt keeps running: its own exit decides).
   * Returns true when a GPU's health changed.
   */
  private noteGpuHealth(nodeId: string, reported: readonly GpuHealth__Output[], persist: boolean, baseline?: Inventory__Output | null): boolean {
    const previous = this.gpuHealth.get(nodeId) ?? new Map<string, GpuHealth__Output>();
    const node = this.store.getNode(nodeId);
    const stored = new Map(((baseline !== undefined ? baseline : node?.inventory)?.gpus ?? []).map((g) => [g.uuid, g.health]));
    let changed = false;
    const latest = new Map(previous);
    for (const h of reported) {
      latest.set(h.uuid, h);
      const before = previous.get(h.uuid) ?? stored.get(h.uuid) ?? null;
      if (sameHealth(before ?? undefined, h)) continue;
      changed = true;
      const gpu = node?.inventory?.gpus.find((g) => g.uuid === h.uuid);
      const fields = { nodeId, gpu: gpu?.index, uuid: h.uuid, problems: h.problems, xids: h.xids };
      if (!h.healthy && before?.healthy !== false) {
        const holders = this.store.activeAttemptsOnNode(nodeId).filter((a) => a.gpuUuids.includes(h.uuid));
        this.logger.warn({ ...fields, attempts: holders.map((a) => `${a.jobId}#${a.attempt}`) }, 'GPU is not healthy: no new attempt is placed on it; attempts holding it keep running');
        for (const a of holders) {
          this.setJobMessage(a.jobId, `GPU ${gpu?.index ?? ''} (${h.uuid}) of attempt ${a.attempt} on ${nodeId} is not healthy (${h.problems.join('; ')}); the attempt keeps running`);
        }
      } else if (h.healthy && before?.healthy === false) {
        this.logger.info(fields, 'GPU is healthy again: it takes new attempts');
      }
    }
    this.gpuHealth.set(nodeId, latest);
    if (changed && persist && node?.inventory) {
      const inventory = this.withGpuHealth(nodeId, node.inventory);
      if (inventory) this.store.setNodeInventory(nodeId, inventory);
    }
    return changed;
  }

  /** The inventory with each GPU's latest reported health. */
  private withGpuHealth(nodeId: string, inventory: Inventory__Output | null): Inventory__Output | null {
    const latest = this.gpuHealth.get(nodeId);
    if (!inventory || !latest || latest.size === 0) return inventory;
    return { ...inventory, gpus: inventory.gpus.map((g) => ({ ...g, health: latest.get(g.uuid) ?? g.health })) };
  }

  /**
   * Right after `registered`: compares what the agent holds with what the
   * coordinator expects of it, sends the commands that fix the difference,
   * then places queued jobs.
   */
  reconcile(nodeId: string, held: readonly AttemptStatus__Output[]): void {
    this.mutate(() => {
      const heldKeys = new Set<string>();
      for (const h of held) {
        heldKeys.add(`${h.jobId}#${h.attempt}`);
        const attempt = this.store.getAttempt(h.jobId, h.attempt);
        const job = this.store.getJob(h.jobId);
        const agentEnded = EXIT_STATES.has(h.state);
        let unwanted: string | undefined;
        if (!attempt || !job) unwanted = 'the coordinator does not know this attempt';
        else if (attempt.nodeId !== nodeId) unwanted = `attempt ${h.attempt} was assigned to ${attempt.nodeId}`;
        else if (job.state === 'cancelling' || job.state === 'cancelled') unwanted = 'the job was cancelled';
        else if (job.currentAttempt !== h.attempt) unwanted = `superseded by attempt ${job.currentAttempt}`;
        else if (attempt.state === 'ATTEMPT_STATE_LOST') unwanted = 'the coordinator already gave this attempt up as lost';
        if (unwanted !== undefined) {
          if (!agentEnded) this.stopJob(nodeId, h.jobId, h.attempt, unwanted);
          continue;
        }
        if (!attempt || !job || !isAttemptActive(attempt.state)) continue;
        // The agent holds it: its acknowledgement may have been lost with the old stream.
        if (attempt.state === 'ATTEMPT_STATE_SCHEDULED' && ACTIVE_REPORTED_STATES.has(h.state)) {
          this.store.updateAttempt(h.jobId, h.attempt, { state: h.state as AttemptStateName });
          attempt.state = h.state as AttemptStateName;
        }
        if (h.gpuUuids.length > 0) this.store.updateAttempt(h.jobId, h.attempt, { gpuUuids: h.gpuUuids });
        if (h.containerId) this.store.updateAttempt(h.jobId, h.attempt, { containerId: h.containerId });
        if (h.state === 'ATTEMPT_STATE_RUNNING' && job.state === 'scheduled') this.setJob(job, 'running', `running on ${nodeId}`);
        else this.setJobMessage(job.jobId, job.state === 'running' ? `running on ${nodeId}` : `placed on ${nodeId} (attempt ${attempt.attempt})`);
      }

      for (const attempt of this.store.activeAttemptsOnNode(nodeId)) {
        if (heldKeys.has(`${attempt.jobId}#${attempt.attempt}`)) continue;
        const job = this.store.getJob(attempt.jobId);
        if (attempt.state === 'ATTEMPT_STATE_SCHEDULED') {
          if (!job || job.state === 'cancelling') {
            this.endAttempt(attempt, 'ATTEMPT_STATE_CANCELLED', 'cancelled before the node started it');
            if (job) this.setJob(job, 'cancelled', 'cancelled before the node started it');
          } else {
            this.logger.info({ nodeId, jobId: attempt.jobId, attempt: attempt.attempt }, 'start not acknowledged before the session ended; sending it again');
            this.startJob(nodeId, job, attempt.attempt);
            this.setJobMessage(job.jobId, `placed on ${nodeId} (attempt ${attempt.attempt})`);
          }
          continue;
        }
        const message = `node ${nodeId} lost attempt ${attempt.attempt}: it reconnected without it (was ${shortState(attempt.state)})`;
        this.logger.warn({ nodeId, jobId: attempt.jobId, attempt: attempt.attempt }, 'node no longer holds an attempt it had accepted; marking it lost');
        this.endAttempt(attempt, 'ATTEMPT_STATE_LOST', message);
        if (job) this.requeueAfterPreemption(job, attempt, message);
      }
    });
    this.scheduleSoon();
  }

  /** The node's current session ended. */
  disconnected(nodeId: string): void {
    this.seenSince.delete(nodeId);
    this.mutate(() => {
      const node = this.store.getNode(nodeId);
      if (!node || node.state !== 'online') return;
      this.store.setNodeState(nodeId, 'offline');
      this.store.touchNode(nodeId, this.clock.now());
      for (const a of this.store.activeAttemptsOnNode(nodeId)) {
        this.setJobMessage(a.jobId, `node ${nodeId} is offline; waiting for it to reconnect (lost after ${Math.round(this.leaseMs / 1000)} s)`);
      }
    });
    this.logger.info({ nodeId }, 'node offline');
  }

  /** Any message from the node renews its lease (stored with the next flushSeen()). */
  seen(nodeId: string): void {
    this.seenSince.set(nodeId, this.clock.now());
  }

  /** Stores the lease renewals heard since the last call, in one transaction. */
  flushSeen(): void {
    if (this.seenSince.size === 0) return;
    const batch = [...this.seenSince];
    this.seenSince.clear();
    this.store.transaction(() => {
      for (const [nodeId, ms] of batch) this.store.touchNode(nodeId, ms);
    });
  }

  /** Stores and applies one event; returns the id to acknowledge (cumulative). */
  applyEvent(nodeId: string, ev: Event__Output): { upToEventId: number; duplicate: boolean } {
    let scheduleAfter = false;
    const result = this.mutate(() => {
      const node = this.store.getNode(nodeId);
      if (!node) throw new StevedoreError('INTERNAL', `node ${nodeId} sent an event but is not stored`);
      if (ev.eventId <= node.highestEventId) {
        this.duplicateEvents++;
        this.logger.debug({ nodeId, eventId: ev.eventId, highest: node.highestEventId }, 'duplicate event dropped');
        return { upToEventId: node.highestEventId, duplicate: true };
      }
      if (ev.eventId !== node.highestEventId + 1) {
        this.logger.warn({ nodeId, eventId: ev.eventId, expected: node.highestEventId + 1 }, 'gap in event ids; the missing events will not be applied');
      }
      if (ev.progress) {
        this.applyProgress(nodeId, ev.jobId, ev.attempt, ev.progress);
        this.store.setHighestEventId(nodeId, ev.eventId);
        return { upToEventId: ev.eventId, duplicate: false };
      }
      const kind = ev.body ?? 'none';
      this.store.insertEvent({
        nodeId, eventId: ev.eventId, timeMs: ev.timeMs, jobId: ev.jobId, attempt: ev.attempt, kind,
        body: ev.body ? ev[ev.body] : null, receivedMs: this.clock.now(),
      });
      if (ev.preemptionNotice) {
        this.applyPreemptionNotice(node, ev.preemptionNotice);
        this.store.setHighestEventId(nodeId, ev.eventId);
        return { upToEventId: ev.eventId, duplicate: false };
      }
      const attempt = this.store.getAttempt(ev.jobId, ev.attempt);
      const job = this.store.getJob(ev.jobId);
      if (!attempt || !job || attempt.nodeId !== nodeId) {
        this.logger.warn({ nodeId, eventId: ev.eventId, jobId: ev.jobId, attempt: ev.attempt, kind }, 'event for an attempt this node does not run; stored, not applied');
      } else if (ev.stateChanged) {
        this.applyStateChanged(job, attempt, ev.stateChanged);
      } else if (ev.exited) {
        scheduleAfter = this.applyExited(job, attempt, ev.exited);
      } else if (ev.logs) {
        this.applyLogs(attempt, ev.logs);
      } else if (ev.checkpointCommitted) {
        this.applyCheckpointCommitted(attempt, ev.checkpointCommitted);
      } else if (ev.checkpointRestored) {
        this.applyCheckpointRestored(attempt, ev.checkpointRestored, ev.timeMs);
      } else if (ev.drainReport) {
        this.applyDrainReport(attempt, ev.drainReport);
      }
      this.store.setHighestEventId(nodeId, ev.eventId);
      return { upToEventId: ev.eventId, duplicate: false };
    });
    if (!result.duplicate) this.metrics?.event(ev.body ?? 'none');
    if (scheduleAfter) this.scheduleSoon();
    return result;
  }

  /** Keeps the newest progress of an attempt of this node; an ended attempt's is finished whatever it says. */
  private applyProgress(nodeId: string, jobId: string, attemptNo: number, p: AttemptProgress__Output): void {
    const attempt = this.store.getAttempt(jobId, attemptNo);
    if (!attempt || attempt.nodeId !== nodeId) {
      this.logger.debug({ nodeId, jobId, attempt: attemptNo }, 'progress for an attempt this node does not run; ignored');
      return;
    }
    this.progress.set(progressKey(jobId, attemptNo), { ...p, finished: p.finished || !isAttemptActive(attempt.state) });
  }

  private applyStateChanged(job: JobRecord, attempt: AttemptRecord, sc: AttemptStateChanged__Output): void {
    if (!isAttemptActive(attempt.state)) {
      this.logger.debug({ jobId: job.jobId, attempt: attempt.attempt, state: sc.state }, 'state change after the attempt ended; ignored');
      return;
    }
    const patch: Parameters<Store['updateAttempt']>[2] = { message: sc.message };
    if (ACTIVE_REPORTED_STATES.has(sc.state)) patch.state = sc.state as AttemptStateName;
    if (sc.gpuUuids.length > 0) patch.gpuUuids = sc.gpuUuids;
    if (sc.containerId) patch.containerId = sc.containerId;
    this.store.updateAttempt(attempt.jobId, attempt.attempt, patch);
    this.touched.add(job.jobId);
    if (sc.state === 'ATTEMPT_STATE_RUNNING' && job.currentAttempt === attempt.attempt && job.state === 'scheduled') {
      this.setJob(job, 'running', `running on ${attempt.nodeId}`);
    }
  }

  /** Returns true when GPUs were freed. */
  private applyExited(job: JobRecord, attempt: AttemptRecord, ex: AttemptExited__Output): boolean {
    if (!isAttemptActive(attempt.state)) {
      this.logger.debug({ jobId: job.jobId, attempt: attempt.attempt }, 'second exit of an attempt; ignored');
      return false;
    }
    const state = (EXIT_STATES.has(ex.state) ? ex.state : 'ATTEMPT_STATE_FAILED') as AttemptStateName;
    const message = describeExit(state, ex);
    this.endAttempt(attempt, state, message, ex.exitCode);
    if (job.currentAttempt === attempt.attempt && !isTerminal(job.state)) {
      if (job.state === 'cancelling') this.setJob(job, 'cancelled', `cancelled (${message})`);
      else if (state === 'ATTEMPT_STATE_SUCCEEDED') this.setJob(job, 'succeeded', message);
      else if (state === 'ATTEMPT_STATE_CANCELLED') this.setJob(job, 'cancelled', message);
      else if (state === 'ATTEMPT_STATE_PREEMPTED') {
        this.goneAt.set(`${attempt.jobId}#${attempt.attempt}`, ++this.sequence);
        this.requeueAfterPreemption(job, attempt, `${message} on ${attempt.nodeId}`);
      }
      else if (ex.error && NEVER_RETRIED.has(ex.error.code)) this.setJob(job, 'failed', `${message}; placing it again cannot help (${ex.error.code})`);
      else this.requeueAfterFailure(job, ex.exitCode, message);
    }
    this.logger.info({ jobId: job.jobId, attempt: attempt.attempt, state, exitCode: ex.exitCode }, 'attempt ended');
    return true;
  }

  private applyLogs(attempt: AttemptRecord, chunk: LogChunk__Output): void {
    for (const line of chunk.lines) {
      this.store.appendLog({ jobId: attempt.jobId, attempt: attempt.attempt, timeMs: line.timeMs, stream: line.stream || 'stdout', text: line.text });
    }
    this.touched.add(attempt.jobId);
  }

  /** A committed checkpoint exists in S3 whatever became of its attempt: it is recorded even after the attempt ended. */
  private applyCheckpointCommitted(attempt: AttemptRecord, c: CheckpointCommitted__Output): void {
    if (!c.checkpointId) {
      this.logger.warn({ jobId: attempt.jobId, attempt: attempt.attempt }, 'checkpointCommitted without a checkpointId; stored, not applied');
      return;
    }
    const added = this.store.insertCheckpoint({
      jobId: attempt.jobId,
      attempt: attempt.attempt,
      nodeId: attempt.nodeId,
      checkpointId: c.checkpointId,
      name: c.name || c.checkpointId,
      step: c.step,
      totalBytes: c.totalBytes,
      uploadedBytes: c.uploadedBytes,
      files: c.files,
      lastWriteMs: c.lastWriteMs,
      committedMs: c.committedMs,
      timeToCommitMs: c.timeToCommitMs,
      manifestKey: c.manifestKey,
    });
    if (!added) {
      this.logger.debug({ jobId: attempt.jobId, checkpointId: c.checkpointId }, 'checkpoint already recorded; the first report stands');
      return;
    }
    this.touched.add(attempt.jobId);
    this.logger.info({ jobId: attempt.jobId, attempt: attempt.attempt, checkpointId: c.checkpointId, step: c.step, timeToCommitMs: c.timeToCommitMs }, 'checkpoint committed');
  }

  private applyCheckpointRestored(attempt: AttemptRecord, r: CheckpointRestored__Output, timeMs: number): void {
    this.store.setRestore({
      jobId: attempt.jobId,
      attempt: attempt.attempt,
      checkpointId: r.checkpointId,
      step: r.checkpointId ? r.step : -1,
      bytes: r.bytes,
      durationMs: r.durationMs,
      skipped: r.skipped,
      reportedMs: timeMs || this.clock.now(),
    });
    this.touched.add(attempt.jobId);
    const fields = { jobId: attempt.jobId, attempt: attempt.attempt, checkpointId: r.checkpointId, step: r.step, skipped: r.skipped };
    if (r.skipped.length > 0) this.logger.warn(fields, 'attempt restored an older checkpoint: newer ones failed verification');
    else this.logger.info(fields, r.checkpointId ? 'attempt restored a checkpoint' : 'attempt started fresh: nothing committed');
  }

  /** The node is going away (job_id "" and attempt 0): it takes no new job; its drain reports each attempt. */
  private applyPreemptionNotice(node: NodeRecord, n: PreemptionNotice__Output): void {
    const noticeId = n.noticeId || `${n.source || 'unknown'}-${n.deadlineMs}`;
    const advisory = ADVISORY_SOURCES.has(n.source);
    const added = this.store.insertNotice({
      nodeId: node.nodeId, noticeId, source: n.source || 'unknown', kind: n.kind, deadlineMs: n.deadlineMs, receivedMs: n.receivedMs,
      storedMs: this.clock.now(), advisory, clearedMs: 0,
    });
    const fields = { nodeId: node.nodeId, noticeId, source: n.source, kind: n.kind, deadlineMs: n.deadlineMs, inMs: n.deadlineMs - this.clock.now() };
    if (!added) {
      this.logger.debug(fields, 'preemption notice already recorded');
      return;
    }
    if (advisory) {
      this.logger.info(fields, 'node reports a rebalance recommendation: it may be preempted soon; it stays eligible');
      return;
    }
    this.logger.warn(fields, 'node is going away: preemption notice; it takes no new job');
    const deadline = formatTime(n.deadlineMs);
    for (const a of this.store.activeAttemptsOnNode(node.nodeId)) {
      this.setJobMessage(a.jobId, `node ${node.nodeId} is going away (${n.source} ${n.kind || 'notice'}, deadline ${deadline}): attempt ${a.attempt} makes a final checkpoint, then the job is placed again`);
    }
  }

  /** What the drain achieved for one attempt; recorded whatever became of the attempt. */
  private applyDrainReport(attempt: AttemptRecord, d: DrainReport__Output): void {
    this.store.setDrainReport({
      jobId: attempt.jobId,
      attempt: attempt.attempt,
      nodeId: attempt.nodeId,
      noticeId: d.noticeId,
      finalCheckpointId: d.finalCheckpointId,
      finalStep: d.finalCheckpointId ? d.finalStep : -1,
      finalCheckpointIsNew: d.finalCheckpointIsNew,
      committedMs: d.committedMs,
      deadlineMs: d.deadlineMs,
      marginMs: d.marginMs,
      reportedMs: this.clock.now(),
    });
    this.touched.add(attempt.jobId);
    const fields = { jobId: attempt.jobId, attempt: attempt.attempt, nodeId: attempt.nodeId, noticeId: d.noticeId, checkpointId: d.finalCheckpointId, step: d.finalStep, isNew: d.finalCheckpointIsNew, marginMs: d.marginMs };
    if (!d.finalCheckpointId) this.logger.warn(fields, 'drain ended with no committed checkpoint: the job resumes from the start');
    else if (!d.finalCheckpointIsNew) this.logger.warn(fields, 'drain ended before the final checkpoint was committed: the job resumes from an older one');
    else this.logger.info(fields, 'drain committed the final checkpoint');
  }

  /**
   * The attempt's node went away (a preemption, or a lost node): one more
   * preemption; the job goes back to the queue to resume elsewhere unless its
   * restart policy is exhausted.
   */
  private requeueAfterPreemption(job: JobRecord, attempt: AttemptRecord, why: string): void {
    if (job.currentAttempt !== attempt.attempt || isTerminal(job.state)) return;
    if (job.state === 'cancelling') {
      this.setJob(job, 'cancelled', `cancelled (${why})`);
      return;
    }
    const policy = restartPolicy(job);
    const { preemptions } = this.store.countRestart(job.jobId, 'preemptions');
    if (preemptions > policy.maxPreemptions) {
      this.setJob(job, 'failed', `${why}; that is preemption ${preemptions} and the restart policy allows ${policy.maxPreemptions} (restart.maxPreemptions): raise it to let the job resume again`);
      this.logger.warn({ jobId: job.jobId, attempt: attempt.attempt, preemptions }, 'job failed: too many preemptions');
      return;
    }
    this.setJob(job, 'queued', `${why}; placing it again to resume from its newest committed checkpoint (preemption ${preemptions} of max ${policy.maxPreemptions})`);
    this.logger.info({ jobId: job.jobId, attempt: attempt.attempt, nodeId: attempt.nodeId, preemptions }, 'job re-queued after a preemption');
  }

  /** The current attempt failed: re-queued when its exit code is retryable and failures are left, else the job fails. */
  private requeueAfterFailure(job: JobRecord, exitCode: number, message: string): void {
    const policy = restartPolicy(job);
    const { failures } = this.store.countRestart(job.jobId, 'failures');
    if (!policy.retryableExitCodes.includes(exitCode)) {
      this.setJob(job, 'failed', message);
      return;
    }
    if (failures > policy.maxFailures) {
      this.setJob(job, 'failed', `${message}; that is failure ${failures} and the restart policy allows ${policy.maxFailures} (restart.maxFailures)`);
      return;
    }
    this.setJob(job, 'queued', `${message}, which is retryable: placing it again to resume from its newest committed checkpoint (failure ${failures} of max ${policy.maxFailures})`);
    this.logger.info({ jobId: job.jobId, exitCode, failures }, 'job re-queued after a retryable failure');
  }

  commandAck(nodeId: string, ack: CommandAck__Output): void {
    let scheduleAfter = false;
    this.mutate(() => {
      const cmd = this.store.getCommand(ack.commandId);
      if (!cmd || cmd.nodeId !== nodeId) {
        this.logger.warn({ nodeId, commandId: ack.commandId }, 'acknowledgement of a command this node was not sent; ignored');
        return;
      }
      if (cmd.kind !== 'startJob') {
        if (!ack.accepted) this.logger.warn({ nodeId, commandId: cmd.commandId, kind: cmd.kind, error: ack.error }, 'node refused a command');
        return;
      }
      const attempt = this.store.getAttempt(cmd.jobId, cmd.attempt);
      const job = this.store.getJob(cmd.jobId);
      if (!attempt || !job || !isAttemptActive(attempt.state)) return;
      if (ack.accepted) {
        if (attempt.state === 'ATTEMPT_STATE_SCHEDULED') {
          this.store.updateAttempt(attempt.jobId, attempt.attempt, { state: 'ATTEMPT_STATE_ACCEPTED' });
          this.touched.add(job.jobId);
        }
        return;
      }
      const code = ack.error?.code ?? '';
      const reason = ack.error?.message || 'no reason given';
      const message = `${nodeId} refused attempt ${attempt.attempt}${code ? ` (${code})` : ''}: ${reason}`;
      this.logger.warn({ nodeId, jobId: job.jobId, attempt: attempt.attempt, code }, 'node refused a job');
      this.endAttempt(attempt, 'ATTEMPT_STATE_FAILED', reason);
      scheduleAfter = true;
      if (job.currentAttempt !== attempt.attempt || isTerminal(job.state)) return;
      if (job.state === 'cancelling') {
        this.setJob(job, 'cancelled', `cancelled (${message})`);
      } else if (REQUEUE_CODES.has(code) && job.state === 'scheduled') {
        if (code === 'NODE_DRAINING') this.store.setNodeDraining(nodeId, true);
        else this.avoid.set(job.jobId, { nodeId, untilMs: this.clock.now() + Math.max(this.heartbeatIntervalMs, 1000) });
        this.setJob(job, 'queued', `${message}; placing it again`);
      } else {
        this.setJob(job, 'failed', message);
      }
    });
    if (scheduleAfter) this.scheduleSoon();
  }

  // ---------------------------------------------------------------- placement and leases

  /** Places queued jobs on online nodes; jobs that fit nowhere get a message saying why. */
  schedule(): void {
    const queued = this.store.queuedJobs();
    if (queued.length === 0) return;
    const now = this.clock.now();
    for (const [jobId, a] of this.avoid) if (a.untilMs <= now) this.avoid.delete(jobId);
    const nodes = this.capacities();
    const pending: PendingJob[] = queued.map((j) => {
      const a = this.avoid.get(j.jobId);
      const gone = this.goneFrom(j);
      return {
        jobId: j.jobId,
        gpus: j.spec.resources.gpus,
        ...(a ? { avoid: new Set([a.nodeId]) } : {}),
        ...(gone?.exclude ? { exclude: new Set([gone.exclude]) } : {}),
        ...(gone ? { awayFrom: gone.location } : {}),
      };
    });
    const plan = planPlacement(pending, nodes);
    const queuedById = new Map(queued.map((j) => [j.jobId, j]));
    const pendingById = new Map(pending.map((j) => [j.jobId, j]));
    /** Queue waits of the placements, reported once they are committed. */
    const waits: number[] = [];
    this.mutate(() => {
      for (const { jobId, nodeId } of plan.placed) {
        const job = this.store.getJob(jobId);
        if (!job || job.state !== 'queued') continue;
        const attempt = job.currentAttempt + 1;
        // Queued since its submission, or since its previous attempt ended.
        const previous = job.currentAttempt > 0 ? this.store.getAttempt(jobId, job.currentAttempt) : undefined;
        waits.push(now - Math.max(job.createdMs, previous?.endedMs ?? 0));
        this.store.insertAttempt({
          jobId, attempt, nodeId, state: 'ATTEMPT_STATE_SCHEDULED', gpuUuids: [], exitCode: null,
          message: '', containerId: '', startedMs: now, endedMs: 0,
        });
        this.store.updateJob(jobId, { currentAttempt: attempt }, now);
        const node = this.store.getNode(nodeId);
        this.store.setPlacement({ jobId, attempt, hostname: node?.hostname ?? nodeId, zone: node?.labels.zone ?? '', region: node?.labels.region ?? '' });
        job.currentAttempt = attempt;
        this.setJob(job, 'scheduled', `placed on ${nodeId} (attempt ${attempt})`);
        this.avoid.delete(jobId);
        this.startJob(nodeId, job, attempt);
        this.logger.info({ jobId, attempt, nodeId }, 'job placed');
      }
      for (const { jobId, message } of plan.waiting) {
        const job = queuedById.get(jobId);
        if (!job) continue;
        const gone = pendingById.get(jobId)?.awayFrom ? this.store.getAttempt(jobId, job.currentAttempt) : undefined;
        const full = gone ? `${message} (to resume: attempt ${gone.attempt} was ${shortState(gone.state)} on ${gone.nodeId})` : message;
        if (job.message !== full) this.setJobMessage(jobId, full);
      }
    });
    for (const wait of waits) this.metrics?.placed(wait);
  }

  /**
   * What placement needs of each node that can take a job now (online, with
   * a session, neither draining nor preempting): the same figures as
   * listNodes() gives, computed without building a full view of every node
   * (a pass runs once per flush while jobs arrive; with thousands of nodes
   * the views cost more than the rest of the pass).
   */
  private capacities(): NodeCapacity[] {
    const preempting = this.store.preemptingNodes();
    const gpusOf = this.jobGpuLookup();
    const holds = new Map<string, { held: Set<string>; unconfirmed: number; count: number }>();
    for (const a of this.store.activeAttemptHolds()) {
      let h = holds.get(a.nodeId);
      if (!h) {
        h = { held: new Set(), unconfirmed: 0, count: 0 };
        holds.set(a.nodeId, h);
      }
      h.count++;
      // GPUs held by attempts the agent has not confirmed yet count by number.
      if (a.gpuUuids.length === 0) h.unconfirmed += gpusOf(a.jobId);
      else for (const uuid of a.gpuUuids) h.held.add(uuid);
    }
    const out: NodeCapacity[] = [];
    for (const node of this.store.nodeRecords()) {
      if (node.state !== 'online' || node.draining || preempting.has(node.nodeId) || !this.sink.isOnline(node.nodeId)) continue;
      const latest = this.gpuHealth.get(node.nodeId);
      const h = holds.get(node.nodeId);
      let healthy = 0;
      let free = 0;
      let unhealthy: string[] | undefined;
      for (const g of node.inventory?.gpus ?? []) {
        const health = latest?.get(g.uuid) ?? g.health;
        if (health?.healthy === false) {
          (unhealthy ??= []).push(`GPU ${g.index} (${g.uuid}): ${health.problems.join('; ') || 'not healthy'}`);
          continue;
        }
        healthy++;
        if (!h?.held.has(g.uuid)) free++;
      }
      out.push({
        nodeId: node.nodeId,
        freeGpus: Math.max(0, free - (h?.unconfirmed ?? 0)),
        healthyGpus: healthy,
        unhealthy: unhealthy ?? [],
        activeAttempts: h?.count ?? 0,
        zone: node.labels.zone ?? '',
        region: node.labels.region ?? '',
      });
    }
    return out;
  }

  /**
   * For a job whose last attempt was preempted or lost: where that was (to
   * prefer another zone) and the node itself unless it registered since.
   */
  private goneFrom(job: JobRecord): { location: Location; exclude: string | undefined } | undefined {
    if (job.currentAttempt === 0) return undefined;
    const last = this.store.getAttempt(job.jobId, job.currentAttempt);
    if (!last || (last.state !== 'ATTEMPT_STATE_PREEMPTED' && last.state !== 'ATTEMPT_STATE_LOST')) return undefined;
    const placed = this.store.placementsOfJob(job.jobId).get(last.attempt);
    const labels = this.store.getNode(last.nodeId)?.labels ?? {};
    const location = { zone: placed?.zone ?? labels.zone ?? '', region: placed?.region ?? labels.region ?? '' };
    // Not known when it went away: before this coordinator started, so any registration since is later.
    const registered = this.registeredAt.get(last.nodeId);
    const gone = this.goneAt.get(`${last.jobId}#${last.attempt}`);
    const back = registered !== undefined && (gone === undefined || registered > gone);
    return { location, exclude: back ? undefined : last.nodeId };
  }

  /** Marks nodes lost whose lease ran out; places jobs held back by a recent refusal. */
  tick(): void {
    this.flushSeen();
    const now = this.clock.now();
    let lost = false;
    for (const node of this.store.nodeLeases()) {
      if (node.state === 'lost') continue;
      const since = Math.max(node.lastSeenMs, this.startedMs);
      if (now - since <= this.leaseMs) continue;
      const seconds = Math.round((now - since) / 1000);
      this.mutate(() => {
        this.store.setNodeState(node.nodeId, 'lost');
        // The node is gone as far as anyone can tell: its attempts resume elsewhere. If it comes
        // back still holding one, reconciliation stops it (the attempt is LOST, or superseded).
        for (const a of this.store.activeAttemptsOnNode(node.nodeId)) {
          const message = `node ${node.nodeId} was lost with attempt ${a.attempt}: nothing heard from it for ${seconds} s`;
          this.endAttempt(a, 'ATTEMPT_STATE_LOST', message);
          this.goneAt.set(`${a.jobId}#${a.attempt}`, ++this.sequence);
          const job = this.store.getJob(a.jobId);
          if (job) this.requeueAfterPreemption(job, a, message);
        }
      });
      this.logger.warn({ nodeId: node.nodeId, silentMs: now - since }, 'node lost: lease expired');
      this.sink.disconnect(node.nodeId, `no heartbeat from ${node.nodeId} for ${seconds} s (lease ${Math.round(this.leaseMs / 1000)} s); reconnect and register again`);
      lost = true;
    }
    let expired = lost;
    for (const a of this.avoid.values()) if (a.untilMs <= now) expired = true;
    if (expired) this.scheduleSoon();
  }
}

/** The job's restart policy; jobs stored before it existed have the defaults. */
/** Refusals of the job itself: another attempt, on any node, gets the same answer, whatever the restart policy. */
const NEVER_RETRIED: ReadonlySet<string> = new Set(['SPEC_INVALID', 'SPEC_FORBIDDEN']);

/** An ISO time, or the raw number when it is outside what a Date can hold (a hostile or broken notice). */
function formatTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? `${ms} ms since the epoch` : d.toISOString();
}

export function restartPolicy(job: JobRecord): RestartPolicy {
  const stored: Partial<JobSpec> = job.spec;
  return stored.restart ?? DEFAULT_RESTART;
}

/** Whether an attempt resumes from the newest committed checkpoint: every one after the first. */
export function isResume(attempt: number): boolean {
  return attempt > 1;
}

/** Whether two reports of one GPU's health agree on everything but the readings (temperature, time). */
function sameHealth(a: GpuHealth__Output | undefined, b: GpuHealth__Output): boolean {
  return a !== undefined && a.healthy === b.healthy && a.problems.join('\n') === b.problems.join('\n') && a.xids.join(',') === b.xids.join(',');
}

function shortState(state: AttemptStateName): string {
  return state.replace('ATTEMPT_STATE_', '').toLowerCase();
}

function describeExit(state: AttemptStateName, ex: AttemptExited__Output): string {
  if (ex.error?.message) return `${ex.error.message}${ex.error.code ? ` [${ex.error.code}]` : ''}`;
  if (ex.oomKilled) return `killed: out of memory (exit code ${ex.exitCode}); ask for more memory in resources.memory`;
  if (state === 'ATTEMPT_STATE_SUCCEEDED') return 'succeeded (exit code 0)';
  if (state === 'ATTEMPT_STATE_CANCELLED') return `stopped on request (exit code ${ex.exitCode})`;
  if (state === 'ATTEMPT_STATE_PREEMPTED') return 'preempted: stopped after its final checkpoint because its node is going away';
  return `exited with code ${ex.exitCode}`;
}
