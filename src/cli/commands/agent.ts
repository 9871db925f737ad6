import type { Command } from 'commander';
import { Agent } from '../../agent/agent.ts';
import { DEFAULT_CONFIG_FILE, loadAgentConfig, type AgentConfig } from '../../agent/agent-config.ts';
import { createLogger, logFormatFrom } from '../../util/logger.ts';
import { hostShuttingDown, sdNotify } from '../../agent/systemd.ts';
import { prepareAgentTransport } from '../../security/agent-transport.ts';

interface AgentFlags {
  config?: string;
  coordinator?: string;
  stateDir?: string;
  workRoot?: string;
  socket?: string;
  nodeName?: string;
  label?: string[];
  nvidiaSmi?: string;
  dockerHost?: string;
  metricsListen?: string;
  logLevel?: string;
  logFormat?: string;
  insecure?: boolean;
}

/**
 * The secret values the agent holds: S3 secret keys and session credentials,
 * registry passwords. Its logger removes them from any line they turn up in.
 */
export function agentSecrets(config: Pick<AgentConfig, 's3' | 'registries'> & Partial<Pick<AgentConfig, 'coordinator'>>, env: NodeJS.ProcessEnv = process.env): string[] {
  const secrets = [
    config.coordinator?.tls?.joinToken,
    ...Object.values(config.s3.endpoints).map((e) => e.secretAccessKey),
    ...config.registries.map((r) => r.password),
    env.AWS_SECRET_ACCESS_KEY,
    env.AWS_SESSION_TOKEN,
  ];
  return secrets.filter((s): s is string => s !== undefined && s !== '');
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run the node agent: register with the coordinator and run its jobs on this host')
    .option('-c, --config <file>', `configuration file (default ${DEFAULT_CONFIG_FILE} when present)`)
    .option('--coordinator <host:port>', 'coordinator address (env STEVEDORE_COORDINATOR)')
    .option('--state-dir <dir>', 'node id, journal, attempt records and job logs (env STEVEDORE_STATE_DIR)')
    .option('--work-root <dir>', "jobs' directories; mounts stay inside (env STEVEDORE_WORK_ROOT)")
    .option('--socket <path>', "the agent's local API socket (env STEVEDORE_SOCKET)")
    .option('--node-name <name>', 'name shown for this node (default: hostname)')
    .option('--label <key=value>', 'node label, repeatable (zone, region, instance-type, spot)', collect)
    .option('--nvidia-smi <path>', 'nvidia-smi to query GPUs with')
    .option('--docker-host <url>', 'Docker Engine API, e.g. unix:///var/run/docker.sock (env DOCKER_HOST)')
    .option('--metrics-listen <host:port>', 'serve /metrics, /livez and /readyz on this address, or off (default 0.0.0.0:9464; env STEVEDORE_METRICS_LISTEN)')
    .option('--log-level <level>', 'trace, debug, info, warn or error (env STEVEDORE_LOG_LEVEL)')
    .option('--log-format <format>', 'json (default: one JSON object per line, for journald) or pretty (for a terminal) (env STEVEDORE_LOG_FORMAT)')
    .option('--insecure', 'plaintext to the coordinator, without TLS or a join token: for a trusted loopback only; logs a warning')
    .action(async (flags: AgentFlags) => {
      const format = logFormatFrom(flags.logFormat);
      const config = loadAgentConfig({
        ...(flags.config ? { file: flags.config, fileIsExplicit: true } : { file: DEFAULT_CONFIG_FILE, fileIsExplicit: false }),
        env: process.env,
        flags: {
          ...(flags.coordinator !== undefined && { coordinator: flags.coordinator }),
          ...(flags.stateDir !== undefined && { stateDir: flags.stateDir }),
          ...(flags.workRoot !== undefined && { workRoot: flags.workRoot }),
          ...(flags.socket !== undefined && { socket: flags.socket }),
          ...(flags.nodeName !== undefined && { nodeName: flags.nodeName }),
          ...(flags.label !== undefined && { labels: flags.label }),
          ...(flags.nvidiaSmi !== undefined && { nvidiaSmi: flags.nvidiaSmi }),
          ...(flags.dockerHost !== undefined && { dockerHost: flags.dockerHost }),
          ...(flags.logLevel !== undefined && { logLevel: flags.logLevel }),
          ...(flags.metricsListen !== undefined && { metricsListen: flags.metricsListen }),
          ...(flags.insecure === true && { insecure: true }),
        },
      });
      const logger = createLogger({ level: config.logLevel, name: 'stevedore-agent', format, secrets: agentSecrets(config) });
      prepareAgentTransport(config, logger);
      const agent = await Agent.start({ config, logger });
      sdNotify('READY=1', logger);
      logger.info({ nodeId: agent.nodeId, coordinator: config.coordinator.address, socket: config.socketPath }, 'agent running');
      const windowMs = config.preemption.sigtermWindowSeconds * 1000;
      await waitForShutdown(
        async (signal) => {
          // A host shutdown is a preemption with systemd's stop timeout as its
          // window; a restart of the agent alone leaves the jobs running.
          const drainIt = signal === 'SIGTERM' && (config.preemption.drainOnSigterm === 'always' || (config.preemption.drainOnSigterm === 'auto' && (await hostShuttingDown())));
          if (drainIt) {
            const now = Date.now();
            await agent.onNotice({ id: `sigterm-${now}`, source: 'sigterm', kind: 'host shutdown', deadlineMs: now + windowMs, receivedMs: now, advisory: false });
          }
          await agent.close();
        },
        (signal) => (signal === 'SIGTERM' && config.preemption.drainOnSigterm !== 'never' ? windowMs : 0) + config.shutdownTimeoutSeconds * 1000,
        logger,
      );
    });
}

/**
 * Resolves once SIGTERM or SIGINT has been handled: `close` runs with a bound
 * on its time, and a second signal exits at once. Handlers are removed after.
 */
export async function waitForShutdown(
  close: (signal: NodeJS.Signals) => Promise<void>,
  timeoutFor: (signal: NodeJS.Signals) => number,
  logger: { warn: (o: object, m: string) => void },
): Promise<void> {
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const timeoutMs = timeoutFor(signal);
  const force = (): void => process.exit(130);
  process.once('SIGTERM', force);
  process.once('SIGINT', force);
  logger.warn({ signal }, 'shutting down');
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  const result = await Promise.race([close(signal).then(() => 'closed' as const), timedOut]);
  clearTimeout(timer);
  process.removeListener('SIGTERM', force);
  process.removeListener('SIGINT', force);
  if (result === 'timeout') {
    logger.warn({ timeoutMs }, 'shutdown took too long; exiting anyway');
    process.exit(1);
  }
}
