// A real cluster on one machine for end-to-end tests: the coordinator and
// agents run as `stevedore` child processes (so they can be killed with
// SIGKILL and restarted), against the private Docker engine of the test run.
// They speak mutual TLS with join tokens by default, as in production: a CA
// made for the cluster in its directory, a certificate per agent (its node
// id), an operator certificate for the tests' client and CLI (cliEnv). The join
// secret is the canary, so that the scan for secrets would catch it in a log.
// Their logs (stdout and stderr) go to the run's log directory
// (test/helpers/test-log.ts), and at close the agents' job logs are copied
// there and what was stored is written there as text (the coordinator's events,
// log lines and job and attempt messages; each agent's event journal), so that
// the scan for secrets covers them.
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, openSync, closeSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import net from 'node:net';
import path from 'node:path';
import { stringify } from 'yaml';
import { randomBytes } from 'node:crypto';
import { ControlClient } from '../../src/client/control-client.ts';
import { createCa, issueCertificate } from '../../src/security/certs.ts';
import * as grpc from '@grpc/grpc-js';
import { v1 } from '../../src/proto/load.ts';
import { issueJoinToken, JOIN_TOKEN_METADATA_KEY } from '../../src/security/join-token.ts';
import { clientCredentials } from '../../src/security/tls.ts';
import { identityFromPem } from '../../src/security/identity.ts';
import type { TlsFiles } from '../../src/security/tls.ts';
import { CANARY_JOIN_TOKEN } from './secrets.ts';
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

/** The cluster's PKI: its CA directory, the coordinator's files and the operator's (also the CLI's STEVEDORE_TLS_DIR). */
export interface ClusterPki {
  caDir: string;
  joinSecretFile: string;
  coordinator: TlsFiles;
  operator: TlsFiles;
  operatorDir: string;
}

async function makeClusterPki(dir: string): Promise<ClusterPki> {
  const caDir = path.join(dir, 'pki', 'ca');
  const ca = await createCa(caDir, { force: true });
  writeFileSync(ca.joinSecret, `${CANARY_JOIN_TOKEN}\n`, { mode: 0o600 });
  const coordinator = await issueCertificate({ caDir, kind: 'coordinator', name: 'localhost', hosts: ['localhost', '127.0.0.1'], outDir: path.join(dir, 'pki', 'coordinator'), force: true });
  const operatorDir = path.join(dir, 'pki', 'operator');
  const operator = await issueCertificate({ caDir, kind: 'operator', name: 'e2e-tests', outDir: operatorDir, force: true });
  return { caDir, joinSecretFile: ca.joinSecret, coordinator: { ca: coordinator.ca, cert: coordinator.cert, key: coordinator.key }, operator: { ca: operator.ca, cert: operator.cert, key: operator.key }, operatorDir };
}

export class Cluster {
  readonly dir: string;
  /** Undefined for a cluster started with insecure: true (plaintext). */
  readonly pki: ClusterPki | undefined;
  readonly port: number;
  readonly coordinatorProc: Proc;
  readonly agents = new Map<string, AgentHandle>();
  readonly client: ControlClient;
  /** The text files close() wrote into the run's log directory (stored events, journals). */
  readonly dumps: string[] = [];
  private readonly dockerHost: string;

  private constructor(dir: string, port: number, dockerHost: string, leaseSeconds: number, pki: ClusterPki | undefined) {
    this.dir = dir;
    this.port = port;
    this.dockerHost = dockerHost;
    this.pki = pki;
    mkdirSync(dir, { recursive: true });
    const security = pki
      ? ['--tls-ca', pki.coordinator.ca, '--tls-cert', pki.coordinator.cert, '--tls-key', pki.coordinator.key, '--join-secret', pki.joinSecretFile]
      : ['--insecure'];
    this.coordinatorProc = new Proc(
      ['coordinator', '--listen', `127.0.0.1:${port}`, '--db', path.join(dir, 'coordinator.db'), '--lease-seconds', String(leaseSeconds), '--heartbeat-seconds', '1', '--metrics-listen', '127.0.0.1:0', ...security],
      testLogFile(`cluster-${port}-coordinator`),
    );
    this.client = new ControlClient({ address: this.address, ...(pki && { tls: pki.operator }) });
  }

