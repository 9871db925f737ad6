// The agent's one long-lived session with its coordinator. The agent dials
// out (so it works behind NAT), registers, replays every journaled event the
// coordinator has not acknowledged, then sends heartbeats and new events and
// answers commands. Whatever ends the stream, it dials again with jittered
// exponential backoff; running jobs never notice.
import * as grpc from '@grpc/grpc-js';
import type { AgentMessage, CoordinatorMessage__Output, EventMessage } from '../proto/load.ts';
import { v1 } from '../proto/load.ts';
import type { Command__Output } from '../gen/stevedore/v1/Command.ts';
import type { Register } from '../gen/stevedore/v1/Register.ts';
import type { GpuHealth } from '../gen/stevedore/v1/GpuHealth.ts';
import { Backoff, isRetryable } from '../util/backoff.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import type { EventJournal, JournalEvent } from './event-journal.ts';
import { clientCredentials, type ClientTls } from '../security/tls.ts';
import { JOIN_TOKEN_METADATA_KEY } from '../security/join-token.ts';

export type SessionState = 'connecting' | 'connected' | 'backoff' | 'stopped';

export interface CommandResult {
  accepted: boolean;
  error?: { code: string; message: string };
}

export interface CoordinatorSessionOptions {
  address: string;
  /**
   * TLS with this client certificate; the coordinator's must chain to `ca` and
   * be a coordinator certificate. The join token, if any, goes as call metadata
   * on every session stream. Undefined: plaintext.
   */
  tls: (ClientTls & { joinToken?: string | undefined }) | undefined;
  journal: EventJournal;
  clock: Clock;
  logger: Logger;
  reconnect: { initialMs: number; maxMs: number };
  /** Built afresh for every registration: inventory and attempts change. */
  buildRegister: () => Promise<Register>;
  onCommand: (command: Command__Output) => Promise<CommandResult>;
  onEventsAcked: (upToEventId: number) => void;
  runningAttempts: () => number;
  /** The current health of every GPU, sent with each heartbeat. */
  gpuHealth?: () => GpuHealth[];
  /** How long to wait for `registered` after dialing. */
  registerTimeoutMs?: number;
}

export class CoordinatorSession {
  private readonly opts: CoordinatorSessionOptions;
  private readonly client: InstanceType<typeof v1.AgentSession>;
  private readonly backoff: Backoff;
  private readonly log: Logger;
  private call: grpc.ClientDuplexStream<AgentMessage, CoordinatorMessage__Output> | undefined;
  private stopped = false;
  private retryTimer: Timer | undefined;
  private heartbeatTimer: Timer | undefined;
  private livenessTimer: Timer | undefined;
  private registerTimer: Timer | undefined;
  private unsubscribe: (() => void) | undefined;
  private sentUpTo = 0;
  private heartbeatMs = 5000;
  private leaseMs = 30000;
  private _state: SessionState = 'connecting';
  sessionId = '';
  connectedSinceMs = 0;
  lastError = '';
  reconnects = 0;

