// The reference coordinator: a gRPC server for agents (AgentSession) and
// operators (Control), with its state in SQLite. See docs/protocol.md.
import * as grpc from '@grpc/grpc-js';
import { v1 } from '../proto/load.ts';
import { systemClock } from '../util/clock.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { silentLogger } from '../util/logger.ts';
import type { Logger } from '../util/logger.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import { Store } from './store.ts';
import { Engine } from './engine.ts';
import { JobBus } from './job-bus.ts';
import { SessionRegistry, handleConnect } from './session-handler.ts';
import { controlHandlers } from './control-service.ts';
import { CoordinatorMetrics } from './coordinator-metrics.ts';
import { StatusHttpServer, isListenOff, parseListenAddress, type ReadinessCheck } from '../util/status-http-server.ts';
import { VERSION } from '../version.ts';
import { INSECURE_WARNING, serverCredentials } from '../security/tls.ts';
import { readJoinSecret } from '../security/join-token.ts';
import { requireOperator } from '../security/peer-auth.ts';

/**
 * The largest message the coordinator takes from an agent or a client (4 MiB).
 * A larger one ends that call with RESOURCE_EXHAUSTED; other calls go on. The
 * agent's messages stay far below it (a spec is at most 256 KiB, a logs event
 * at most 200 lines of 16 KiB).
 */
export const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export interface CoordinatorTlsOptions {
  /** CA bundle (PEM file) that agent and operator client certificates must chain to. */
  ca: string;
  /** The coordinator's certificate chain (PEM file). */
  cert: string;
  /** The coordinator's private key (PEM file). */
  key: string;
  /**
   * The join secret file (`stevedore certs ca` makes one): every session must
   * then carry its node's join token. Undefined: the node certificate alone admits.
   */
  joinSecret?: string;
}

export interface CoordinatorOptions {
  /** host:port to listen on; port 0 picks a free port (see start()). */
  listen: string;
  /** SQLite database file; created with its directory when missing. */
  dbPath: string;
  /** A node with no session and no heartbeat for this long is lost. Default 30000. */
  leaseMs?: number;
  /** How often agents send heartbeats (told to them in `registered`). Default 5000. */
  heartbeatIntervalMs?: number;
  /** Default: the system clock. */
  clock?: Clock;
  /** Default: a logger that drops everything. */
  logger?: Logger;
  /**
   * When given, serve TLS and require client certificates signed by `ca`:
   * agent sessions need a node certificate (and its join token, with
   * joinSecret) and register under its node id; Control calls need an operator
   * certificate. Without it the coordinator speaks plaintext and logs a warning
   * at every start (`stevedore coordinator` refuses that without --insecure).
   */
  tls?: CoordinatorTlsOptions;
  /** host:port of the HTTP server for /metrics, /livez and /readyz (port 0: a free port); undefined, "" or "off": none. */
  metricsListen?: string;
}

interface Running {
  server: grpc.Server;
  store: Store;
  engine: Engine;
  registry: SessionRegistry;
  followers: Set<() => void>;
  timer: Timer | undefined;
}

function parseListen(listen: string): { host: string; port: number } {
  const i = listen.lastIndexOf(':');
  const host = i > 0 ? listen.slice(0, i) : '';
  const port = Number(listen.slice(i + 1));
  if (i <= 0 || !host || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new StevedoreError('CONFIG_INVALID', `listen address "${listen}" is not host:port, such as 0.0.0.0:7443 or 127.0.0.1:0`);
  }
  return { host, port };
}

