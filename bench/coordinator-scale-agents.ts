// Light agents for the coordinator scale benchmark: many AgentSession
// clients in one process, each on its own connection, speaking the session
// protocol as an agent does: register with a small inventory, heartbeat at the
// interval the coordinator asks for, acknowledge StartJob, report RUNNING and
// then SUCCEEDED. No container runs.
//
//   node bench/coordinator-scale-agents.ts '{"address":...,"count":...}'
// prints JSON lines on stdout: {"t":"registered","ms":...} per agent,
// {"t":"start","jobId":...,"ms":...} per StartJob received, and on stdin's
// end {"t":"stats","phases":{...}} before it exits. Each line on stdin starts
// a phase (its name): the heartbeat round trips, this process' own event-loop
// delay and its CPU are reported per phase, so that the process' own lag is
// not mistaken for the coordinator's.
import * as grpc from '@grpc/grpc-js';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { PROTOCOL_VERSION, v1, type AgentMessage, type CoordinatorMessage__Output } from '../src/proto/load.ts';

export interface LightAgentsOptions {
  address: string;
  count: number;
  /** Node ids are PREFIX-0000, PREFIX-0001, ... */
  prefix: string;
  gpus: number;
  /** How long a job "runs" between RUNNING and SUCCEEDED. */
  holdMs: number;
  /** Sessions opened per 100 ms while connecting (a fleet does not start in one instant). */
  connectPer100Ms: number;
}

/** A process' own event-loop delay and CPU over one phase. */
export interface LoopFigures {
  /** How late the process ran its timers and read what arrived (ms): it adds to every latency the process measures. */
  loopDelayP50Ms: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  /** CPU used per second of the phase (1.0 = one core). */
  cpuCores: number;
}

/** The light agents' figures over one phase of the benchmark. */
export interface PhaseStats extends LoopFigures {
  heartbeatRttMs: number[];
}

export type LightAgentsLine =
  | { t: 'registered'; node: string; ms: number }
  | { t: 'start'; jobId: string; ms: number }
  | { t: 'stats'; phases: Record<string, PhaseStats>; sessionErrors: number };

/** Measures this process' event-loop delay and CPU, phase by phase. */
export class LoopMeter {
  private readonly histogram = monitorEventLoopDelay({ resolution: 10 });
  private cpu = process.cpuUsage();
  private since = performance.now();

  constructor() {
    this.histogram.enable();
  }

  /** The figures since the previous take (or since construction); then starts over. */
  take(): LoopFigures {
    const ms = (ns: number): number => (Number.isFinite(ns) ? Math.round(ns / 1e5) / 10 : 0);
    const cpu = process.cpuUsage(this.cpu);
    const seconds = Math.max(0.001, (performance.now() - this.since) / 1000);
    const figures = {
      loopDelayP50Ms: this.histogram.count > 0 ? ms(this.histogram.percentile(50)) : 0,
      loopDelayP99Ms: this.histogram.count > 0 ? ms(this.histogram.percentile(99)) : 0,
      loopDelayMaxMs: this.histogram.count > 0 ? ms(this.histogram.max) : 0,
      cpuCores: Math.round(((cpu.user + cpu.system) / 1e6 / seconds) * 100) / 100,
    };
    this.histogram.reset();
    this.cpu = process.cpuUsage();
    this.since = performance.now();
    return figures;
  }

  stop(): void {
    this.histogram.disable();
  }
}

const self = path.join(import.meta.dirname, 'coordinator-scale-agents.ts');

/** The process, with a listener for its lines. */
export class LightAgents {
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;
  private stats: Extract<LightAgentsLine, { t: 'stats' }> | undefined;

