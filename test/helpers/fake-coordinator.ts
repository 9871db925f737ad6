// A scripted coordinator for agent tests: a real gRPC server speaking the
// session protocol, whose commands (well-formed or not) the test chooses.
import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { v1, type AgentMessage__Output, type CoordinatorMessage } from '../../src/proto/load.ts';
import type { Command } from '../../src/gen/stevedore/v1/Command.ts';

type Call = grpc.ServerDuplexStream<AgentMessage__Output, CoordinatorMessage>;

export class FakeCoordinator extends EventEmitter {
  readonly received: AgentMessage__Output[] = [];
  private readonly server = new grpc.Server();
  private call: Call | undefined;
  private highestEventId = 0;
  /** When false, events are received but not acknowledged. */
  ackEvents = true;
  /** When set, the `registered` reply claims this acknowledged event id (a broken or hostile coordinator). */
  registeredAck: number | undefined;
  address = '';
  registrations = 0;

  constructor() {
    super();
    this.server.addService(v1.AgentSession.service, {
      connect: (call: Call) => {
        call.on('data', (msg: AgentMessage__Output) => this.onMessage(call, msg));
        call.on('error', () => undefined);
        call.on('end', () => call.end());
      },
    });
  }

  /** Listens on loopback; plaintext unless `credentials` says otherwise (a TLS coordinator for access tests). */
  async start(port = 0, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<string> {
    const bound = await new Promise<number>((resolve, reject) => {
      this.server.bindAsync(`127.0.0.1:${port}`, credentials, (err, p) => (err ? reject(err) : resolve(p)));
    });
    this.address = `127.0.0.1:${bound}`;
    return this.address;
  }

  private onMessage(call: Call, msg: AgentMessage__Output): void {
    this.received.push(msg);
    if (msg.msg === 'register') {
      this.call = call;
      this.registrations++;
      call.write({ registered: { sessionId: randomUUID(), heartbeatIntervalMs: 500, leaseMs: 5000, ackedEventId: this.registeredAck ?? this.highestEventId } });
    } else if (msg.msg === 'event' && msg.event) {
      // Without acks it behaves as a coordinator that never stored the events.
      if (this.ackEvents) {
        if (msg.event.eventId > this.highestEventId) this.highestEventId = msg.event.eventId;
        call.write({ eventAck: { upToEventId: this.highestEventId } });
      }
    } else if (msg.msg === 'heartbeat') {
      call.write({ heartbeatAck: { receivedAtMs: Date.now() } });
    }
    this.emit('message', msg);
  }

  /** Sends a command (or any raw message) and resolves with the agent's acknowledgement. */
  async command(command: Command, timeoutMs = 15000): Promise<NonNullable<AgentMessage__Output['commandAck']>> {
    const commandId = command.commandId ?? randomUUID();
    const ack = this.waitFor((m) => m.msg === 'commandAck' && m.commandAck?.commandId === commandId, timeoutMs);
    this.send({ command: { ...command, commandId } });
    const msg = await ack;
    if (!msg.commandAck) throw new Error('ack without body');
    return msg.commandAck;
  }

  send(msg: CoordinatorMessage): void {
    if (!this.call) throw new Error('no agent connected');
    this.call.write(msg);
  }

  waitFor(predicate: (m: AgentMessage__Output) => boolean, timeoutMs = 15000): Promise<AgentMessage__Output> {
    const found = this.received.find(predicate);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('message', listener);
        reject(new Error(`no matching message from the agent within ${timeoutMs} ms`));
      }, timeoutMs);
      const listener = (m: AgentMessage__Output): void => {
        if (!predicate(m)) return;
        clearTimeout(timer);
        this.off('message', listener);
        resolve(m);
      };
      this.on('message', listener);
    });
  }

  events(jobId?: string): NonNullable<AgentMessage__Output['event']>[] {
    return this.received.flatMap((m) => (m.msg === 'event' && m.event && (!jobId || m.event.jobId === jobId) ? [m.event] : []));
  }

  /** Ends the agent's stream as a crashed coordinator would. */
  dropSession(): void {
    this.call?.destroy(new Error('dropped'));
    this.call = undefined;
  }

  async close(): Promise<void> {
    this.server.forceShutdown();
    await Promise.resolve();
  }
}