export class Coordinator {
  private readonly options: Required<Omit<CoordinatorOptions, 'tls' | 'metricsListen'>> & { tls?: CoordinatorTlsOptions };
  private readonly host: string;
  private readonly metricsListen: string | undefined;
  private readonly metrics: CoordinatorMetrics;
  private statusServer: StatusHttpServer | undefined;
  private listeningOn: string | undefined;
  private running: Running | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: CoordinatorOptions) {
    this.host = parseListen(options.listen).host;
    const leaseMs = options.leaseMs ?? 30_000;
    const heartbeatIntervalMs = options.heartbeatIntervalMs ?? 5_000;
    if (!Number.isInteger(leaseMs) || leaseMs <= 0) throw new StevedoreError('CONFIG_INVALID', `leaseMs must be a positive whole number of milliseconds, not ${leaseMs}`);
    if (!Number.isInteger(heartbeatIntervalMs) || heartbeatIntervalMs <= 0) {
      throw new StevedoreError('CONFIG_INVALID', `heartbeatIntervalMs must be a positive whole number of milliseconds, not ${heartbeatIntervalMs}`);
    }
    if (heartbeatIntervalMs >= leaseMs) {
      throw new StevedoreError('CONFIG_INVALID', `the heartbeat interval (${heartbeatIntervalMs} ms) must be shorter than the lease (${leaseMs} ms), or every node would be lost between heartbeats`);
    }
    if (!options.dbPath) throw new StevedoreError('CONFIG_INVALID', 'dbPath is required: the file that holds the coordinator database');
    this.metricsListen = isListenOff(options.metricsListen) ? undefined : options.metricsListen?.trim();
    if (this.metricsListen !== undefined) {
      const parsed = parseListenAddress(this.metricsListen);
      if ('error' in parsed) throw new StevedoreError('CONFIG_INVALID', `metrics listen address (--metrics-listen): ${parsed.error}`);
    }
    this.metrics = new CoordinatorMetrics(
      {
        jobStates: () => this.running?.store.listJobs().map((j) => j.state) ?? [],
        nodes: () => this.running?.engine.listNodes() ?? [],
        sessions: () => {
          const running = this.running;
          return running ? running.store.listNodes().filter((n) => running.registry.isOnline(n.nodeId)).length : 0;
        },
      },
      { version: VERSION },
    );
    this.options = {
      listen: options.listen,
      dbPath: options.dbPath,
      leaseMs,
      heartbeatIntervalMs,
      clock: options.clock ?? systemClock,
      logger: options.logger ?? silentLogger(),
      ...(options.tls ? { tls: options.tls } : {}),
    };
  }

  /** Dropped duplicate events since start (agents resending what was stored). */
  get duplicateEvents(): number {
    return this.running?.engine.duplicateEvents ?? 0;
  }

  /** host:port of the /metrics, /livez and /readyz server, once it listens; undefined when turned off. */
  get metricsAddress(): string | undefined {
    return this.statusServer?.address;
  }

  /** What /readyz reports: the store is open and the gRPC server listens. */
  private readiness(): ReadinessCheck[] {
    const up = this.running !== undefined && !this.closing;
    return [
      { name: 'store', ready: up, detail: up ? `open (${this.options.dbPath})` : 'not open' },
      { name: 'grpc', ready: up && this.listeningOn !== undefined, detail: up && this.listeningOn ? `listening on ${this.listeningOn}` : 'not listening' },
    ];
  }

  async start(): Promise<{ address: string; metricsAddress?: string }> {
    if (this.running) throw new StevedoreError('INTERNAL', 'the coordinator is already started');
    const { clock, logger, leaseMs, heartbeatIntervalMs } = this.options;
    const credentials = this.credentials();
    const tls = this.options.tls;
    const joinSecret = tls?.joinSecret !== undefined ? readJoinSecret(tls.joinSecret) : undefined;
    if (!tls) logger.warn({ listen: this.options.listen }, INSECURE_WARNING);
    // First, so that /livez answers while the rest starts.
    if (this.metricsListen && !this.statusServer) {
      this.statusServer = await StatusHttpServer.start({ listen: this.metricsListen, registry: this.metrics.registry, readiness: () => this.readiness(), logger });
    }
    const store = new Store(this.options.dbPath);
    const bus = new JobBus();
    const registry = new SessionRegistry();
    const engine = new Engine({ store, sink: registry, bus, clock, logger, leaseMs, heartbeatIntervalMs, metrics: this.metrics });
    const followers = new Set<() => void>();
    const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE_BYTES });
    server.addService(v1.AgentSession.service, {
      Connect: (call: Parameters<typeof handleConnect>[0]) =>
        handleConnect(call, { engine: () => engine, registry, clock, logger, leaseMs, heartbeatIntervalMs, ...(tls ? { auth: { joinSecret } } : {}) }),
    });
    const control = controlHandlers({ engine: () => engine, store: () => store, bus, logger, followers });
    server.addService(v1.Control.service, this.metrics.instrumentControl(tls ? requireOperator(control, logger) : control));
    let port: number;
    try {
      port = await new Promise<number>((resolve, reject) => {
        server.bindAsync(this.options.listen, credentials, (err, boundPort) => (err ? reject(err) : resolve(boundPort)));
      });
    } catch (err) {
      store.close();
      await this.statusServer?.close();
      this.statusServer = undefined;
      throw new StevedoreError('CONFIG_INVALID', `cannot listen on ${this.options.listen}: ${messageOf(err)}. Is another coordinator running there? Choose another address with --listen`, { cause: err });
    }
    this.running = { server, store, engine, registry, followers, timer: undefined };
    this.scheduleTick();
    engine.schedule();
    const address = `${this.host}:${port}`;
    this.listeningOn = address;
    logger.info({ address, db: this.options.dbPath, leaseMs, heartbeatIntervalMs, tls: Boolean(tls), joinTokens: joinSecret !== undefined }, 'coordinator started');
    return { address, ...(this.statusServer ? { metricsAddress: this.statusServer.address } : {}) };
  }

  private credentials(): grpc.ServerCredentials {
    const tls = this.options.tls;
    if (!tls) return grpc.ServerCredentials.createInsecure();
    return serverCredentials(tls);
  }

  private scheduleTick(): void {
    const running = this.running;
    if (!running) return;
    const every = Math.max(10, Math.min(1000, Math.floor(this.options.leaseMs / 4)));
    running.timer = this.options.clock.setTimeout(() => {
      if (this.running !== running || this.closing) return;
      try {
        running.engine.tick();
      } catch (err) {
        this.options.logger.error({ err: messageOf(err) }, 'lease check failed');
      }
      this.scheduleTick();
    }, every);
  }

  /** Ends every stream, stops the server and closes the database. Safe to call twice. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const running = this.running;
    if (!running) return;
    running.timer?.cancel();
    // Replies and acknowledgements that wait for a flush go out before the streams end.
    try {
      running.engine.flush();
    } catch (err) {
      this.options.logger.error({ err: messageOf(err) }, 'could not flush the database at shutdown; what waited for it is not sent');
    }
    running.registry.closeAll('the coordinator is shutting down; reconnect when it is back');
    for (const follower of [...running.followers]) follower();
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        running.server.forceShutdown();
        resolve();
      }, 2000);
      running.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    running.store.close();
    await this.statusServer?.close();
    this.options.logger.info('coordinator stopped');
  }
}