  constructor(opts: LightAgentsOptions, onLine: (line: LightAgentsLine) => void) {
    this.child = spawn(process.execPath, [self, JSON.stringify(opts)], { stdio: ['pipe', 'pipe', 'inherit'] });
    if (!this.child.stdout) throw new Error('no stdout from the light agents');
    createInterface({ input: this.child.stdout }).on('line', (text) => {
      const line = JSON.parse(text) as LightAgentsLine;
      if (line.t === 'stats') this.stats = line;
      onLine(line);
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Starts a new phase: the heartbeat round trips and loop delay from now on are counted under this name. */
  phase(name: string): void {
    this.child.stdin?.write(`${name}\n`);
  }

  /** Ends every session and returns the figures of each phase. */
  async stop(): Promise<Extract<LightAgentsLine, { t: 'stats' }>> {
    this.child.stdin?.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await this.exited;
    clearTimeout(timer);
    return this.stats ?? { t: 'stats', phases: {}, sessionErrors: 0 };
  }
}

function print(line: LightAgentsLine): void {
  process.stdout.write(JSON.stringify(line) + '\n');
}

class LightAgent {
  private call: grpc.ClientDuplexStream<AgentMessage, CoordinatorMessage__Output> | undefined;
  private client: InstanceType<typeof v1.AgentSession> | undefined;
  private readonly index: number;
  private readonly nodeId: string;
  private readonly opts: LightAgentsOptions;
  private readonly phases: Phases;
  private eventId = 0;
  private heartbeat: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private registered = false;
  errors = 0;

  constructor(index: number, opts: LightAgentsOptions, phases: Phases) {
    this.opts = opts;
    this.phases = phases;
    this.index = index;
    this.nodeId = `${opts.prefix}-${String(index).padStart(4, '0')}`;
    this.connect();
  }

  /** Opens the session; a session that fails is opened again after a random pause, as an agent's reconnect does. */
  private connect(): void {
    const opts = this.opts;
    const index = this.index;
    // Its own connection, as a separate agent machine has.
    const client = new v1.AgentSession(opts.address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    const call = client.connect();
    this.client = client;
    this.call = call;
    let failed = false;
    const fail = (): void => {
      if (this.closed || failed) return;
      failed = true;
      this.errors++;
      if (this.heartbeat) clearInterval(this.heartbeat);
      this.heartbeat = undefined;
      client.close();
      const retry = setTimeout(() => {
        this.timers.delete(retry);
        if (!this.closed) this.connect();
      }, 200 + Math.random() * 800);
      this.timers.add(retry);
    };
    call.on('data', (msg: CoordinatorMessage__Output) => this.onMessage(msg));
    call.on('error', fail);
    call.on('end', fail);
    call.write({
      register: {
        nodeId: this.nodeId,
        agentVersion: 'bench',
        protocolVersion: PROTOCOL_VERSION,
        inventory: {
          hostname: this.nodeId,
          cpuModel: 'bench',
          cpuCores: 32,
          memoryBytes: 256 * 1024 ** 3,
          os: 'bench',
          kernel: 'bench',
          arch: 'x64',
          gpus: Array.from({ length: opts.gpus }, (_, i) => ({ index: i, uuid: `GPU-${this.nodeId}-${i}`, name: 'Bench GPU', memoryMib: 81920, driverVersion: '550', pciBusId: `0000:${String(i).padStart(2, '0')}:00.0` })),
        },
        labels: { zone: `zone-${index % 4}` },
        attempts: [],
        lastEventId: 0,
      },
    });
  }

  private onMessage(msg: CoordinatorMessage__Output): void {
    if (msg.registered) {
      if (!this.registered) print({ t: 'registered', node: this.nodeId, ms: Date.now() });
      this.registered = true;
      const every = msg.registered.heartbeatIntervalMs || 5000;
      // Spread the heartbeats over the interval, as agents started at different times are.
      const first = setTimeout(() => {
        this.sendHeartbeat();
        this.heartbeat = setInterval(() => this.sendHeartbeat(), every);
      }, Math.random() * every);
      this.timers.add(first);
    } else if (msg.heartbeatAck) {
      this.onHeartbeatAck();
    } else if (msg.command?.startJob) {
      const { jobId, attempt } = msg.command.startJob;
      print({ t: 'start', jobId, ms: Date.now() });
      this.write({ commandAck: { commandId: msg.command.commandId, accepted: true } });
      const gpuUuids = [`GPU-${this.nodeId}-0`];
      this.event(jobId, attempt, { stateChanged: { state: 'ATTEMPT_STATE_RUNNING', message: 'running', gpuUuids, containerId: `c-${jobId}` } });
      const done = setTimeout(() => {
        this.timers.delete(done);
        this.event(jobId, attempt, { exited: { state: 'ATTEMPT_STATE_SUCCEEDED', exitCode: 0 } });
      }, this.opts.holdMs);
      this.timers.add(done);
    } else if (msg.command) {
      this.write({ commandAck: { commandId: msg.command.commandId, accepted: true } });
    } else if (msg.error) {
      this.errors++;
    }
  }

  private pendingHeartbeat: number | undefined;

  private sendHeartbeat(): void {
    const now = Date.now();
    this.pendingHeartbeat = now;
    this.write({ heartbeat: { sentAtMs: now, runningAttempts: 0 } });
  }

  /** The round trip of the latest heartbeat, when its acknowledgement comes. */
  onHeartbeatAck(): void {
    if (this.pendingHeartbeat === undefined) return;
    this.phases.rtts.push(Date.now() - this.pendingHeartbeat);
    this.pendingHeartbeat = undefined;
  }

  private event(jobId: string, attempt: number, body: Omit<NonNullable<AgentMessage['event']>, 'eventId' | 'timeMs' | 'jobId' | 'attempt'>): void {
    this.write({ event: { eventId: ++this.eventId, timeMs: Date.now(), jobId, attempt, ...body } });
  }

  private write(msg: AgentMessage): void {
    if (!this.closed) this.call?.write(msg);
  }

  close(): void {
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const t of this.timers) clearTimeout(t);
    this.call?.end();
    this.client?.close();
  }
}

/** The round trips of the current phase. */
class Phases {
  current = 'register';
  rtts: number[] = [];
  readonly done: Record<string, PhaseStats> = {};
  private readonly meter = new LoopMeter();

  next(name: string): void {
    this.done[this.current] = { heartbeatRttMs: this.rtts, ...this.meter.take() };
    this.current = name;
    this.rtts = [];
  }

  end(): void {
    this.next('');
    this.meter.stop();
  }
}

async function main(opts: LightAgentsOptions): Promise<void> {
  const phases = new Phases();
  const agents: LightAgent[] = [];
  // Each line on stdin starts a phase: its name.
  createInterface({ input: process.stdin }).on('line', (name) => phases.next(name.trim()));
  const ended = new Promise<void>((resolve) => process.stdin.once('end', resolve));
  for (let i = 0; i < opts.count; i++) {
    const agent = new LightAgent(i, opts, phases);
    agents.push(agent);
    if ((i + 1) % opts.connectPer100Ms === 0) await new Promise((r) => setTimeout(r, 100));
  }
  await ended;
  phases.end();
  print({ t: 'stats', phases: phases.done, sessionErrors: agents.reduce((n, a) => n + a.errors, 0) });
  for (const a of agents) a.close();
}

if (process.argv[1] && path.resolve(process.argv[1]) === self) {
  main(JSON.parse(process.argv[2] ?? '{}') as LightAgentsOptions).then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`light agents: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
