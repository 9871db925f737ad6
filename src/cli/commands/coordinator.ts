// `stevedore coordinator`: runs the reference coordinator until SIGTERM/SIGINT.
import type { Command } from 'commander';
import { Coordinator } from '../../coordinator/coordinator.ts';
import { createLogger, logFormatFrom, parseLogLevel } from '../../util/logger.ts';
import { StevedoreError } from '../../util/errors.ts';
import { printJson } from '../output.ts';

interface CoordinatorFlags {
  listen: string;
  db: string;
  leaseSeconds: string;
  heartbeatSeconds: string;
  metricsListen: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  joinSecret?: string;
  insecure?: boolean;
  json?: boolean;
  logLevel?: string;
  logFormat?: string;
}

function seconds(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new StevedoreError('CONFIG_INVALID', `--${flag} must be a positive number of seconds, not "${value}"`);
  return Math.round(n * 1000);
}

export function registerCoordinator(program: Command): void {
  program
    .command('coordinator')
    .description('run the reference coordinator: the agents connect to it, operators submit jobs to it')
    .option('--listen <host:port>', 'address to listen on', '0.0.0.0:7443')
    .option('--db <file>', 'SQLite database holding the state', '/var/lib/stevedore/coordinator.db')
    .option('--lease-seconds <n>', 'a node silent for this long is lost', '30')
    .option('--heartbeat-seconds <n>', 'how often agents send heartbeats', '5')
    .option('--metrics-listen <host:port>', 'serve /metrics, /livez and /readyz on this address, or off', '0.0.0.0:9465')
    .option('--tls-ca <file>', 'CA bundle for client certificates (TLS with client certificates)')
    .option('--tls-cert <file>', 'certificate chain of the coordinator')
    .option('--tls-key <file>', 'private key of the coordinator')
    .option('--join-secret <file>', 'secret that join tokens are checked against (made by `stevedore certs ca`); required with TLS')
    .option('--insecure', 'plaintext without TLS, client certificates or join tokens: for a trusted loopback only; logs a warning')
    .option('--json', 'print JSON')
    .option('--log-level <level>', 'fatal, error, warn, info (default), debug, trace or silent (env STEVEDORE_LOG_LEVEL)')
    .option('--log-format <format>', 'json (default: one JSON object per line, for journald) or pretty (for a terminal) (env STEVEDORE_LOG_FORMAT)')
    .action(async (flags: CoordinatorFlags) => {
      const tlsFlags = [flags.tlsCa, flags.tlsCert, flags.tlsKey].filter((f) => f !== undefined).length;
      if (tlsFlags !== 0 && tlsFlags !== 3) {
        throw new StevedoreError('CONFIG_INVALID', 'TLS needs all of --tls-ca, --tls-cert and --tls-key, or none of them');
      }
      if (tlsFlags === 0 && !flags.insecure) {
        throw new StevedoreError(
          'INSECURE_NOT_ALLOWED',
          'the coordinator needs TLS: give --tls-ca, --tls-cert, --tls-key and --join-secret (make them with `stevedore certs ca --out DIR` and `stevedore certs coordinator --ca DIR --host NAME --out DIR`), or add --insecure for plaintext on a trusted loopback',
        );
      }
      if (tlsFlags === 3 && flags.insecure) throw new StevedoreError('CONFIG_INVALID', '--insecure and the --tls-* flags exclude each other: leave out --insecure to serve TLS');
      if (tlsFlags === 3 && flags.joinSecret === undefined) {
        throw new StevedoreError('CONFIG_INVALID', 'with TLS the coordinator needs --join-secret FILE, the secret that join tokens are checked against: `stevedore certs ca` made one beside the CA (join-secret)');
      }
      if (tlsFlags === 0 && flags.joinSecret !== undefined) throw new StevedoreError('CONFIG_INVALID', '--join-secret needs TLS (--tls-ca, --tls-cert, --tls-key): tokens are not sent in plaintext');
      const envLevel = process.env.STEVEDORE_LOG_LEVEL;
      const level = flags.logLevel !== undefined ? parseLogLevel(flags.logLevel, '--log-level') : envLevel !== undefined && envLevel !== '' ? parseLogLevel(envLevel, 'STEVEDORE_LOG_LEVEL') : 'info';
      const logger = createLogger({ name: 'stevedore-coordinator', level, format: logFormatFrom(flags.logFormat) });
      const coordinator = new Coordinator({
        listen: flags.listen,
        dbPath: flags.db,
        leaseMs: seconds('lease-seconds', flags.leaseSeconds),
        heartbeatIntervalMs: seconds('heartbeat-seconds', flags.heartbeatSeconds),
        metricsListen: flags.metricsListen,
        logger,
        ...(flags.tlsCa && flags.tlsCert && flags.tlsKey ? { tls: { ca: flags.tlsCa, cert: flags.tlsCert, key: flags.tlsKey, ...(flags.joinSecret !== undefined ? { joinSecret: flags.joinSecret } : {}) } } : {}),
      });
      const { address, metricsAddress } = await coordinator.start();
      if (flags.json) printJson({ address, db: flags.db, ...(metricsAddress ? { metricsAddress } : {}) });
      else process.stdout.write(`stevedore coordinator listening on ${address} (state in ${flags.db})${metricsAddress ? `; metrics and health checks on http://${metricsAddress}` : ''}\n`);
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        const onSignal = (sig: NodeJS.Signals): void => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          resolve(sig);
        };
        process.on('SIGTERM', onSignal);
        process.on('SIGINT', onSignal);
      });
      logger.info({ signal }, 'shutting down');
      await coordinator.close();
    });
}
