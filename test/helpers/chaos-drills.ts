// The chaos drills of docs/RELIABILITY.md, each a function of its size, so that
// `npm test` runs short versions (test/chaos/*.test.ts) and `npm run chaos`
// (scripts/chaos.ts) the full ones. A drill sets up its own S3 server and
// cluster (real coordinator and agent processes, real containers), injects its
// fault, counts what was lost and returns the figures; it throws only when it
// cannot run at all (a timeout waiting for the job is a figure, not a throw,
// where it can be counted).
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { buildTrainerImage, startTestEngine, type TestEngine } from '../../scripts/test-env.ts';
import { Cluster, type AgentHandle } from './cluster.ts';
import { startFaultProxy, type FaultProxy, type FaultProxyOptions } from './fault-proxy.ts';
import { startS3Server, type S3TestServer } from './s3-server.ts';
import { testLogFile } from './test-log.ts';
import {
  BUCKET, checkpointAccounting, ContainerWatch, eventAccounting, jobLogLines, prng, sleep, stepAccounting, storedEvents, trainerSpec, verifyCommitted,
  type DrillResult,
} from './chaos-common.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;

export interface DrillEnv {
  dockerHost: string;
  trainerImage: string;
  /** Progress lines; default: none. */
  log?: (message: string) => void;
}

const TERMINAL = ['succeeded', 'failed', 'cancelled', 'preempted'];

/** S3, a cluster and its cleanup: containers of the cluster's nodes removed, folders deleted. */
class World {
  readonly dir: string;
  s3!: S3TestServer;
  proxy: FaultProxy | undefined;
  cluster!: Cluster;
  store!: S3ObjectStore;
  readonly engine: DockerEngine;
  private readonly dockerHost: string;

