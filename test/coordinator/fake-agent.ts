// Test doubles for coordinator tests: an agent that speaks AgentSession over
// real gRPC with raw messages, and a clock the test drives.
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { Test } from 'tap';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { ControlClient } from '../../src/client/control-client.ts';
import { v1 } from '../../src/proto/load.ts';
import type { AgentMessage, CoordinatorMessage__Output, Inventory } from '../../src/proto/load.ts';
import type { AttemptStatus } from '../../src/gen/stevedore/v1/AttemptStatus.ts';
import type { CheckpointCommitted } from '../../src/gen/stevedore/v1/CheckpointCommitted.ts';
import type { CheckpointRestored } from '../../src/gen/stevedore/v1/CheckpointRestored.ts';
import type { PreemptionNotice } from '../../src/gen/stevedore/v1/PreemptionNotice.ts';
import type { DrainReport } from '../../src/gen/stevedore/v1/DrainReport.ts';
import type { AgentSessionClient } from '../../src/gen/stevedore/v1/AgentSession.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { DEFAULT_RESTART } from '../../src/spec/job-spec.ts';
import type { JobSpec } from '../../src/spec/job-spec.ts';

export function inventory(hostname: string, gpus: number): Inventory {
  return {
    hostname,
    cpuCores: 8,
    memoryBytes: 64 * 1024 ** 3,
    gpus: Array.from({ length: gpus }, (_, i) => ({ index: i, uuid: `GPU-${hostname}-${i}`, name: 'Test GPU', memoryMib: 81920 })),
  };
}

export function spec(name: string, gpus: number, extra: Partial<JobSpec> = {}): JobSpec {
  const { restart, ...rest } = extra;
  return {
    name,
    image: 'trainer:1',
    command: ['train'],
    env: {},
    resources: { gpus, cpus: 0, memoryBytes: 0, shmBytes: 0 },
    mounts: [],
    ulimits: [],
    hostIpc: false,
    hostNetwork: false,
    stopSignal: 'SIGTERM',
    stopGraceSeconds: 30,
    pullPolicy: 'if-not-present',
    workingDir: '',
    ...rest,
    restart: restart ?? { ...DEFAULT_RESTART, retryableExitCodes: [] },
  };
}

/** A checkpoint section for specs of jobs whose checkpoints the agent manages. */
export const CHECKPOINT: NonNullable<JobSpec['checkpoint']> = {
  path: '/checkpoints',
  destination: 's3://ckpt-bucket/runs',
  endpoint: 'default',
  rule: 'dcp',
  marker: '',
  quiescenceSeconds: 0,
  keep: 3,
  keepEvery: 0,
  signal: 'SIGUSR1',
  resume: false,
};

type Pred = (m: CoordinatorMessage__Output) => boolean;

export class FakeAgent {
  readonly nodeId: string;
  readonly received: CoordinatorMessage__Output[] = [];
  private readonly client: AgentSessionClient;
  private readonly call: grpc.ClientDuplexStream<AgentMessage, CoordinatorMessage__Output>;
  private readonly queue: CoordinatorMessage__Output[] = [];
  private readonly waiters: { pred: Pred; resolve: (m: CoordinatorMessage__Output) => void }[] = [];
  private nextEventId = 1;
  /** The call's final status. */
  readonly status: Promise<grpc.StatusObject>;

  constructor(address: string, nodeId: string) {
    this.nodeId = nodeId;
    this.client = new v1.AgentSession(address, grpc.credentials.createInsecure());
    this.call = this.client.connect();
    this.call.on('data', (m: CoordinatorMessage__Output) => {
      this.received.push(m);
      const i = this.waiters.findIndex((w) => w.pred(m));
      if (i >= 0) {
        const [w] = this.waiters.splice(i, 1);
        w?.resolve(m);
      } else {
        this.queue.push(m);
      }
    });
    this.status = new Promise((resolve) => {
      this.call.on('status', resolve);
    });
    this.call.on('error', () => undefined);
  }

  send(msg: AgentMessage): void {
    this.call.write(msg);
  }

