// AgentSession.Connect: one bidirectional stream per agent. This module owns
// the framing (register first, protocol version, replies, errors); the rules
// live in the engine.
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { AgentMessage__Output, CoordinatorMessage } from '../proto/load.ts';
import { PROTOCOL_VERSION } from '../proto/load.ts';
import type { Command } from '../gen/stevedore/v1/Command.ts';
import type { Event__Output } from '../gen/stevedore/v1/Event.ts';
import type { Clock } from '../util/clock.ts';
import type { Logger } from '../util/logger.ts';
import { messageOf } from '../util/errors.ts';
import type { CommandSink, Engine } from './engine.ts';
import { admitSession, checkRegisteredNodeId, type SessionAuthOptions } from '../security/peer-auth.ts';

export type ConnectCall = grpc.ServerDuplexStream<AgentMessage__Output, CoordinatorMessage>;

export interface SessionDeps {
  engine: () => Engine;
  registry: SessionRegistry;
  clock: Clock;
  logger: Logger;
  leaseMs: number;
  heartbeatIntervalMs: number;
  /** With TLS: the caller must hold a node certificate (and its join token) and register under its node id. */
  auth?: SessionAuthOptions;
}

/** The open sessions, at most one per node: the newest wins. */
export class SessionRegistry implements CommandSink {
  private readonly sessions = new Map<string, AgentSessionStream>();
  private readonly all = new Set<AgentSessionStream>();

  /** Makes session the node's current one; returns the one it replaces. */
  attach(nodeId: string, session: AgentSessionStream): AgentSessionStream | undefined {
    const older = this.sessions.get(nodeId);
    this.sessions.set(nodeId, session);
    return older === session ? undefined : older;
  }

  /** Forgets session; true when it was the node's current one. */
  detach(nodeId: string, session: AgentSessionStream): boolean {
    if (this.sessions.get(nodeId) !== session) return false;
    this.sessions.delete(nodeId);
    return true;
  }

  track(session: AgentSessionStream): void {
    this.all.add(session);
  }

  untrack(session: AgentSessionStream): void {
    this.all.delete(session);
  }

  send(nodeId: string, command: Command): boolean {
    const session = this.sessions.get(nodeId);
    if (!session) return false;
    return session.write({ command });
  }

  isOnline(nodeId: string): boolean {
    return this.sessions.has(nodeId);
  }

  disconnect(nodeId: string, reason: string): void {
    this.sessions.get(nodeId)?.end(grpc.status.UNAVAILABLE, reason);
  }

  /** Ends every stream (coordinator shutdown). */
  closeAll(reason: string): void {
    for (const session of [...this.all]) session.end(grpc.status.UNAVAILABLE, reason);
  }
}

export function handleConnect(call: ConnectCall, deps: SessionDeps): void {
  if (!deps.auth) {
    new AgentSessionStream(call, deps, undefined);
    return;
  }
  const admission = admitSession(call, deps.auth);
  if (admission.ok) {
    new AgentSessionStream(call, deps, admission.nodeId);
    return;
  }
  deps.logger.warn({ peer: call.getPeer(), certificate: admission.certificate, claimedNodeId: admission.claimed, code: grpc.status[admission.code] }, `agent session refused: ${admission.message}`);
  call.on('error', () => undefined);
  const err: Partial<grpc.StatusObject> = { code: admission.code, details: admission.message };
  call.emit('error', err);
}

export class AgentSessionStream {
  readonly sessionId = randomUUID();
  private nodeId: string | undefined;
  private ended = false;
  private readonly call: ConnectCall;
  private readonly deps: SessionDeps;
  private readonly log: Logger;
  /** The node id the caller's certificate proves (TLS); registration must use it. */
  private readonly admittedNodeId: string | undefined;

  constructor(call: ConnectCall, deps: SessionDeps, admittedNodeId: string | undefined) {
    this.call = call;
    this.deps = deps;
    this.admittedNodeId = admittedNodeId;
    this.log = deps.logger.child({ sessionId: this.sessionId, peer: call.getPeer() });
    deps.registry.track(this);
    call.on('data', (msg: AgentMessage__Output) => this.onMessage(msg));
    call.on('end', () => this.end(grpc.status.OK, 'the agent closed the stream'));
    call.on('cancelled', () => this.finish('the agent went away'));
    call.on('error', (err: unknown) => this.finish(`stream error: ${messageOf(err)}`));
    call.on('close', () => this.finish('stream closed'));
  }

  /** Writes one message; false once the stream has ended. */
  write(msg: CoordinatorMessage): boolean {
    if (this.ended) return false;
    try {
      this.call.write(msg);
      return true;
    } catch (err) {
      this.log.warn({ err: messageOf(err) }, 'write to agent failed');
      return false;
    }
  }

  /** Ends the call with a status (OK ends it normally). Safe to call twice. */
  end(code: grpc.status, details: string): void {
    if (this.ended) return;
    this.finish(details);
    if (code === grpc.status.OK) {
      this.call.end();
    } else {
      const err: Partial<grpc.StatusObject> = { code, details };
      this.call.emit('error', err);
    }
  }

