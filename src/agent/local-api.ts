// The agent's own API on a local unix socket, for `stevedore status --agent`
// on the host. Only root and the configured group may use it.
import * as grpc from '@grpc/grpc-js';
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { AgentStatus, AgentStatus__Output } from '../proto/load.ts';
import { v1 } from '../proto/load.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';

export class LocalApi {
  private readonly server = new grpc.Server();
  private readonly socketPath: string;
  private closed = false;

  constructor(socketPath: string, getStatus: () => AgentStatus, logger: Logger) {
    this.socketPath = path.resolve(socketPath);
    this.server.addService(v1.AgentLocal.service, {
      getStatus: (_call: unknown, callback: grpc.sendUnaryData<AgentStatus>) => {
        try {
          callback(null, getStatus());
        } catch (err) {
          logger.error({ err }, 'status request failed');
          callback({ code: grpc.status.INTERNAL, details: messageOf(err) });
        }
      },
    });
  }

  async start(group: string | undefined): Promise<void> {
    mkdirSync(path.dirname(this.socketPath), { recursive: true, mode: 0o755 });
    // A socket left by a killed agent would make the bind fail.
    rmSync(this.socketPath, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(new StevedoreError('STATE_DIR_UNWRITABLE', `cannot listen on ${this.socketPath}: ${err.message}; choose another path with --socket`, { cause: err }));
        else resolve();
      });
    });
    chmodSync(this.socketPath, group ? 0o660 : 0o600);
    if (group) chownSync(this.socketPath, process.getuid?.() ?? 0, groupId(group));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await new Promise<void>((resolve) => {
      this.server.tryShutdown(() => resolve());
    });
    rmSync(this.socketPath, { force: true });
  }
}

function groupId(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[0] === group);
  const gid = line?.split(':')[2];
  if (gid === undefined) throw new StevedoreError('CONFIG_INVALID', `socketGroup: no group named "${group}" on this host; create it or set another group`);
  return Number(gid);
}

/** Client side, for the CLI. */
export async function fetchAgentStatus(socketPath: string, timeoutMs = 5000): Promise<AgentStatus__Output> {
  const client = new v1.AgentLocal(`unix:${path.resolve(socketPath)}`, grpc.credentials.createInsecure());
  try {
    return await new Promise<AgentStatus__Output>((resolve, reject) => {
      client.getStatus({}, { deadline: Date.now() + timeoutMs }, (err, status) => {
        if (err || !status) {
          reject(new StevedoreError('AGENT_UNREACHABLE', `cannot reach the agent at ${socketPath}: ${err?.details ?? 'no answer'}; is \`stevedore agent\` running, and may this user open its socket?`, { cause: err }));
        } else resolve(status);
      });
    });
  } finally {
    client.close();
  }
}