  /** The next message matching pred (default: any), received or yet to come. */
  next(pred: Pred = () => true, timeoutMs = 5000): Promise<CoordinatorMessage__Output> {
    const i = this.queue.findIndex(pred);
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0] as CoordinatorMessage__Output);
    return new Promise((resolve, reject) => {
      const waiter = { pred, resolve: (m: CoordinatorMessage__Output) => { clearTimeout(timer); resolve(m); } };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`${this.nodeId}: no matching message within ${timeoutMs} ms; received so far: ${JSON.stringify(this.received.map((m) => m.msg))}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Messages received and not yet taken by next(). */
  pending(): CoordinatorMessage__Output[] {
    return [...this.queue];
  }

  async register(opts: { gpus?: number; attempts?: AttemptStatus[]; labels?: Record<string, string>; lastEventId?: number } = {}): Promise<CoordinatorMessage__Output> {
    this.send({
      register: {
        nodeId: this.nodeId,
        agentVersion: '0.1.0-test',
        protocolVersion: 1,
        inventory: inventory(this.nodeId, opts.gpus ?? 4),
        labels: opts.labels ?? { zone: 'test-a' },
        attempts: opts.attempts ?? [],
        lastEventId: opts.lastEventId ?? 0,
      },
    });
    const m = await this.next((x) => x.msg === 'registered' || x.msg === 'error');
    if (m.msg !== 'registered') throw new Error(`register refused: ${JSON.stringify(m)}`);
    this.nextEventId = Math.max(this.nextEventId, Number(m.registered?.ackedEventId ?? 0) + 1);
    return m;
  }

  /** Waits for the next startJob command and acknowledges it (accepted unless refused). */
  async takeStart(ack: { accepted: boolean; code?: string; message?: string } | null = { accepted: true }): Promise<{ commandId: string; jobId: string; attempt: number; spec: unknown; resume: boolean }> {
    const m = await this.next((x) => x.command?.body === 'startJob');
    const cmd = m.command;
    const start = cmd?.startJob;
    if (!cmd || !start) throw new Error('not a start command');
    if (ack) {
      this.send({ commandAck: { commandId: cmd.commandId, accepted: ack.accepted, ...(ack.accepted ? {} : { error: { code: ack.code ?? '', message: ack.message ?? '' } }) } });
    }
    return { commandId: cmd.commandId, jobId: start.jobId, attempt: start.attempt, spec: start.spec, resume: start.resume };
  }

  /** Sends an event with the next event id (or the given one) and waits for its ack. */
  async event(jobId: string, attempt: number, body: Omit<NonNullable<AgentMessage['event']>, 'eventId' | 'timeMs' | 'jobId' | 'attempt'>, eventId?: number): Promise<number> {
    const id = eventId ?? this.nextEventId++;
    this.send({ event: { eventId: id, timeMs: Date.now(), jobId, attempt, ...body } });
    const ack = await this.next((x) => x.msg === 'eventAck');
    return Number(ack.eventAck?.upToEventId ?? 0);
  }

  running(jobId: string, attempt: number, gpuUuids: string[]): Promise<number> {
    return this.event(jobId, attempt, { stateChanged: { state: 'ATTEMPT_STATE_RUNNING', gpuUuids, containerId: `c-${jobId}` } });
  }

  exited(jobId: string, attempt: number, state: 'ATTEMPT_STATE_SUCCEEDED' | 'ATTEMPT_STATE_FAILED' | 'ATTEMPT_STATE_CANCELLED' | 'ATTEMPT_STATE_PREEMPTED', exitCode: number): Promise<number> {
    return this.event(jobId, attempt, { exited: { state, exitCode } });
  }

  logs(jobId: string, attempt: number, lines: { stream?: string; text: string }[], eventId?: number): Promise<number> {
    return this.event(jobId, attempt, { logs: { lines: lines.map((l) => ({ timeMs: Date.now(), stream: l.stream ?? 'stdout', text: l.text })) } }, eventId);
  }

  /** A checkpointCommitted event for a checkpoint named `name`; fields default to plausible values. */
  committed(jobId: string, attempt: number, name: string, step: number, extra: Partial<CheckpointCommitted> = {}, eventId?: number): Promise<number> {
    const committedMs = 1_700_000_100_000 + step;
    return this.event(jobId, attempt, {
      checkpointCommitted: {
        checkpointId: name,
        name,
        step,
        totalBytes: 3 * 1024 ** 3,
        uploadedBytes: 1024 ** 3,
        files: 4,
        lastWriteMs: committedMs - 1500,
        committedMs,
        timeToCommitMs: 1500,
        manifestKey: `s3://ckpt-bucket/runs/${jobId}/${name}/_stevedore/manifest.json`,
        ...extra,
      },
    }, eventId);
  }

  restored(jobId: string, attempt: number, body: CheckpointRestored): Promise<number> {
    return this.event(jobId, attempt, { checkpointRestored: body });
  }

  /** A preemptionNotice event: it concerns the node, so job id "" and attempt 0. */
  notice(body: PreemptionNotice): Promise<number> {
    return this.event('', 0, { preemptionNotice: body });
  }

  drainReport(jobId: string, attempt: number, body: DrainReport): Promise<number> {
    return this.event(jobId, attempt, { drainReport: body });
  }

  heartbeat(): Promise<CoordinatorMessage__Output> {
    this.send({ heartbeat: { sentAtMs: Date.now(), runningAttempts: 0 } });
    return this.next((x) => x.msg === 'heartbeatAck');
  }

  /** Half-closes the stream, as an agent that shuts down cleanly does. */
  async close(): Promise<void> {
    this.call.end();
    await Promise.race([this.status, new Promise((r) => setTimeout(r, 2000))]);
    this.client.close();
  }

  /** Drops the connection without a goodbye. */
  kill(): void {
    this.call.cancel();
    this.client.close();
  }
}

/** Polls until check returns a value that is not undefined/false. */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`condition not met within ${timeoutMs} ms${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface Setup {
  coordinator: Coordinator;
  address: string;
  client: ControlClient;
  clock: FakeClock;
  dbPath: string;
  agent: (nodeId: string) => FakeAgent;
}

/** A coordinator on loopback (port 0) with a fake clock, a client, and fake agents; all closed at teardown. */
export async function setup(t: Pick<Test, 'testdir' | 'teardown'>, opts: { dbPath?: string; clock?: FakeClock } = {}): Promise<Setup> {
  const dbPath = opts.dbPath ?? path.join(t.testdir(), 'coordinator.db');
  const clock = opts.clock ?? new FakeClock();
  const coordinator = new Coordinator({ listen: '127.0.0.1:0', dbPath, leaseMs: 30_000, heartbeatIntervalMs: 5_000, clock });
  const { address } = await coordinator.start();
  const client = new ControlClient({ address, retries: 0, deadlineMs: 5000 });
  const agents: FakeAgent[] = [];
  t.teardown(async () => {
    for (const a of agents) a.kill();
    client.close();
    await coordinator.close();
  });
  return {
    coordinator, address, client, clock, dbPath,
    agent: (nodeId) => {
      const a = new FakeAgent(address, nodeId);
      agents.push(a);
      return a;
    },
  };
}