  private finish(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.deps.registry.untrack(this);
    const nodeId = this.nodeId;
    if (nodeId === undefined) return;
    this.log.info({ nodeId, reason }, 'agent session ended');
    if (this.deps.registry.detach(nodeId, this)) {
      try {
        this.deps.engine().disconnected(nodeId);
      } catch (err) {
        this.log.error({ nodeId, err: messageOf(err) }, 'could not record that the node went offline');
      }
    }
  }

  private protocolError(message: string): void {
    this.write({ error: { error: { code: 'SESSION_PROTOCOL', message } } });
  }

  private onMessage(msg: AgentMessage__Output): void {
    if (this.ended) return;
    try {
      if (this.nodeId === undefined) {
        this.onFirst(msg);
        return;
      }
      this.deps.engine().seen(this.nodeId);
      switch (msg.msg) {
        case 'heartbeat':
          if (msg.heartbeat) this.deps.engine().heartbeat(this.nodeId, msg.heartbeat);
          this.write({ heartbeatAck: { receivedAtMs: this.deps.clock.now() } });
          return;
        case 'event':
          if (msg.event) this.onEvent(this.nodeId, msg.event);
          else this.protocolError('event message without an event');
          return;
        case 'commandAck':
          if (!msg.commandAck?.commandId) {
            this.protocolError('commandAck without a commandId: echo the commandId of the command you acknowledge');
            return;
          }
          this.deps.engine().commandAck(this.nodeId, msg.commandAck);
          return;
        case 'register':
          this.protocolError('register is only allowed as the first message of a stream; open a new stream to register again');
          return;
        default:
          this.protocolError('message with no field set: send one of register, heartbeat, event or commandAck');
      }
    } catch (err) {
      this.log.error({ nodeId: this.nodeId, err: messageOf(err), msg: msg.msg }, 'could not handle agent message');
      this.write({ error: { error: { code: 'INTERNAL', message: `the coordinator could not handle this ${msg.msg ?? 'message'}: ${messageOf(err)}; it was not applied, send it again later` } } });
    }
  }

  private onFirst(msg: AgentMessage__Output): void {
    const reg = msg.register;
    if (msg.msg !== 'register' || !reg) {
      this.protocolError(`the first message of a session must be register, not ${msg.msg ?? 'an empty message'}`);
      this.end(grpc.status.INVALID_ARGUMENT, 'the first message of a session must be register');
      return;
    }
    if (reg.protocolVersion !== PROTOCOL_VERSION) {
      const message = `protocol version ${reg.protocolVersion} is not supported; this coordinator speaks version ${PROTOCOL_VERSION} only. Upgrade the agent or the coordinator so that they match`;
      this.write({ error: { error: { code: 'SESSION_REJECTED', message } } });
      this.end(grpc.status.FAILED_PRECONDITION, message);
      return;
    }
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(reg.nodeId)) {
      const message = `node id ${JSON.stringify(reg.nodeId)} is not valid: use 1-128 letters, digits, ".", "_" or "-"`;
      this.protocolError(message);
      this.end(grpc.status.INVALID_ARGUMENT, message);
      return;
    }
    if (this.admittedNodeId !== undefined) {
      const refusal = checkRegisteredNodeId(this.admittedNodeId, reg.nodeId);
      if (refusal) {
        this.log.warn({ claimedNodeId: reg.nodeId, certificateNodeId: this.admittedNodeId }, 'registration refused: node id differs from the certificate');
        this.write({ error: { error: { code: 'SESSION_REJECTED', message: refusal.message } } });
        this.end(refusal.code, refusal.message);
        return;
      }
    }
    const nodeId = reg.nodeId;
    const engine = this.deps.engine();
    const ackedEventId = engine.register(reg);
    this.nodeId = nodeId;
    const older = this.deps.registry.attach(nodeId, this);
    if (older) {
      this.log.info({ nodeId }, 'a newer session replaces the open one');
      older.end(grpc.status.ABORTED, `a newer session for node ${nodeId} replaced this one`);
    }
    this.log.info({ nodeId, agentVersion: reg.agentVersion, ackedEventId, held: reg.attempts.length }, 'agent registered');
    // Sent once the registration is durable; the commands reconcile() sends follow it.
    engine.afterDurable(() => this.write({
      registered: {
        sessionId: this.sessionId,
        heartbeatIntervalMs: this.deps.heartbeatIntervalMs,
        leaseMs: this.deps.leaseMs,
        ackedEventId,
      },
    }));
    engine.reconcile(nodeId, reg.attempts);
  }

  private onEvent(nodeId: string, ev: Event__Output): void {
    if (!ev.eventId || ev.eventId < 1) {
      this.protocolError('event without an eventId: ids start at 1 and grow by one per node');
      return;
    }
    if (!ev.body) {
      this.protocolError(`event ${ev.eventId} has no body: set stateChanged, exited or logs`);
      return;
    }
    const { upToEventId } = this.deps.engine().applyEvent(nodeId, ev);
    // The agent forgets acknowledged events: acknowledge only what a power loss cannot undo.
    this.deps.engine().afterDurable(() => this.write({ eventAck: { upToEventId } }));
  }
}