  private constructor(dockerHost: string) {
    // Short: unix socket paths are limited to 107 bytes.
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'stv-chaos-'));
    this.dockerHost = dockerHost;
    this.engine = new DockerEngine({ dockerHost });
  }

  static async start(dockerHost: string, fault?: Omit<FaultProxyOptions, 'target'>): Promise<World> {
    const world = new World(dockerHost);
    world.s3 = await startS3Server({ buckets: [BUCKET] });
    world.store = new S3ObjectStore({ bucket: BUCKET, config: world.s3.config });
    try {
      if (fault) world.proxy = await startFaultProxy({ ...fault, target: world.s3.endpoint });
      world.cluster = await Cluster.start(world.dir, { dockerHost });
    } catch (err) {
      await world.close();
      throw err;
    }
    return world;
  }

  /** Agent config for S3 (through the fault proxy when there is one) and quick checkpoint scans. */
  s3Config(): Record<string, unknown> {
    const endpoint = this.proxy ? { ...this.s3.config, endpoint: this.proxy.endpoint } : this.s3.config;
    return { s3: { endpoints: { default: endpoint } }, checkpoints: { partSizeMiB: 5, maxInFlightMiB: 64, rescanSeconds: 1 } };
  }

  hostCheckpointDir(agent: AgentHandle, jobId: string): string {
    return path.join(agent.dir, 'work', jobId, 'checkpoints');
  }

  private nodeIds: string[] | undefined;

  /** Stops the coordinator and agents (their node ids kept for close()). */
  async closeCluster(): Promise<void> {
    // A cluster whose start failed is not set; its coordinator process exits on its own.
    const cluster = this.cluster as Cluster | undefined;
    if (this.nodeIds !== undefined || !cluster) return;
    this.nodeIds = ((await cluster.client.listNodes().catch(() => [])) ?? []).map((n) => n.nodeId);
    await cluster.close().catch(() => undefined);
  }

  async close(): Promise<void> {
    await this.closeCluster();
    const nodes = (this.nodeIds ?? []).map((nodeId) => ({ nodeId }));
    for (const node of nodes) {
      for (const c of await this.engine.list({ [LABELS.nodeId]: node.nodeId }).catch(() => [])) await this.engine.remove(c.id).catch(() => undefined);
    }
    this.store.destroy();
    await this.proxy?.close();
    await this.s3.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function waitTerminal(cluster: Cluster, jobId: string, timeoutMs: number): Promise<Awaited<ReturnType<Cluster['waitForJob']>>> {
  return cluster.waitForJob(jobId, TERMINAL, timeoutMs);
}

// ---------------------------------------------------------------------------
// 1. kill -9 of the agent at random moments during a continuously checkpointing job

export interface KillLoopOptions {
  kills: number;
  seed?: number;
  /** Time the agent lives between its start and the next kill: uniform in [min, max] ms. Default 600..2600. */
  minAliveMs?: number;
  maxAliveMs?: number;
}

export async function killLoopDrill(env: DrillEnv, o: KillLoopOptions): Promise<DrillResult> {
  const started = Date.now();
  const log = env.log ?? (() => undefined);
  const random = prng(o.seed ?? 42);
  const minAlive = o.minAliveMs ?? 600;
  const maxAlive = o.maxAliveMs ?? 2600;
  const stepSeconds = 0.25;
  // Long enough for every kill (plus the restarts) to fall inside the run.
  const steps = Math.ceil(((o.kills * ((minAlive + maxAlive) / 2 + 400)) / 1000 + 4) / stepSeconds);
  const world = await World.start(env.dockerHost);
  try {
    const agent = await world.cluster.addAgent('agent-kill', 1, world.s3Config());
    const spec = trainerSpec('kill-loop', { image: env.trainerImage, steps, stepSeconds, checkpointEvery: 4, checkpointBytes: 6 * MiB, prefix: 'kill-loop' });
    const job = await world.cluster.client.submitJob(spec);
    await world.cluster.waitForJob(job.jobId, ['running'], 60000);
    const watch = new ContainerWatch(world.engine, job.jobId);
    let killsDuringUpload = 0;
    let killed = 0;
    try {
      for (let i = 0; i < o.kills; i += 1) {
        await sleep(minAlive + random() * (maxAlive - minAlive));
        if ((await world.store.listMultipartUploads('kill-loop/').catch(() => [])).length > 0) killsDuringUpload += 1;
        await agent.proc.stop('SIGKILL');
        killed += 1;
        agent.proc.start();
        if ((i + 1) % 10 === 0) log(`kill loop: ${i + 1}/${o.kills} kills`);
      }
      await waitTerminal(world.cluster, job.jobId, steps * stepSeconds * 1000 + 120000);
    } finally {
      watch.stop();
    }
    const done = await world.cluster.client.getJob(job.jobId);
    const steps_ = stepAccounting(await jobLogLines(world.cluster, job.jobId), steps);
    const events = eventAccounting(storedEvents(world.cluster, job.jobId));
    const verified = await verifyCommitted(world.cluster, world.store, job.jobId, 'kill-loop', world.hostCheckpointDir(agent, job.jobId));
    const open = (await world.store.listMultipartUploads('kill-loop/')).length;
    const ck = checkpointAccounting(verified.committedNames, steps, 4);
    return {
      drill: 'kill-loop',
      durationMs: Date.now() - started,
      figures: [
        {
          tried: 'kill -9 of the agent at random moments',
          count: killed,
          outcomes: [
            { what: 'committed checkpoints lost', count: verified.lost },
            { what: 'committed checkpoints corrupt', count: verified.corrupt },
            { what: 'newest checkpoints never committed', count: ck.uncommittedNewest },
            { what: 'committed checkpoints not reported', count: verified.committed - verified.told },
            { what: 'times two containers of the job ran at once', count: watch.maxRunning > 1 ? 1 : 0 },
            { what: 'containers created beyond the first', count: Math.max(0, watch.ids.size - 1) },
            { what: 'multipart uploads left open', count: open },
            { what: 'step lines lost', count: steps_.missing },
            { what: 'step lines duplicated', count: steps_.duplicated },
            { what: 'step lines out of order', count: steps_.outOfOrder },
            { what: 'events stored twice', count: events.duplicated },
            { what: 'checkpoint events duplicated', count: events.commitsDuplicated },
            { what: 'exit reports beyond one', count: Math.abs(events.exits - 1) },
            { what: 'job not succeeded', count: done.state === 'succeeded' ? 0 : 1 },
            { what: 'extra attempts', count: Math.max(0, done.attempts.length - 1) },
          ],
        },
      ],
      details: {
        steps,
        checkpointsWritten: ck.written,
        checkpointsCommitted: ck.committed,
        checkpointsSupersededByNewer: ck.superseded,
        checkpointsReported: verified.told,
        filesVerified: verified.filesVerified,
        filesComparedWithHost: verified.comparedWithHost,
        killsDuringUpload,
        mismatches: verified.mismatches.slice(0, 3).join(' | '),
        containerSamples: watch.samples,
        events: events.events,
        jobState: done.state,
      },
    };
  } finally {
    await world.close();
  }
}

// ---------------------------------------------------------------------------
// 2. S3 faults for a whole run

export interface S3FaultOptions {
  checkpoints: number;
  /** Steps of 0.25 s between checkpoints; default 24 (6 s, a little more than a stall's 10 s minus the upload). */
  everySteps?: number;
  /** Default 0.2. */
  failureRate?: number;
  /** Default 10000. */
  stallMs?: number;
  seed?: number;
}

export async function s3FaultDrill(env: DrillEnv, o: S3FaultOptions): Promise<DrillResult> {
  const started = Date.now();
  const every = o.everySteps ?? 24;
  const stepSeconds = 0.25;
  const steps = o.checkpoints * every;
  const world = await World.start(env.dockerHost, { failureRate: o.failureRate ?? 0.2, faults: ['503', 'reset', 'truncate', 'stall'], stallMs: o.stallMs ?? 10000, seed: o.seed ?? 11 });
  try {
    const agent = await world.cluster.addAgent('agent-s3-faults', 1, world.s3Config());
    const job = await world.cluster.client.submitJob(trainerSpec('s3-faults', { image: env.trainerImage, steps, stepSeconds, checkpointEvery: every, checkpointBytes: 6 * MiB, prefix: 's3-faults' }));
    const done = await waitTerminal(world.cluster, job.jobId, steps * stepSeconds * 1000 + 180000);
    const verified = await verifyCommitted(world.cluster, world.store, job.jobId, 's3-faults', world.hostCheckpointDir(agent, job.jobId));
    const open = (await world.store.listMultipartUploads('s3-faults/')).length;
    const ck = checkpointAccounting(verified.committedNames, steps, every);
    const counts = world.proxy?.counts ?? {};
    const injected = ['503', 'reset', 'truncate', 'stall'].reduce((n, k) => n + (counts[k] ?? 0), 0);
    return {
      drill: 's3-faults',
      durationMs: Date.now() - started,
      figures: [
        {
          tried: `checkpoints through an S3 endpoint failing ${Math.round((o.failureRate ?? 0.2) * 100)}% of requests (${injected} faults in ${counts.requests ?? 0} requests)`,
          count: o.checkpoints,
          outcomes: [
            { what: 'newest checkpoints never committed', count: ck.uncommittedNewest },
            { what: 'committed but not reported', count: verified.committed - verified.told },
            { what: 'reported but lost', count: verified.lost },
            { what: 'corrupt', count: verified.corrupt },
            { what: 'multipart uploads left open', count: open },
            { what: 'job not succeeded', count: done.state === 'succeeded' ? 0 : 1 },
          ],
        },
      ],
      details: {
        requests: counts.requests ?? 0,
        faults503: counts['503'] ?? 0,
        faultsReset: counts.reset ?? 0,
        faultsTruncate: counts.truncate ?? 0,
        faultsStall: counts.stall ?? 0,
        stallMs: o.stallMs ?? 10000,
        checkpointsCommitted: ck.committed,
        checkpointsSupersededByNewer: ck.superseded,
        filesVerified: verified.filesVerified,
        filesComparedWithHost: verified.comparedWithHost,
        jobState: done.state,
      },
    };
  } finally {
    await world.close();
  }
}

// ---------------------------------------------------------------------------
// 3. The coordinator down for a while during jobs

export interface CoordinatorOutageOptions {
  outageMs: number;
  /** Jobs running through the outage; default 2. */
  jobs?: number;
}

export async function coordinatorOutageDrill(env: DrillEnv, o: CoordinatorOutageOptions): Promise<DrillResult> {
  const started = Date.now();
  const log = env.log ?? (() => undefined);
  const jobs = o.jobs ?? 2;
  const stepSeconds = 0.25;
  const steps = Math.ceil((o.outageMs / 1000 + 10) / stepSeconds);
  const world = await World.start(env.dockerHost);
  try {
    const agent = await world.cluster.addAgent('agent-outage', jobs, world.s3Config());
    const submitted = await Promise.all(
      Array.from({ length: jobs }, (_, i) =>
        world.cluster.client.submitJob(trainerSpec(`outage-${i}`, { image: env.trainerImage, steps, stepSeconds, checkpointEvery: 8, checkpointBytes: 1 * MiB, prefix: `outage-${i}` })),
      ),
    );
    for (const job of submitted) await world.cluster.waitForJob(job.jobId, ['running'], 60000);
    const watches = submitted.map((j) => new ContainerWatch(world.engine, j.jobId, 500));
    let runningThrough = 0;
    try {
      await sleep(1500);
      await world.cluster.coordinatorProc.stop('SIGTERM');
      log(`coordinator down for ${o.outageMs / 1000} s`);
      await sleep(o.outageMs);
      for (const job of submitted) {
        const [container] = await world.engine.list({ [LABELS.jobId]: job.jobId });
        if (container?.running) runningThrough += 1;
      }
      world.cluster.coordinatorProc.start();
      await world.cluster.waitForCoordinator();
      for (const job of submitted) await waitTerminal(world.cluster, job.jobId, steps * stepSeconds * 1000 + 120000);
    } finally {
      for (const w of watches) w.stop();
    }
    let notSucceeded = 0;
    let extraAttempts = 0;
    const lines = { missing: 0, duplicated: 0, outOfOrder: 0 };
    const ev = { duplicated: 0, commitsDuplicated: 0, exits: 0 };
    const ck = { notDelivered: 0, lost: 0, corrupt: 0 };
    for (const [i, job] of submitted.entries()) {
      const done = await world.cluster.client.getJob(job.jobId);
      if (done.state !== 'succeeded') notSucceeded += 1;
      extraAttempts += Math.max(0, done.attempts.length - 1);
      const s = stepAccounting(await jobLogLines(world.cluster, job.jobId), steps);
      lines.missing += s.missing;
      lines.duplicated += s.duplicated;
      lines.outOfOrder += s.outOfOrder;
      const e = eventAccounting(storedEvents(world.cluster, job.jobId));
      ev.duplicated += e.duplicated;
      ev.commitsDuplicated += e.commitsDuplicated;
      ev.exits += Math.abs(e.exits - 1);
      const v = await verifyCommitted(world.cluster, world.store, job.jobId, `outage-${i}`, world.hostCheckpointDir(agent, job.jobId));
      ck.notDelivered += v.committed - v.told;
      ck.lost += v.lost;
      ck.corrupt += v.corrupt;
    }
    return {
      drill: 'coordinator-outage',
      durationMs: Date.now() - started,
      figures: [
        {
          tried: `jobs through a coordinator outage of ${Math.round(o.outageMs / 1000)} s`,
          count: jobs,
          outcomes: [
            { what: 'jobs stopped during the outage', count: jobs - runningThrough },
            { what: 'containers restarted', count: watches.reduce((n, w) => n + w.restarts + Math.max(0, w.ids.size - 1), 0) },
            { what: 'jobs not succeeded', count: notSucceeded },
            { what: 'extra attempts', count: extraAttempts },
            { what: 'step lines lost', count: lines.missing },
            { what: 'step lines duplicated', count: lines.duplicated },
            { what: 'step lines out of order', count: lines.outOfOrder },
            { what: 'events stored twice', count: ev.duplicated },
            { what: 'checkpoint events duplicated', count: ev.commitsDuplicated },
            { what: 'committed checkpoints not delivered', count: ck.notDelivered },
            { what: 'exit reports other than one per job', count: ev.exits },
          ],
        },
      ],
      details: { steps, outageMs: o.outageMs },
    };
  } finally {
    await world.close();
  }
}

// ---------------------------------------------------------------------------
// 4. The Docker engine restarted during a job

export interface EngineRestartOptions {
  restarts: number;
  /** A daemon of the drill's own, so that the shared test engine is never restarted. */
  baseDir?: string;
  /** Start the drill's daemon with --live-restore: containers survive the restart. */
  liveRestore?: boolean;
}

export async function engineRestartDrill(env: DrillEnv, o: EngineRestartOptions): Promise<DrillResult> {
  const started = Date.now();
  const log = env.log ?? (() => undefined);
  const baseDir = o.baseDir ?? `/tmp/stv-chaos-engine-${o.liveRestore ? 'lr' : 'plain'}`;
  const engineLog = testLogFile(`chaos-engine-${o.liveRestore ? 'live-restore' : 'plain'}`);
  const note = (m: string): void => {
    writeFileSync(engineLog, `${m}\n`, { flag: 'a' });
  };
  const own: TestEngine = await startTestEngine({ baseDir, log: note, ...(o.liveRestore ? { liveRestore: true } : {}) });
  const stepSeconds = 0.25;
  let world: World | undefined;
  try {
    const image = await buildTrainerImage(own.dockerHost, note);
    world = await World.start(own.dockerHost);
    const agent = await world.cluster.addAgent('agent-engine', 1, world.s3Config());
    let agentCrashes = 0;
    let unaccounted = 0;
    let notReported = 0;
    let adopted = 0;
    let failedClearly = 0;
    let followUpFailed = 0;
    const lines = { missing: 0, duplicated: 0 };
    const reasons: string[] = [];
    for (let i = 0; i < o.restarts; i += 1) {
      const steps = 80;
      const job = await world.cluster.client.submitJob(trainerSpec(`engine-${i}`, { image, steps, stepSeconds, checkpointEvery: 8, checkpointBytes: 1 * MiB, prefix: `engine-${i}` }));
      await world.cluster.waitForJob(job.jobId, ['running'], 60000);
      await sleep(2500);
      log(`restarting the engine (${i + 1}/${o.restarts})`);
      await own.restart();
      if (!agent.proc.running) {
        agentCrashes += 1;
        agent.proc.start();
      }
      let done: Awaited<ReturnType<Cluster['waitForJob']>> | undefined;
      try {
        done = await waitTerminal(world.cluster, job.jobId, steps * stepSeconds * 1000 + 90000);
      } catch {
        notReported += 1;
      }
      if (done) {
        const attempt = done.attempts.at(-1);
        if (done.state === 'succeeded' && done.attempts.length === 1) adopted += 1;
        else if (done.state === 'failed' && /engine|docker/i.test(`${done.message} ${attempt?.message ?? ''}`)) failedClearly += 1;
        reasons.push(`${done.state}: ${attempt?.message ?? done.message}`);
        if (o.liveRestore) {
          // The container ran on: every step line reaches the coordinator once, across the engine's absence.
          const s = stepAccounting(await jobLogLines(world.cluster, job.jobId), steps);
          lines.missing += s.missing;
          lines.duplicated += s.duplicated;
        }
      }
      // Whatever the coordinator thinks, the engine agrees: an ended job has no running container.
      const running = (await world.engine.list({ [LABELS.jobId]: job.jobId })).filter((c) => c.running).length;
      if (done && running > 0) unaccounted += 1;
      if (!agent.proc.running) agentCrashes += 1;
      // The agent goes on serving: a new job on the restarted engine.
      const next = await world.cluster.client.submitJob(trainerSpec(`after-${i}`, { image, steps: 4, stepSeconds, checkpointEvery: 0, checkpointBytes: 0 }));
      const nextDone = await waitTerminal(world.cluster, next.jobId, 90000).catch(() => undefined);
      if (nextDone?.state !== 'succeeded') followUpFailed += 1;
    }
    return {
      drill: o.liveRestore ? 'engine-restart-live-restore' : 'engine-restart',
      durationMs: Date.now() - started,
      figures: [
        {
          tried: `restarts of the Docker engine during a job (${o.liveRestore ? 'live-restore: containers survive' : 'no live-restore: containers stop with the engine'})`,
          count: o.restarts,
          outcomes: [
            { what: 'agent crashes', count: agentCrashes },
            { what: 'jobs never reported', count: notReported },
            { what: 'jobs reported ended with a container still running', count: unaccounted },
            ...(o.liveRestore
              ? [
                { what: 'jobs not re-adopted to success', count: o.restarts - adopted },
                { what: 'step lines lost', count: lines.missing },
                { what: 'step lines duplicated', count: lines.duplicated },
              ]
              : [{ what: 'jobs not failed with a reason naming the engine', count: o.restarts - failedClearly }]),
            { what: 'follow-up jobs failed', count: followUpFailed },
          ],
        },
      ],
      details: { reasons: reasons.join(' | ') },
    };
  } finally {
    await world?.close();
    await own.stop();
    // A daemon with live-restore leaves its data root's propagation mount behind when it stops.
    if (o.liveRestore) await unmount(path.join(baseDir, 'data'));
  }
}

// ---------------------------------------------------------------------------
// 5. Disk full on a checkpoint volume, an unwritable state directory

async function mountTmpfs(dir: string, size: string, readOnly = false): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size}${readOnly ? ',ro' : ''}`, 'tmpfs', dir]);
}

async function unmount(dir: string): Promise<void> {
  await run('umount', ['-l', dir]).catch(() => undefined);
}

/** Fills the file system of `dir` with one file; returns its path. */
async function fill(dir: string): Promise<string> {
  const file = path.join(dir, 'chaos-filler');
  await run('sh', ['-c', `dd if=/dev/zero of='${file}' bs=1M 2>/dev/null; true`]);
  return file;
}

export interface DiskFullOptions {
  /** How long the state directory stays full while jobs run, ms. Default 4000. */
  stateFullMs?: number;
}

export async function diskFullDrill(env: DrillEnv, o: DiskFullOptions = {}): Promise<DrillResult> {
  const started = Date.now();
  const stepSeconds = 0.25;
  const world = await World.start(env.dockerHost);
  const mounts: string[] = [];
  try {
    // The state directory on a file system of its own, so that it can be filled.
    const stateDir = path.join(world.dir, 'agent-disk', 'state');
    await mountTmpfs(stateDir, '64m');
    mounts.push(stateDir);
    const agent = await world.cluster.addAgent('agent-disk', 3, world.s3Config());

    // A committed 12 MiB checkpoint to restore.
    const seed = await world.cluster.client.submitJob(trainerSpec('seed', { image: env.trainerImage, steps: 2, stepSeconds, checkpointEvery: 2, checkpointBytes: 12 * MiB, prefix: 'big' }));
    await waitTerminal(world.cluster, seed.jobId, 60000);

    // The other job, on the ordinary disk, checkpointing throughout.
    const otherSteps = 80;
    const other = await world.cluster.client.submitJob(trainerSpec('other', { image: env.trainerImage, steps: otherSteps, stepSeconds, checkpointEvery: 8, checkpointBytes: 1 * MiB, prefix: 'other' }));
    await world.cluster.waitForJob(other.jobId, ['running'], 60000);
    // A blocker holds the last GPUs until the small volume is in place for the next job.
    const blocker = await world.cluster.client.submitJob(trainerSpec('blocker', { image: env.trainerImage, steps: 400, stepSeconds, checkpointEvery: 0, checkpointBytes: 0, gpus: 2 }));
    await world.cluster.waitForJob(blocker.jobId, ['running'], 60000);
    const full = await world.cluster.client.submitJob(trainerSpec('full', { image: env.trainerImage, steps: 8, stepSeconds, checkpointEvery: 4, checkpointBytes: 1 * MiB, prefix: 'big', gpus: 2 }));
    const volume = path.join(agent.dir, 'work', full.jobId, 'checkpoints');
    await mountTmpfs(volume, '8m');
    mounts.push(volume);
    await world.cluster.client.cancelJob(blocker.jobId);
    const fullDone = await waitTerminal(world.cluster, full.jobId, 60000);
    const fullMessage = `${fullDone.message} ${fullDone.attempts.at(-1)?.message ?? ''}`;
    const clearVolumeError = fullDone.state === 'failed' && /no space|disk is full|ENOSPC|is free/i.test(fullMessage) && fullMessage.includes(volume);

    // The state directory fills up while the other job runs, then has room again.
    const filler = await fill(stateDir);
    await sleep(o.stateFullMs ?? 4000);
    const aliveWhileFull = agent.proc.running;
    rmSync(filler, { force: true });
    const otherDone = await waitTerminal(world.cluster, other.jobId, otherSteps * stepSeconds * 1000 + 90000);
    const otherSteps_ = stepAccounting(await jobLogLines(world.cluster, other.jobId), otherSteps);
    const verified = await verifyCommitted(world.cluster, world.store, other.jobId, 'other');
    const stateLog = agent.proc.log();
    const loggedClearly = /STATE_DIR_UNWRITABLE|disk is full/i.test(stateLog);
    // The journal is intact: the agent starts again from it.
    await agent.proc.stop('SIGTERM');
    agent.proc.start();
    await world.cluster.waitForNode('agent-disk', 'online', 30000);
    const restartedCleanly = !/JOURNAL_CORRUPT/.test(agent.proc.log());

    // An unwritable state directory at start: a clear error naming the path, and exit.
    const roState = path.join(world.dir, 'ro-state');
    await mountTmpfs(roState, '1m', true);
    mounts.push(roState);
    const config = parse(readFileSync(path.join(agent.dir, 'agent.yaml'), 'utf8')) as Record<string, unknown>;
    const roConfig = path.join(world.dir, 'ro-agent.yaml');
    writeFileSync(roConfig, stringify({ ...config, nodeName: 'agent-ro', stateDir: roState, socketPath: path.join(world.dir, 'ro.sock'), workRoot: path.join(world.dir, 'ro-work') }));
    const startup = await startAndCollect(['agent', '--config', roConfig], 20000);
    const clearStartupError = startup.code !== 0 && startup.code !== null && startup.output.includes(roState) && /read-only|EROFS|writable|permission/i.test(startup.output);

    return {
      drill: 'disk-full',
      durationMs: Date.now() - started,
      figures: [
        {
          tried: 'job restoring onto a full checkpoint volume (8 MiB for 12 MiB)',
          count: 1,
          outcomes: [{ what: 'failures without an error naming the volume and the lack of space', count: clearVolumeError ? 0 : 1 }],
        },
        {
          tried: 'job on another volume meanwhile, through a full state directory',
          count: 1,
          outcomes: [
            { what: 'jobs not succeeded', count: otherDone.state === 'succeeded' ? 0 : 1 },
            { what: 'step lines lost or repeated', count: otherSteps_.missing + otherSteps_.duplicated },
            { what: 'committed checkpoints lost or corrupt', count: verified.lost + verified.corrupt },
            { what: 'committed checkpoints not reported', count: verified.committed - verified.told },
            { what: 'agent exits while the state directory was full', count: aliveWhileFull ? 0 : 1 },
            { what: 'full state directory not logged clearly', count: loggedClearly ? 0 : 1 },
            { what: 'journal damaged (restart refused)', count: restartedCleanly ? 0 : 1 },
          ],
        },
        {
          tried: 'agent start on a read-only state directory',
          count: 1,
          outcomes: [{ what: 'starts without a clear error naming the path', count: clearStartupError ? 0 : 1 }],
        },
      ],
      details: { fullJobMessage: fullMessage.trim(), startupExit: String(startup.code), startupError: startup.output.split('\n').find((l) => l.trim() !== '')?.slice(0, 400) ?? '' },
    };
  } finally {
    // Unmounted first: the world's folder cannot be removed around a mount.
    await world.closeCluster();
    for (const dir of mounts.reverse()) await unmount(dir);
    await world.close();
  }
}

const stevedoreBin = path.resolve(import.meta.dirname, '..', '..', 'bin', 'stevedore.js');

/** Runs `stevedore <args>` until it exits (or the timeout kills it); its output is kept in the run's log directory. */
async function startAndCollect(args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  const file = testLogFile('chaos-agent-startup');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [stevedoreBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      writeFileSync(file, output);
      resolve({ code, output });
    });
  });
}
