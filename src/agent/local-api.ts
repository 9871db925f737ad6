// The agent's own API on a local unix socket, for `stevedore status --agent`
// on the host. Only root and the configured group may use it: the socket is
// 0600 (0660 with socketGroup, group-owned by it), and the directory holding it
// must not be writable by others, who could otherwise replace the socket.
import * as grpc from '@grpc/grpc-js';
import { chmodSync, chownSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { AgentStatus, AgentStatus__Output } from '../proto/load.ts';
import { v1 } from '../proto/load.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';

/**
 * The largest request the local API reads (1 MiB; its one request is empty):
 * a bigger one is refused with RESOURCE_EXHAUSTED before it is decoded, and
 * the socket goes on serving.
 */
export const LOCAL_API_MAX_REQUEST_BYTES = 1024 * 1024;

export class LocalApi {
  private readonly server = new grpc.Server({ 'grpc.max_receive_message_length': LOCAL_API_MAX_REQUEST_BYTES });
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
    const gid = group ? groupId(group) : undefined;
    prepareSocketDir(path.dirname(this.socketPath));
    await removeStaleSocket(this.socketPath);
    await new Promise<void>((resolve, reject) => {
      this.server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => {
        if (err) reject(new StevedoreError('STATE_DIR_UNWRITABLE', `cannot listen on ${this.socketPath}: ${err.message}; choose another path with --socket`, { cause: err }));
        else resolve();
      });
    });
    chmodSync(this.socketPath, gid !== undefined ? 0o660 : 0o600);
    if (gid !== undefined) chownSync(this.socketPath, process.getuid?.() ?? 0, gid);
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

/** Creates the socket's directory (0755), or checks that others cannot write to the existing one. */
function prepareSocketDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  const st = statSync(dir);
  // World-writable without the sticky bit: anyone could replace the socket with their own.
  if ((st.mode & 0o002) !== 0 && (st.mode & 0o1000) === 0) {
    throw new StevedoreError('LOCAL_SOCKET_UNUSABLE', `the local socket's directory ${dir} is writable by every user, who could replace the socket: use a directory of its own such as /run/stevedore (socketPath), or chmod o-w ${dir}`);
  }
}

/**
 * Removes a socket left by an agent that was killed; refuses to touch a socket
 * another agent still listens on, and anything at the path that is not a socket.
 */
async function removeStaleSocket(socketPath: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(socketPath).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new StevedoreError('LOCAL_SOCKET_UNUSABLE', `cannot check ${socketPath}: ${messageOf(err)}; choose another path with --socket`, { cause: err });
  }
  if (!isSocket) {
    throw new StevedoreError('LOCAL_SOCKET_UNUSABLE', `${socketPath} exists and is not a socket; it was left as it is. Move it away, or choose another path with --socket`);
  }
  if (await answers(socketPath)) {
    throw new StevedoreError('LOCAL_SOCKET_UNUSABLE', `another process listens on ${socketPath}, probably another agent: stop it first, or give this one another --socket and --state-dir`);
  }
  rmSync(socketPath, { force: true });
}

/** Whether something accepts connections on the unix socket. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(socketPath);
    const done = (result: boolean): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
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
