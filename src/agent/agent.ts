// The agent: ties the session, the attempts, the engine and the local API
// together. Start-up reconciles what is on disk and in the engine before the
// first registration, so the coordinator hears the truth from the start.
import type { Command__Output } from '../gen/stevedore/v1/Command.ts';
import type { Register } from '../gen/stevedore/v1/Register.ts';
import type { ContainerEngine, ContainerInfo, RegistryAuth } from '../engine/container-engine.ts';
// First, before anything that loads prom-client (see the module).
import './deferred-modules.ts';
import { DockerEngine } from '../engine/docker-engine.ts';
import { timestampKey } from '../engine/log-stream.ts';
import { PROTOCOL_VERSION, type AgentStatus, type Inventory } from '../proto/load.ts';
import { checkSecurityPolicy, DEFAULT_SECURITY_POLICY, fromSpecMessage } from '../spec/job-spec.ts';
import { systemClock, type Clock } from '../util/clock.ts';
import { isStevedoreError, messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import { VERSION } from '../version.ts';
import type { AgentConfig } from './agent-config.ts';
import { AttemptLedger, type AttemptRecord } from './attempt-ledger.ts';
import { AttemptRunner, containerName, LABELS } from './attempt-runner.ts';
import { isTerminal, toWireState } from './attempt-state.ts';
import { CoordinatorSession, type CommandResult } from './coordinator-session.ts';
import { EventJournal } from './event-journal.ts';
import { GpuAllocator } from './gpu-allocator.ts';
import { GpuHealthMonitor } from './gpu-health-monitor.ts';
import { GPU_HEALTH_DEFAULTS } from './agent-config.ts';
import { collectInventory } from './inventory/host.ts';
import { attemptKey, checkJobId, JobPaths, prepareHostMounts, resolveDevices } from './job-paths.ts';
import { LocalApi } from './local-api.ts';
import type { Notice, PreemptionDetector } from '../preemption/notice.ts';
import { extendStopWhile } from './systemd.ts';
import { createDetector } from '../preemption/detectors.ts';
import type { CheckpointServices } from './attempt-checkpoints.ts';
import type { DataServices } from './attempt-runner.ts';
import { InputCache } from '../data/input-cache.ts';
import { ByteBudget } from '../checkpoint/byte-budget.ts';
import { S3ObjectStore } from '../storage/s3-object-store.ts';
import { parseS3Url, type ObjectStore } from '../storage/object-store.ts';
import type { CheckpointSpec } from '../spec/job-spec.ts';
import { StevedoreError } from '../util/errors.ts';
import { loadOrCreateNodeId } from './node-identity.ts';
import { AgentMetrics } from './agent-metrics.ts';
import { StatusHttpServer, type ReadinessCheck } from '../util/status-http-server.ts';
import path from 'node:path';

export interface AgentOptions {
  config: AgentConfig;
  logger: Logger;
  clock?: Clock;
  engine?: ContainerEngine;
}

export class Agent {
  readonly nodeId: string;
  private readonly config: AgentConfig;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly engine: ContainerEngine;
  private readonly journal: EventJournal;
  private readonly ledger: AttemptLedger;
  private readonly paths: JobPaths;
  private allocator = new GpuAllocator([]);
  private inventory: Inventory = {};
  private readonly runners = new Map<string, AttemptRunner>();
  private session: CoordinatorSession | undefined;
  private gpuHealth: GpuHealthMonitor | undefined;
  private localApi: LocalApi | undefined;
  private detector: PreemptionDetector | undefined;
  private draining = false;
  private readonly notices = new Map<string, Promise<void>>();
  private closing: Promise<void> | undefined;
  /** Container removals after acknowledged ends, one at a time. */
  private cleanup: Promise<void> = Promise.resolve();
  private readonly checkpointServices: CheckpointServices;
  private readonly dataServices: DataServices;
  private readonly stores = new Map<string, ObjectStore>();
  private readonly metrics: AgentMetrics;
  private statusServer: StatusHttpServer | undefined;

  private constructor(opts: AgentOptions) {
    this.config = opts.config;
    this.clock = opts.clock ?? systemClock;
    this.nodeId = loadOrCreateNodeId(opts.config.stateDir);
    this.logger = opts.logger.child({ nodeId: this.nodeId });
    this.engine = opts.engine ?? new DockerEngine({ ...(opts.config.dockerHost ? { dockerHost: opts.config.dockerHost } : {}) });
    this.journal = EventJournal.open(path.join(opts.config.stateDir, 'journal'), { logger: this.logger });
    this.ledger = new AttemptLedger(opts.config.stateDir, this.logger);
    this.paths = new JobPaths(opts.config.workRoot, opts.config.stateDir);
    this.metrics = new AgentMetrics(
      {
        attemptStates: () => this.ledger.all().map((r) => r.state),
        gpus: () => ({ total: this.allocator.total, allocated: this.allocator.allocated().size, unhealthy: (this.inventory.gpus ?? []).filter((g) => g.health && !g.health.healthy).length }),
        eventsPending: () => this.journal.pending().length,
        sessionConnected: () => this.session?.state === 'connected',
        sessionReconnects: () => this.session?.reconnects ?? 0,
      },
      { version: VERSION },
    );
    this.journal.onAppend((e) => this.metrics.journaled(e));
    const mib = 1024 * 1024;
    this.checkpointServices = {
      storeFor: (spec) => this.storeFor(spec),
      budget: new ByteBudget(opts.config.checkpoints.maxInFlightMiB * mib, { clock: this.clock }),
      partSizeBytes: opts.config.checkpoints.partSizeMiB * mib,
      rescanMs: opts.config.checkpoints.rescanSeconds * 1000,
      metrics: this.metrics,
    };
    this.dataServices = {
      inputs: new InputCache({
        dir: path.join(opts.config.stateDir, 'cache'),
        storeFor: (endpoint, bucket) => this.objectStore('input', endpoint, bucket),
        logger: this.logger,
        clock: this.clock,
      }),
      outputFor: (spec) => this.destination('output', spec.endpoint, spec.destination),
      partSizeBytes: opts.config.checkpoints.partSizeMiB * mib,
    };
  }

  private storeFor(spec: CheckpointSpec): { store: ObjectStore; prefix: string } {
    return this.destination('checkpoint', spec.endpoint, spec.destination);
  }

  /** The store and prefix of an s3:// destination of a job spec section. */
  private destination(section: string, endpoint: string, url: string): { store: ObjectStore; prefix: string } {
    const parsed = parseS3Url(url);
    if (!parsed) throw new StevedoreError('SPEC_INVALID', `${section}.destination ${url} is not an S3 URL`);
    return { store: this.objectStore(section, endpoint, parsed.bucket), prefix: parsed.prefix };
  }

  /** One client per endpoint and bucket, shared by the jobs that use them. */
  private objectStore(section: string, endpointName: string, bucket: string): ObjectStore {
    const endpoint = this.config.s3.endpoints[endpointName];
    if (!endpoint) throw new StevedoreError('SPEC_INVALID', `${section}.endpoint "${endpointName}" is not configured on this node: add s3.endpoints.${endpointName} to its agent.yaml (docs/configuration.md)`);
    const key = `${endpointName}/${bucket}`;
    let store = this.stores.get(key);
    if (!store) {
      store = new S3ObjectStore({ bucket, config: endpoint, logger: this.logger });
      this.stores.set(key, store);
    }
    return store;
  }

  static async start(opts: AgentOptions): Promise<Agent> {
    const agent = new Agent(opts);
    try {
      await agent.init();
    } catch (err) {
      await agent.close();
      throw err;
    }
    return agent;
  }

  /** host:port of the /metrics, /livez and /readyz server, once it listens; undefined when turned off. */
  get metricsAddress(): string | undefined {
    return this.statusServer?.address;
  }

  private async init(): Promise<void> {
    // First, so that /livez answers while the rest starts and /readyz says what is missing.
    if (this.config.metrics.listen) {
      this.statusServer = await StatusHttpServer.start({ listen: this.config.metrics.listen, registry: this.metrics.registry, readiness: () => this.readiness(), logger: this.logger });
    }
    await this.engine.ping();
    this.inventory = await collectInventory({ workRoot: this.config.workRoot, nvidiaSmiPath: this.config.nvidiaSmiPath });
    if (this.config.nodeName) this.inventory.hostname = this.config.nodeName;
    this.allocator = new GpuAllocator((this.inventory.gpus ?? []).map((g) => g.uuid ?? ''), (uuid) => this.gpuHealth?.unhealthyReason(uuid));
    await this.startGpuHealth();
    this.logger.info({ gpus: this.allocator.total, cpus: this.inventory.cpuCores, version: VERSION }, 'agent starting');
    await this.reconcile();
    this.localApi = new LocalApi(this.config.socketPath, () => this.status(), this.logger);
    await this.localApi.start(this.config.socketGroup);
    this.session = new CoordinatorSession({
      address: this.config.coordinator.address,
      tls: this.config.coordinator.tls,
      journal: this.journal,
      clock: this.clock,
      logger: this.logger,
      reconnect: this.config.reconnect,
      buildRegister: () => Promise.resolve(this.registration()),
      onCommand: (command) => this.onCommand(command),
      onEventsAcked: (upTo) => this.onEventsAcked(upTo),
      runningAttempts: () => this.ledger.all().filter((r) => !isTerminal(r.state)).length,
      gpuHealth: () => this.gpuHealth?.current() ?? [],
    });
    this.session.start();
    // After the session: a notice must be reported, so there must be someone to tell.
    this.detector = await createDetector(this.config.preemption, { clock: this.clock, logger: this.logger, ...(this.config.nodeName ? { vmName: this.config.nodeName } : {}) });
    if (this.detector) {
      this.logger.info({ cloud: this.detector.cloud }, 'watching for preemption notices');
      this.detector.start((notice) => void this.onNotice(notice));
    }
  }

  /**
   * Brings the ledger and the engine into agreement after a start: our
   * containers without a record get one rebuilt from their labels, every
   * unfinished attempt gets its runner back, ends already acknowledged are
   * cleaned up. Containers of other agents are never looked at.
   */
  private async reconcile(): Promise<void> {
    const containers = await this.engine.list({ [LABELS.managed]: 'true', [LABELS.nodeId]: this.nodeId });
    for (const info of containers) {
      const jobId = info.labels[LABELS.jobId] ?? '';
      const attempt = Number(info.labels[LABELS.attempt]);
      if (!jobId || !Number.isInteger(attempt)) continue;
      if (!this.ledger.get(jobId, attempt)) this.ledger.put(recordFromContainer(info, jobId, attempt, this.clock.now()));
    }
    // What the journal holds beyond the ledger: a crash can fall between the
    // two writes, and the journal is written first.
    const pendingExits = new Map<string, number>();
    const pendingCursors = new Map<string, string>();
    for (const event of this.journal.pending()) {
      const key = attemptKey(event.jobId, event.attempt);
      if ('exited' in event.body) pendingExits.set(key, event.eventId);
      if ('logs' in event.body && event.body.logs.cursor) pendingCursors.set(key, event.body.logs.cursor);
    }
    for (const record of this.ledger.all()) {
      const key = attemptKey(record.jobId, record.attempt);
      const cursor = pendingCursors.get(key);
      if (cursor && (!record.logCursor || timestampKey(cursor) > timestampKey(record.logCursor))) {
        this.ledger.update(record.jobId, record.attempt, { logCursor: cursor });
      }
      const exitEventId = pendingExits.get(key);
      if (!isTerminal(record.state) && exitEventId !== undefined) {
        // The end was journaled but the ledger write did not happen.
        this.ledger.update(record.jobId, record.attempt, { state: 'FAILED', exitEventId });
        continue;
      }
      if (isTerminal(record.state)) continue;
      this.allocator.adopt(key, record.gpuUuids);
      this.startRunner(record.jobId, record.attempt);
    }
    this.onEventsAcked(this.journal.ackedEventId);
    this.logger.info({ containers: containers.length, attempts: this.ledger.all().length }, 'reconciled with the engine');
  }

  private startRunner(jobId: string, attempt: number): AttemptRunner {
    const runner = new AttemptRunner(
      {
        nodeId: this.nodeId,
        engine: this.engine,
        journal: this.journal,
        ledger: this.ledger,
        allocator: this.allocator,
        paths: this.paths,
        clock: this.clock,
        logger: this.logger,
        registryAuth: (image) => this.registryAuth(image),
        pullInactivityTimeoutMs: this.config.pullInactivityTimeoutSeconds * 1000,
        checkpoints: this.checkpointServices,
        data: this.dataServices,
        security: this.config.security ?? DEFAULT_SECURITY_POLICY,
      },
      jobId,
      attempt,
    );
    this.runners.set(runner.key, runner);
    void runner.run();
    return runner;
  }

  /**
   * Checks GPU health before the first registration, then every
   * gpuHealth.intervalSeconds. A change goes to the coordinator at once, in
   * a heartbeat sent out of turn.
   */
  private async startGpuHealth(): Promise<void> {
    const gpus = this.inventory.gpus ?? [];
    if (gpus.length === 0) return;
    this.gpuHealth = new GpuHealthMonitor({
      gpus: gpus.map((g) => ({ index: g.index ?? 0, uuid: g.uuid ?? '', name: g.name ?? '', memoryMib: Number(g.memoryMib ?? 0), driverVersion: g.driverVersion ?? '', pciBusId: g.pciBusId ?? '' })),
      config: this.config.gpuHealth ?? GPU_HEALTH_DEFAULTS,
      nvidiaSmiPath: this.config.nvidiaSmiPath,
      clock: this.clock,
      logger: this.logger,
      onChange: () => {
        this.applyGpuHealth();
        this.session?.heartbeatNow();
      },
    });
    await this.gpuHealth.start();
    this.applyGpuHealth();
  }

  /** Copies the current GPU health into the inventory (registration, local status). */
  private applyGpuHealth(): void {
    if (!this.gpuHealth) return;
    const health = new Map(this.gpuHealth.current().map((h) => [h.uuid, h]));
    for (const gpu of this.inventory.gpus ?? []) gpu.health = health.get(gpu.uuid ?? '') ?? null;
  }

  private registration(): Register {
    this.applyGpuHealth();
    return {
      nodeId: this.nodeId,
      agentVersion: VERSION,
      protocolVersion: PROTOCOL_VERSION,
      inventory: this.inventory,
      labels: this.config.labels,
      attempts: this.ledger.all().map(attemptStatus),
      lastEventId: this.journal.lastEventId,
    };
  }

  private async onCommand(command: Command__Output): Promise<CommandResult> {
    if (this.closing) return refuse('NODE_DRAINING', 'agent is shutting down');
    try {
      switch (command.body) {
        case 'startJob':
          return this.startJob(command.startJob);
        case 'stopJob': {
          const stop = command.stopJob;
          const runner = stop ? this.runners.get(attemptKey(stop.jobId, stop.attempt)) : undefined;
          if (runner) await runner.requestStop(stop?.reason || 'stop requested by the coordinator');
          return { accepted: true };
        }
        case 'drain': {
          this.draining = true;
          const deadlineMs = command.drain?.deadlineMs ?? 0;
          this.logger.warn({ reason: command.drain?.reason, deadlineMs }, 'draining: no new jobs accepted');
          if (deadlineMs > 0) {
            const now = this.clock.now();
            void this.onNotice({ id: `coordinator-${command.commandId}`, source: 'coordinator', kind: command.drain?.reason || 'drain', deadlineMs, receivedMs: now, advisory: false });
          }
          return { accepted: true };
        }
        default:
          return refuse('SESSION_PROTOCOL', `command ${command.commandId} carries no known instruction`);
      }
    } catch (err) {
      if (isStevedoreError(err)) return refuse(err.code, err.message);
      this.logger.error({ err }, 'command failed');
      return refuse('INTERNAL', messageOf(err));
    }
  }

  private startJob(start: Command__Output['startJob']): CommandResult {
    if (!start) return refuse('SESSION_PROTOCOL', 'startJob without a body');
    checkJobId(start.jobId);
    if (!Number.isInteger(start.attempt) || start.attempt < 1) return refuse('SESSION_PROTOCOL', `attempt must be 1 or more, got ${start.attempt}`);
    // Idempotent: the coordinator resends a start it has no answer for.
    if (this.ledger.get(start.jobId, start.attempt)) return { accepted: true };
    if (this.draining) return refuse('NODE_DRAINING', 'this node is draining and takes no new jobs');
    const spec = fromSpecMessage(start.spec);
    // Refuse now, with the reason, what could only fail later.
    if (spec.checkpoint) this.storeFor(spec.checkpoint);
    if (spec.output) this.destination('output', spec.output.endpoint, spec.output.destination);
    if (spec.input?.url.startsWith('s3://')) this.objectStore('input', spec.input.endpoint, spec.input.url.slice(5).split('/')[0] ?? '');
    // SPEC_FORBIDDEN for more than this node allows: the coordinator fails the job, it does not retry it.
    const security = this.config.security ?? DEFAULT_SECURITY_POLICY;
    checkSecurityPolicy(spec, security);
    prepareHostMounts(spec.hostMounts ?? [], security);
    resolveDevices(spec.devices ?? [], security);
    this.paths.prepareMounts(start.jobId, spec.mounts);
    const key = attemptKey(start.jobId, start.attempt);
    const gpuUuids = this.allocator.allocate(key, spec.resources.gpus);
    try {
      this.ledger.put({
        jobId: start.jobId,
        attempt: start.attempt,
        spec,
        state: 'ACCEPTED',
        gpuUuids,
        containerName: containerName(this.nodeId, start.jobId, start.attempt),
        containerId: '',
        acceptedAtMs: this.clock.now(),
        startedAtMs: 0,
        endedAtMs: 0,
        exitCode: null,
        stopRequested: false,
        exitEventId: 0,
        message: 'accepted',
        stopSignal: spec.stopSignal,
        stopGraceSeconds: spec.stopGraceSeconds,
        logCursor: '',
        resume: start.resume,
      });
    } catch (err) {
      this.allocator.release(key);
      throw err;
    }
    this.journal.append({
      timeMs: this.clock.now(),
      jobId: start.jobId,
      attempt: start.attempt,
      body: { stateChanged: { state: toWireState('ACCEPTED'), message: `accepted on ${this.inventory.hostname ?? this.nodeId}`, gpuUuids, containerId: '' } },
    });
    this.logger.info({ jobId: start.jobId, attempt: start.attempt, image: spec.image, gpus: gpuUuids }, 'job accepted');
    this.startRunner(start.jobId, start.attempt);
    return { accepted: true };
  }

  /**
   * The node is going away. In order, each step logged with its timing: tell
   * the coordinator, ask every job for its final checkpoint and give it until
   * the deadline minus the safety margin to become durable, stop the
   * containers and report, then acknowledge the notice where the cloud wants
   * it. A notice seen again is the same notice.
   */
  onNotice(notice: Notice): Promise<void> {
    const known = this.notices.get(notice.id);
    if (known) return known;
    const run = this.drain(notice);
    this.notices.set(notice.id, run);
    return run;
  }

  /** What /readyz reports: the engine answers, the local API is up, the session is registered. */
  private async readiness(): Promise<ReadinessCheck[]> {
    const timeout = new AbortController();
    const engine = await Promise.race([
      this.engine.ping().then(() => ({ ready: true, detail: 'answered a ping' }), (err: unknown) => ({ ready: false, detail: messageOf(err) })),
      this.clock.sleep(READY_PING_TIMEOUT_MS, timeout.signal).then(() => ({ ready: false, detail: `no answer to a ping within ${READY_PING_TIMEOUT_MS} ms` }), () => ({ ready: false, detail: 'check cancelled' })),
    ]);
    timeout.abort();
    const state = this.session?.state ?? 'not started';
    return [
      { name: 'engine', ...engine },
      { name: 'localApi', ready: this.localApi !== undefined && !this.closing, detail: this.localApi && !this.closing ? `listening on ${this.config.socketPath}` : 'not listening' },
      {
        name: 'session',
        ready: state === 'connected' && !this.closing,
        detail: state === 'connected' ? `registered with ${this.config.coordinator.address}` : `${state}${this.session?.lastError ? `: ${this.session.lastError}` : ''}`,
      },
    ];
  }

  private async drain(notice: Notice): Promise<void> {
    const t0 = this.clock.now();
    const step = (what: string, extra: object = {}): void => {
      this.logger.warn({ noticeId: notice.id, source: notice.source, elapsedMs: this.clock.now() - t0, leftMs: notice.deadlineMs - this.clock.now(), ...extra }, `drain: ${what}`);
    };
    this.journal.append({
      timeMs: t0,
      jobId: '',
      attempt: 0,
      body: { preemptionNotice: { noticeId: notice.id, source: notice.source, kind: notice.kind, deadlineMs: notice.deadlineMs, receivedMs: notice.receivedMs } },
    });
    step(notice.advisory ? 'advisory notice reported; nothing else to do' : '1/5 notice reported to the coordinator', { kind: notice.kind, deadlineMs: notice.deadlineMs });
    if (notice.advisory) return;
    this.draining = true;
    const stopExtending = extendStopWhile(this.logger);
    try {
      const marginMs = this.config.preemption.safetyMarginSeconds * 1000;
      const runners = [...this.runners.values()].filter((r) => this.ledger.get(r.jobId, r.attempt) && !isTerminal(r.record.state));
      step(`2/5 asking ${runners.length} job(s) for a final checkpoint; 3/5 uploads in drain mode`, { jobs: runners.map((r) => r.key) });
      await Promise.all(runners.map((r) => r.preempt(notice, marginMs)));
      step('4/5 containers stopped; making the final checkpoints durable');
      await Promise.all(runners.map((r) => r.run()));
      step('5/5 final checkpoints reported', {
        attempts: runners.map((r) => ({ attempt: r.key, state: this.ledger.get(r.jobId, r.attempt)?.state ?? 'reported' })),
      });
      if (this.detector && notice.source === this.detector.cloud) {
        await this.detector.acknowledge(notice).then(
          () => step('notice acknowledged to the cloud'),
          (err: unknown) => this.logger.error({ err }, 'acknowledging the notice failed'),
        );
      }
    } finally {
      stopExtending();
      this.metrics.drained(this.clock.now() - t0);
    }
  }

  /** Gives the session a moment to deliver what is journaled (the end of a drain above all); the journal keeps the rest. */
  private async flushEvents(timeoutMs: number): Promise<void> {
    const until = this.clock.now() + timeoutMs;
    while (this.journal.pending().length > 0 && this.session?.state === 'connected' && this.clock.now() < until) {
      await this.clock.sleep(50);
    }
  }

  /** The coordinator holds every event up to `upTo`: ended attempts can go. */
  private onEventsAcked(upTo: number): void {
    // Past its own last id the journal follows an ack (a replaced state directory), but ids beyond
    // 2^53 are no longer exact: every later event would share one id and all but the first be lost.
    if (upTo > MAX_ACKED_EVENT_ID && upTo > this.journal.lastEventId) {
      this.logger.error({ ackedEventId: upTo, lastEventId: this.journal.lastEventId }, `the coordinator acknowledged event ${upTo}, beyond any id this agent could assign (at most 2^52); ignored: check the coordinator's database (events table) for this node`);
      return;
    }
    this.journal.ack(upTo);
    const done = this.ledger.all().filter((r) => isTerminal(r.state) && r.exitEventId > 0 && r.exitEventId <= this.journal.ackedEventId);
    for (const record of done) {
      this.cleanup = this.cleanup.then(() => this.removeAttempt(record));
    }
  }

  private async removeAttempt(record: AttemptRecord): Promise<void> {
    const key = attemptKey(record.jobId, record.attempt);
    if (!this.ledger.get(record.jobId, record.attempt)) return;
    try {
      if (record.containerId) await this.engine.remove(record.containerId);
      else {
        const leftover = await this.engine.list({ [LABELS.nodeId]: this.nodeId, [LABELS.jobId]: record.jobId, [LABELS.attempt]: String(record.attempt) });
        for (const c of leftover) await this.engine.remove(c.id);
      }
      this.ledger.delete(record.jobId, record.attempt);
      await this.runners.get(key)?.detach();
      this.runners.delete(key);
      this.logger.info({ jobId: record.jobId, attempt: record.attempt }, 'attempt reported and its container removed');
    } catch (err) {
      this.logger.warn({ err, jobId: record.jobId, attempt: record.attempt }, 'could not remove the container yet; will try after the next acknowledgement');
    }
  }

  private registryAuth(image: string): RegistryAuth | undefined {
    const registry = registryOf(image);
    const entry = this.config.registries.find((r) => normalizeRegistry(r.server) === registry);
    return entry ? { username: entry.username, password: entry.password, serveraddress: entry.server } : undefined;
  }

  status(): AgentStatus {
    this.applyGpuHealth();
    return {
      nodeId: this.nodeId,
      agentVersion: VERSION,
      coordinator: this.config.coordinator.address,
      sessionState: this.session?.state ?? 'connecting',
      sessionId: this.session?.sessionId ?? '',
      connectedSinceMs: this.session?.connectedSinceMs ?? 0,
      unackedEvents: this.journal.pending().length,
      draining: this.draining,
      inventory: this.inventory,
      labels: this.config.labels,
      lastError: this.session?.lastError ?? '',
      attempts: this.ledger.all().map((r) => ({
        ...attemptStatus(r),
        image: r.spec?.image ?? '',
        startedMs: r.startedAtMs,
        logPath: this.paths.logFile(r.jobId, r.attempt),
      })),
    };
  }

  /**
   * Leaves without touching running jobs: stop taking commands, end the
   * session, stop watching containers, close the journal. Safe twice.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.detector?.close();
      await this.gpuHealth?.close();
      await this.flushEvents(this.draining ? 10_000 : 2_000);
      this.session?.close();
      await this.localApi?.close();
      await Promise.all([...this.runners.values()].map((r) => r.detach()));
      await this.cleanup;
      this.journal.close();
      await this.statusServer?.close();
      this.logger.info('agent stopped; running jobs left running');
    })();
    return this.closing;
  }
}

/** What the coordinator (and the local API) is told about an attempt the agent holds. */
function attemptStatus(r: AttemptRecord): { jobId: string; attempt: number; state: ReturnType<typeof toWireState>; gpuUuids: string[]; containerId: string } {
  return { jobId: r.jobId, attempt: r.attempt, state: toWireState(r.state), gpuUuids: r.gpuUuids, containerId: r.containerId };
}

/** The highest acknowledgement taken beyond the journal's own last id: room for 2^52 more events before ids stop being exact. */
const MAX_ACKED_EVENT_ID = 2 ** 52;

/** How long /readyz waits for the engine's answer to a ping. */
const READY_PING_TIMEOUT_MS = 2000;

function refuse(code: string, message: string): CommandResult {
  return { accepted: false, error: { code, message } };
}

function recordFromContainer(info: ContainerInfo, jobId: string, attempt: number, now: number): AttemptRecord {
  const gpus = (info.labels[LABELS.gpus] ?? '').split(',').filter(Boolean);
  const grace = Number(info.labels[LABELS.stopGrace]);
  return {
    jobId,
    attempt,
    spec: null,
    state: info.running ? 'RUNNING' : 'STARTING',
    gpuUuids: gpus,
    containerName: info.name,
    containerId: info.id,
    acceptedAtMs: now,
    startedAtMs: info.startedAtMs ?? 0,
    endedAtMs: 0,
    exitCode: null,
    stopRequested: false,
    exitEventId: 0,
    message: 'rebuilt from the container after the agent lost its record',
    stopSignal: info.labels[LABELS.stopSignal] || 'SIGTERM',
    stopGraceSeconds: Number.isInteger(grace) && grace >= 0 ? grace : 30,
    logCursor: '',
    resume: false,
    restored: null,
  };
}

/** The registry host of an image reference, as Docker resolves it. */
export function registryOf(image: string): string {
  const first = image.split('/')[0] ?? '';
  if (image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')) return first;
  return 'docker.io';
}

function normalizeRegistry(server: string): string {
  const host = server.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  return host === 'index.docker.io' || host === 'registry-1.docker.io' ? 'docker.io' : host;
}