  constructor(opts: CoordinatorSessionOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'session', coordinator: opts.address });
    this.backoff = new Backoff(opts.reconnect);
    const { credentials, options } = opts.tls ? clientCredentials(opts.tls, 'check coordinator.tls in the agent configuration') : { credentials: grpc.credentials.createInsecure(), options: {} };
    this.client = new v1.AgentSession(opts.address, credentials, {
      ...options,
      'grpc.max_receive_message_length': 8 * 1024 * 1024,
      'grpc.initial_reconnect_backoff_ms': opts.reconnect.initialMs,
      'grpc.max_reconnect_backoff_ms': opts.reconnect.maxMs,
    });
  }

  get state(): SessionState {
    return this._state;
  }

  start(): void {
    this.dial();
  }

  /** Ends the session; the coordinator sees the stream close. Safe twice. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.retryTimer?.cancel();
    this.teardown();
    this._state = 'stopped';
    this.client.close();
  }

  private dial(): void {
    if (this.stopped) return;
    this._state = 'connecting';
    const metadata = new grpc.Metadata();
    if (this.opts.tls?.joinToken) metadata.set(JOIN_TOKEN_METADATA_KEY, this.opts.tls.joinToken);
    const call = this.client.connect(metadata);
    this.call = call;
    let registered = false;
    call.on('data', (msg: CoordinatorMessage__Output) => {
      if (this.call !== call) return;
      this.armLiveness();
      if (msg.msg === 'registered' && msg.registered && !registered) {
        registered = true;
        this.onRegistered(msg.registered);
      } else if (!registered) {
        this.log.warn({ msg: msg.msg }, 'coordinator sent a message before registering the node; ignored');
      } else {
        this.handle(msg);
      }
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (this.call !== call) return;
      this.onEnded(err.code, err.details || err.message);
    });
    call.on('end', () => {
      if (this.call !== call) return;
      this.onEnded(grpc.status.UNAVAILABLE, 'coordinator closed the session');
    });
    this.registerTimer = this.opts.clock.setTimeout(() => {
      if (this.call === call && !registered) {
        this.log.warn('no answer to registration in time; dialing again');
        call.cancel();
        this.onEnded(grpc.status.DEADLINE_EXCEEDED, 'no answer to registration in time');
      }
    }, this.opts.registerTimeoutMs ?? 10000);
    this.opts.buildRegister().then(
      (register) => {
        if (this.call === call) call.write({ register });
      },
      (err: unknown) => {
        this.log.error({ err }, 'cannot build the registration');
        if (this.call === call) {
          call.cancel();
          this.onEnded(grpc.status.INTERNAL, messageOf(err));
        }
      },
    );
  }

  private onRegistered(reg: NonNullable<CoordinatorMessage__Output['registered']>): void {
    this.registerTimer?.cancel();
    this._state = 'connected';
    this.sessionId = reg.sessionId;
    this.connectedSinceMs = this.opts.clock.now();
    this.heartbeatMs = reg.heartbeatIntervalMs > 0 ? reg.heartbeatIntervalMs : 5000;
    this.leaseMs = reg.leaseMs > 0 ? reg.leaseMs : 30000;
    this.backoff.reset();
    this.lastError = '';
    this.log.info({ sessionId: reg.sessionId, ackedEventId: reg.ackedEventId, pending: this.opts.journal.pending().length }, 'registered with coordinator');
    this.acked(reg.ackedEventId);
    // Resume after what the journal accepted as acknowledged, not after the claim itself: an ack
    // the agent refused (beyond any id it could assign) must not hold back its events.
    this.sentUpTo = Math.min(reg.ackedEventId, this.opts.journal.ackedEventId);
    this.unsubscribe = this.opts.journal.onAppend(() => this.pump());
    this.pump();
    this.scheduleHeartbeat();
    this.armLiveness();
  }

  private handle(msg: CoordinatorMessage__Output): void {
    switch (msg.msg) {
      case 'eventAck':
        if (msg.eventAck) this.acked(msg.eventAck.upToEventId);
        return;
      case 'heartbeatAck':
        return;
      case 'command':
        if (msg.command) this.runCommand(msg.command);
        return;
      case 'error':
        this.log.warn({ error: msg.error?.error }, 'coordinator could not use a message from this agent');
        return;
      default:
        this.log.warn({ msg: msg.msg }, 'unexpected message from coordinator ignored');
    }
  }

  private runCommand(command: Command__Output): void {
    const call = this.call;
    const reply = (result: CommandResult): void => {
      if (this.call !== call || !call) return;
      call.write({ commandAck: { commandId: command.commandId, accepted: result.accepted, error: result.error ?? null } });
    };
    this.opts.onCommand(command).then(reply, (err: unknown) => {
      this.log.error({ err, commandId: command.commandId }, 'command handler failed');
      reply({ accepted: false, error: { code: 'INTERNAL', message: messageOf(err) } });
    });
  }

  private acked(upTo: number): void {
    if (upTo <= 0) return;
    this.opts.onEventsAcked(upTo);
  }

  /** Sends journaled events after the last one sent, in id order. */
  private pump(): void {
    const call = this.call;
    if (!call || this._state !== 'connected') return;
    for (const event of this.opts.journal.pending()) {
      if (event.eventId <= this.sentUpTo) continue;
      call.write({ event: toWire(event) });
      this.sentUpTo = event.eventId;
    }
  }

  private scheduleHeartbeat(): void {
    this.heartbeatTimer?.cancel();
    this.heartbeatTimer = this.opts.clock.setTimeout(() => this.heartbeatNow(), this.heartbeatMs);
  }

  /** Sends a heartbeat now (e.g. GPU health changed) and starts the interval again; nothing while not connected. */
  heartbeatNow(): void {
    if (this._state !== 'connected' || !this.call) return;
    this.call.write({ heartbeat: { sentAtMs: this.opts.clock.now(), runningAttempts: this.opts.runningAttempts(), gpuHealth: this.opts.gpuHealth?.() ?? [] } });
    this.scheduleHeartbeat();
  }

  /** A coordinator that stops answering (a dead peer, a silent network) is dialed again. */
  private armLiveness(): void {
    this.livenessTimer?.cancel();
    const call = this.call;
    const limit = Math.max(this.leaseMs, this.heartbeatMs * 3);
    this.livenessTimer = this.opts.clock.setTimeout(() => {
      if (this.call !== call || !call) return;
      this.log.warn({ silentMs: limit }, 'coordinator silent; dialing again');
      call.cancel();
      this.onEnded(grpc.status.UNAVAILABLE, `no message from the coordinator for ${limit} ms`);
    }, limit);
  }

  private onEnded(code: grpc.status, details: string): void {
    this.teardown();
    if (this.stopped) return;
    this.reconnects++;
    this.lastError = `${grpc.status[code] ?? code}: ${details}`;
    // Only transient failures get the quick retry. A refusal (bad
    // registration, wrong version, credentials) needs an operator, so the
    // agent keeps its jobs and asks again only at the slowest pace.
    const delay = isRetryable(code) || code === grpc.status.CANCELLED ? this.backoff.next() : this.opts.reconnect.maxMs;
    const level = isRetryable(code) ? 'warn' : 'error';
    this.log[level]({ code: grpc.status[code], details, retryInMs: delay }, 'session with coordinator ended');
    this._state = 'backoff';
    this.retryTimer = this.opts.clock.setTimeout(() => this.dial(), delay);
  }

  private teardown(): void {
    this.heartbeatTimer?.cancel();
    this.livenessTimer?.cancel();
    this.registerTimer?.cancel();
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    const call = this.call;
    this.call = undefined;
    this.sessionId = '';
    if (call) {
      call.removeAllListeners('data');
      call.on('error', () => undefined);
      call.end();
      call.cancel();
    }
  }
}

function toWire(event: JournalEvent): NonNullable<AgentMessage['event']> {
  // The journal keeps states as the wire's strings; the agent wrote them from toWireState.
  const body = event.body as Pick<EventMessage, 'stateChanged' | 'exited' | 'logs' | 'checkpointCommitted' | 'checkpointRestored' | 'preemptionNotice' | 'drainReport'>;
  return { eventId: event.eventId, timeMs: event.timeMs, jobId: event.jobId, attempt: event.attempt, ...body };
}