  /** Starts the coordinator; TLS with client certificates and join tokens unless insecure. */
  static async start(dir: string, opts: { dockerHost: string; leaseSeconds?: number; insecure?: boolean }): Promise<Cluster> {
    mkdirSync(dir, { recursive: true });
    const pki = opts.insecure ? undefined : await makeClusterPki(dir);
    const cluster = new Cluster(dir, await freePort(), opts.dockerHost, opts.leaseSeconds ?? 30, pki);
    cluster.coordinatorProc.start();
    await cluster.waitForCoordinator();
    return cluster;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** The environment for `stevedore` CLI commands against this cluster: its address and the operator's certificate. */
  get cliEnv(): Record<string, string> {
    return { STEVEDORE_COORDINATOR: this.address, ...(this.pki ? { STEVEDORE_TLS_DIR: this.pki.operatorDir } : { STEVEDORE_INSECURE: '1' }) };
  }

  /**
   * A raw AgentSession client that the coordinator admits (a new node's
   * certificate, and its join token in the metadata to connect with), for tests
   * that speak the session protocol themselves.
   */
  async agentSessionClient(name: string): Promise<{ client: InstanceType<typeof v1.AgentSession>; metadata: grpc.Metadata; nodeId?: string }> {
    const metadata = new grpc.Metadata();
    if (!this.pki) return { client: new v1.AgentSession(this.address, grpc.credentials.createInsecure()), metadata };
    const dir = path.join(this.dir, `session-${name}`);
    const config = (await this.agentCoordinatorConfig(dir)) as { tls: TlsFiles; joinTokenFile: string };
    const { credentials, options } = clientCredentials(config.tls, 'test');
    metadata.set(JOIN_TOKEN_METADATA_KEY, readFileSync(config.joinTokenFile, 'utf8').trim());
    return { client: new v1.AgentSession(this.address, credentials, options), metadata, nodeId: identityFromPem(readFileSync(config.tls.cert))?.name ?? '' };
  }

  /** The coordinator section of an agent's configuration: a new node certificate and join token in `dir` (TLS), or insecure. */
  async agentCoordinatorConfig(dir: string): Promise<Record<string, unknown>> {
    if (!this.pki) return { address: this.address, insecure: true };
    // An agent added again in the same directory keeps its node id (its state directory holds it).
    const existing = path.join(dir, 'tls', 'node.pem');
    const nodeId = (existsSync(existing) ? identityFromPem(readFileSync(existing))?.name : undefined) ?? `node-${randomBytes(6).toString('hex')}`;
    const node = await issueCertificate({ caDir: this.pki.caDir, kind: 'node', name: nodeId, outDir: path.join(dir, 'tls'), force: true });
    const tokenFile = path.join(dir, 'tls', 'join-token');
    writeFileSync(tokenFile, `${issueJoinToken(Buffer.from(CANARY_JOIN_TOKEN), nodeId)}\n`, { mode: 0o600 });
    return { address: this.address, tls: { ca: node.ca, cert: node.cert, key: node.key }, joinTokenFile: tokenFile };
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
      coordinator: await this.agentCoordinatorConfig(dir),
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
    // DOCKER_HOST of the test run would win over the file's dockerHost: the cluster's engine, always.
    const proc = new Proc(['agent', '--config', path.join(dir, 'agent.yaml')], testLogFile(`cluster-${this.port}-${name}`), { DOCKER_HOST: this.dockerHost });
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
      this.dumps.push(...dumpJournal(path.join(agent.stateDir, 'journal'), `${agent.proc.logFile.replace(/\.log$/, '')}-journal.txt`));
    }
    this.dumps.push(...dumpCoordinatorStore(path.join(this.dir, 'coordinator.db'), this.coordinatorProc.logFile.replace(/-coordinator-(\d+-\d+)\.log$/, '-events-$1.txt')));
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

/**
 * Writes what a coordinator stored as text to `file` in the run's log directory,
 * for the scan for secrets: every event (one line each, its body as stored),
 * every log line, each job's and attempt's state and message. The database's
 * own files are binary and hold the same text in pages, possibly split.
 * Returns the file written ([] when there is no database).
 */
export function dumpCoordinatorStore(dbPath: string, file: string): string[] {
  if (!existsSync(dbPath)) return [];
  try {
    const db = new DatabaseSync(dbPath, { readOnly: true });
    try {
      const lines: string[] = [];
      type Row = Record<string, string | number | null>;
      for (const r of db.prepare('SELECT node_id, event_id, time_ms, job_id, attempt, kind, body FROM events ORDER BY node_id, event_id').all() as Row[]) {
        lines.push(`event ${r.node_id} ${r.event_id} ${r.time_ms} ${r.job_id}/${r.attempt} ${r.kind} ${r.body}`);
      }
      for (const r of db.prepare('SELECT job_id, state, message FROM jobs ORDER BY seq').all() as Row[]) lines.push(`job ${r.job_id} ${r.state} ${r.message}`);
      for (const r of db.prepare('SELECT job_id, attempt, node_id, state, message FROM attempts ORDER BY job_id, attempt').all() as Row[]) {
        lines.push(`attempt ${r.job_id}/${r.attempt} ${r.node_id} ${r.state} ${r.message}`);
      }
      for (const r of db.prepare('SELECT job_id, attempt, time_ms, stream, text FROM log_lines ORDER BY id').all() as Row[]) {
        lines.push(`log ${r.job_id}/${r.attempt} ${r.time_ms} ${r.stream} ${r.text}`);
      }
      writeFileSync(file, `${lines.join('\n')}\n`);
      return [file];
    } finally {
      db.close();
    }
  } catch (err) {
    // Loud, but a test's teardown goes on: the scan then misses this store.
    process.stderr.write(`cannot write the stored events of ${dbPath} to ${file}: ${err instanceof Error ? err.message : String(err)}\n`);
    return [];
  }
}

/**
 * Writes an agent's event journal (src/agent/event-journal.ts: JSON lines and
 * an ack file) as text to `file` in the run's log directory, for the scan for
 * secrets. Returns the file written ([] when there is no journal).
 */
export function dumpJournal(journalDir: string, file: string): string[] {
  if (!existsSync(journalDir)) return [];
  const parts: string[] = [];
  for (const name of readdirSync(journalDir).sort()) {
    try {
      parts.push(`== ${name}\n${readFileSync(path.join(journalDir, name), 'utf8')}`);
    } catch (err) {
      process.stderr.write(`cannot read ${path.join(journalDir, name)} for the scan for secrets: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
  writeFileSync(file, `${parts.join('\n')}\n`);
  return [file];
}
