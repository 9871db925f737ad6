// A real cluster on one machine for end-to-end tests: the coordinator and
// agents run as `stevedore` child processes (so they can be killed with
// SIGKILL and restarted), against the private Docker engine of the test run.
// Their logs (stdout and stderr) go to the run's log directory
// (test/helpers/test-log.ts), and the agents' job logs are copied there at close,
// so that the scan for secrets covers them.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, openSync, closeSync, writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { stringify } from 'yaml';
import { ControlClient } from '../../src/client/control-client.ts';
import { writeFakeNvidiaSmi } from './fake-gpus.ts';
import { testLogFile } from './test-log.ts';

const root = path.resolve(import.meta.dirname, '..', '..');
const stevedoreBin = path.join(root, 'bin', 'stevedore.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

class Proc {
  child: ChildProcess | undefined;
  readonly logFile: string;
  private readonly args: string[];
  private readonly env: NodeJS.ProcessEnv;

  constructor(args: string[], logFile: string, env: NodeJS.ProcessEnv = {}) {
    this.args = args;
    this.logFile = logFile;
    this.env = env;
  }

  start(): void {
    const fd = openSync(this.logFile, 'a');
    this.child = spawn(process.execPath, [stevedoreBin, ...this.args], {
      stdio: ['ignore', fd, fd],
      env: { ...process.env, ...this.env },
    });
    closeSync(fd);
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Sends the signal and waits for the process to go. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20000): Promise<number | null> {
    const child = this.child;
    if (!child || !this.running) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  }

  log(): string {
    return readFileSync(this.logFile, 'utf8');
  }

  /** host:port of the /metrics, /livez and /readyz server, from the process's newest "metrics listening" log line. */
  async metricsAddress(timeoutMs = 10000): Promise<string> {
    let address: string | undefined;
    await waitUntil(() => {
      for (const line of this.log().split('\n')) {
        if (!line.includes('"metrics listening"')) continue;
        try {
          address = (JSON.parse(line) as { address?: string }).address ?? address;
        } catch {
          // not a JSON log line
        }
      }
      return address !== undefined;
    }, timeoutMs, () => `no "metrics listening" line in ${this.logFile}`);
    return address ?? '';
  }
}

export interface AgentHandle {
  name: string;
  dir: string;
  stateDir: string;
  socket: string;
  proc: Proc;
  gpuUuids: string[];
}

export class Cluster {
  readonly dir: string;
  readonly port: number;
  readonly coordinatorProc: Proc;
  readonly agents = new Map<string, AgentHandle>();
  readonly client: ControlClient;
  private readonly dockerHost: string;

  private constructor(dir: string, port: number, dockerHost: string, leaseSeconds: number) {
    this.dir = dir;
    this.port = port;
    this.dockerHost = dockerHost;
    mkdirSync(dir, { recursive: true });
    this.coordinatorProc = new Proc(
      ['coordinator', '--listen', `127.0.0.1:${port}`, '--db', path.join(dir, 'coordinator.db'), '--lease-seconds', String(leaseSeconds), '--heartbeat-seconds', '1', '--metrics-listen', '127.0.0.1:0'],
      testLogFile(`cluster-${port}-coordinator`),
    );
    this.client = new ControlClient({ address: this.address });
  }

  static async start(dir: string, opts: { dockerHost: string; leaseSeconds?: number }): Promise<Cluster> {
    const cluster = new Cluster(dir, await freePort(), opts.dockerHost, opts.leaseSeconds ?? 30);
    cluster.coordinatorProc.start();
    await cluster.waitForCoordinator();
    return cluster;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async waitForCoordinator(timeoutMs = 20000): Promise<void> {
    await waitUntil(async () => {
      try {
        await this.client.listNodes();
        return true;
      } catch {
        return false;
      }
    }, timeoutMs, () => `coordinator did not answer; its log:\n${this.coordinatorProc.log().slice(-3000)}`);
  }

  /** Starts an agent with its own state, work root, socket and `gpus` stand-in GPUs. */
  async addAgent(name: string, gpus: number, extraConfig: Record<string, unknown> = {}): Promise<AgentHandle> {
    const dir = path.join(this.dir, name);
    mkdirSync(dir, { recursive: true });
    const nvidiaSmi = writeFakeNvidiaSmi(path.join(dir, 'gpu'), gpus);
    const gpuUuids = (JSON.parse(readFileSync(path.join(dir, 'gpu', 'gpus.json'), 'utf8')) as { gpus?: { uuid: string }[] } | { uuid: string }[]);
    const list = Array.isArray(gpuUuids) ? gpuUuids : (gpuUuids.gpus ?? []);
    const config = {
      coordinator: { address: this.address },
      nodeName: name,
      stateDir: path.join(dir, 'state'),
      workRoot: path.join(dir, 'work'),
      socketPath: path.join(dir, 'agent.sock'),
      dockerHost: this.dockerHost,
      nvidiaSmiPath: nvidiaSmi,
      labels: { zone: `zone-${name}`, spot: 'true' },
      reconnect: { initialMs: 100, maxMs: 1000 },
      pullInactivityTimeoutSeconds: 20,
      logLevel: 'debug',
      // Tests never ask the link-local metadata address; drills point a detector at a stand-in on loopback.
      preemption: { cloud: 'none' },
      // Agents share this host: each gets a free port (proc.metricsAddress()).
      metrics: { listen: '127.0.0.1:0' },
      ...extraConfig,
    };
    writeFileSync(path.join(dir, 'agent.yaml'), stringify(config));
    const proc = new Proc(['agent', '--config', path.join(dir, 'agent.yaml')], testLogFile(`cluster-${this.port}-${name}`));
    const handle: AgentHandle = { name, dir, stateDir: config.stateDir, socket: config.socketPath, proc, gpuUuids: list.map((g) => g.uuid) };
    this.agents.set(name, handle);
    proc.start();
    await this.waitForNode(name);
    return handle;
  }

  async waitForNode(name: string, state = 'online', timeoutMs = 30000): Promise<void> {
    const agent = this.agents.get(name);
    await waitUntil(async () => {
      const nodes = await this.client.listNodes();
      return nodes.some((n) => n.hostname === name && n.state === state);
    }, timeoutMs, () => `node ${name} not ${state}; agent log:\n${agent?.proc.log().slice(-3000) ?? ''}`);
  }

  async waitForJob(jobId: string, states: string[], timeoutMs = 60000): Promise<Awaited<ReturnType<ControlClient['getJob']>>> {
    let last: Awaited<ReturnType<ControlClient['getJob']>> | undefined;
    await waitUntil(async () => {
      last = await this.client.getJob(jobId);
      return states.includes(last.state);
    }, timeoutMs, () => `job ${jobId} not in ${states.join('/')}; it is ${last?.state} (${last?.message}); coordinator log tail:\n${this.coordinatorProc.log().slice(-2000)}\n${[...this.agents.values()].map((a) => `${a.name} log tail:\n${a.proc.log().slice(-2000)}`).join('\n')}`);
    if (!last) throw new Error('unreachable');
    return last;
  }

  async close(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.proc.stop('SIGTERM')));
    await this.coordinatorProc.stop('SIGTERM');
    this.client.close();
    for (const agent of this.agents.values()) {
      const jobLogs = path.join(agent.stateDir, 'logs');
      if (existsSync(jobLogs)) cpSync(jobLogs, `${agent.proc.logFile.replace(/\.log$/, '')}-job-logs`, { recursive: true });
    }
  }
}

export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
