// An agent in-process against the real test engine, driven by a scripted
// coordinator (test/helpers/fake-coordinator.ts), for agent tests.
import type { Test } from 'tap';
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Agent } from '../../src/agent/agent.ts';
import type { AgentConfig } from '../../src/agent/agent-config.ts';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { validateJobSpec, type JobSpec } from '../../src/spec/job-spec.ts';
import { testLog, type TestLog } from './test-log.ts';
import { testEngineEnv } from './engine.ts';
import { FakeCoordinator } from './fake-coordinator.ts';
import { dumpJournal } from './cluster.ts';
import { writeFakeNvidiaSmi } from './fake-gpus.ts';

export interface AgentSetup {
  coordinator: FakeCoordinator;
  config: AgentConfig;
  agent: Agent;
  /**
   * The agent's log (debug and up, JSON lines, the product's redaction), in the run's log directory;
   * at teardown its event journal (`<log>-journal.txt`) and every message it sent the coordinator
   * (`<log>-session.txt`) are written beside it as text, for the scan for secrets.
   */
  log: TestLog;
  restart(): Promise<Agent>;
}

const env = testEngineEnv();
const engine = new DockerEngine({ dockerHost: env.dockerHost });

export function trainerSpec(name: string, extra: Record<string, unknown> = {}, trainEnv: Record<string, string> = {}): JobSpec {
  return validateJobSpec({
    name,
    image: env.trainerImage,
    command: ['/stevedore/train.sh'],
    env: { TRAIN_STEPS: '5', TRAIN_STEP_SECONDS: '0.1', TRAIN_CKPT_EVERY: '2', TRAIN_CKPT_DIR: '/ckpt', ...trainEnv },
    mounts: [{ source: 'ckpt', target: '/ckpt' }],
    pullPolicy: 'never',
    stopGraceSeconds: 5,
    ...extra,
  });
}

export interface SetupOptions {
  /** Wait for the agent's registration with the scripted coordinator (default true); false for an agent pointed elsewhere. */
  waitForRegister?: boolean;
}

export async function setupAgent(t: Test, gpus = 4, overrides: Partial<AgentConfig> = {}, opts: SetupOptions = {}): Promise<AgentSetup> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stevedore-agent-'));
  const coordinator = new FakeCoordinator();
  await coordinator.start();
  const config: AgentConfig = {
    coordinator: { address: coordinator.address, tls: undefined },
    nodeName: 'test-node',
    stateDir: path.join(dir, 'state'),
    workRoot: path.join(dir, 'work'),
    socketPath: path.join(dir, 'agent.sock'),
    socketGroup: undefined,
    dockerHost: env.dockerHost,
    nvidiaSmiPath: writeFakeNvidiaSmi(path.join(dir, 'gpu'), gpus),
    labels: { zone: 'test-a', spot: 'true' },
    registries: [],
    pullInactivityTimeoutSeconds: 5,
    reconnect: { initialMs: 50, maxMs: 500 },
    shutdownTimeoutSeconds: 5,
    logLevel: 'silent',
    s3: { endpoints: {} },
    checkpoints: { partSizeMiB: 5, maxInFlightMiB: 64, rescanSeconds: 1 },
    preemption: { cloud: 'none', metadataUrl: undefined, pollSeconds: undefined, safetyMarginSeconds: 10, drainOnSigterm: 'never', sigtermWindowSeconds: 80 },
    // Several agents share this host: each gets a free port (agent.metricsAddress).
    metrics: { listen: '127.0.0.1:0' },
    ...overrides,
  };
  const log = testLog(`agent-${t.fullname}`, { level: 'debug', loggerName: 'stevedore-agent' });
  const s: AgentSetup = {
    coordinator,
    config,
    log,
    agent: await Agent.start({ config, logger: log.logger }),
    async restart() {
      await s.agent.close();
      s.agent = await Agent.start({ config, logger: log.logger });
      return s.agent;
    },
  };
  t.teardown(async () => {
    await s.agent.close();
    for (const c of await engine.list({ [LABELS.nodeId]: s.agent.nodeId })) await engine.remove(c.id);
    await coordinator.close();
    // The job logs join the run's logs, for the scan for secrets.
    const jobLogs = path.join(config.stateDir, 'logs');
    if (existsSync(jobLogs)) cpSync(jobLogs, log.file.replace(/\.log$/, '-job-logs'), { recursive: true });
    // So do its event journal and every message it sent (events, acknowledgements with their errors), as text.
    dumpJournal(path.join(config.stateDir, 'journal'), log.file.replace(/\.log$/, '-journal.txt'));
    writeFileSync(log.file.replace(/\.log$/, '-session.txt'), coordinator.received.map((m) => JSON.stringify(m)).join('\n') + '\n');
    rmSync(dir, { recursive: true, force: true });
  });
  if (opts.waitForRegister ?? true) await coordinator.waitFor((m) => m.msg === 'register');
  return s;
}

