// The agent's local socket: who may use it, and what happens to whatever is
// already at its path. The tests run as root and ask as other users.
import t from 'tap';
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { fetchAgentStatus, LOCAL_API_MAX_REQUEST_BYTES, LocalApi } from '../../src/agent/local-api.ts';
import { testLog } from '../helpers/test-log.ts';

const NOBODY = 65534;
// A group with no name on this host: socketGroup accepts a number.
const AGENT_GROUP = 65533;
const localApiModule = path.resolve(import.meta.dirname, '../../src/agent/local-api.ts');

/** A directory for sockets that other users may traverse (short: unix socket paths are limited). */
function socketDir(t: Test): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stevedore-sock-'));
  chmodSync(dir, 0o755);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function startApi(t: Test, socketPath: string, group?: string): Promise<LocalApi> {
  const api = new LocalApi(socketPath, () => ({ nodeId: 'node-local-1', agentVersion: 'test' }), testLog(`local-api-${t.name}`).logger);
  await api.start(group);
  t.teardown(() => api.close());
  return api;
}

/**
 * Asks the agent for its status as another user (uid, gid, no supplementary
 * groups): "ok <node id>", or "denied <errno>" when the socket cannot be opened.
 */
async function statusAs(socketPath: string, uid: number, gid: number): Promise<string> {
  const script = `const sock = require('node:net').connect(${JSON.stringify(socketPath)});
sock.once('error', (e) => console.log('denied ' + e.code));
sock.once('connect', () => {
  sock.destroy();
  import(${JSON.stringify(localApiModule)}).then((m) => m.fetchAgentStatus(${JSON.stringify(socketPath)}, 5000))
    .then((s) => console.log('ok ' + s.nodeId), (e) => console.log('failed ' + e.code + ' ' + e.message));
});`;
  // The verdict is on stdout; stderr may carry the test runner's own complaint
  // (its process tracking cannot write its records as this user).
  const child = spawn(process.execPath, ['-e', script], { uid, gid, stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  await new Promise((resolve) => child.once('close', resolve));
  return out.trim();
}

void t.test('without socketGroup the socket is 0600, for root alone', async (t) => {
  const socketPath = path.join(socketDir(t), 'agent.sock');
  await startApi(t, socketPath);
  const st = statSync(socketPath);
  t.ok(st.isSocket());
  t.equal(st.mode & 0o777, 0o600);
  t.equal(st.uid, process.getuid?.());
  t.equal((await fetchAgentStatus(socketPath)).nodeId, 'node-local-1', 'root can use it');
  t.equal(await statusAs(socketPath, NOBODY, NOBODY), 'denied EACCES', 'another user cannot');
  t.equal(await statusAs(socketPath, NOBODY, AGENT_GROUP), 'denied EACCES', 'nor one in a group it was not given');
  t.equal(statSync(path.dirname(socketPath)).mode & 0o002, 0, 'its directory is not world-writable');
});

void t.test('with socketGroup the socket is 0660 and group-owned: members may use it, others not', async (t) => {
  const dir = path.join(socketDir(t), 'run', 'stevedore');
  const socketPath = path.join(dir, 'agent.sock');
  await startApi(t, socketPath, String(AGENT_GROUP));
  const st = statSync(socketPath);
  t.equal(st.mode & 0o777, 0o660);
  t.equal(st.gid, AGENT_GROUP);
  t.equal(statSync(dir).mode & 0o777, 0o755, 'the directory it created is 0755');
  t.equal(await statusAs(socketPath, NOBODY, AGENT_GROUP), 'ok node-local-1', 'a member of the group');
  t.equal(await statusAs(socketPath, NOBODY, NOBODY), 'denied EACCES', 'a user outside the group');
});

void t.test('a world-writable directory is refused: anyone could replace the socket', async (t) => {
  const dir = path.join(socketDir(t), 'open');
  mkdirSync(dir);
  chmodSync(dir, 0o777);
  const api = new LocalApi(path.join(dir, 'agent.sock'), () => ({}), testLog('local-api-open-dir').logger);
  await t.rejects(api.start(undefined), { code: 'LOCAL_SOCKET_UNUSABLE', message: /is writable by every user, who could replace the socket/ });
  t.notOk(existsSync(path.join(dir, 'agent.sock')));
  // With the sticky bit (as /tmp), others cannot remove or rename what is not theirs.
  chmodSync(dir, 0o1777);
  await startApi(t, path.join(dir, 'agent.sock'));
  t.ok(statSync(path.join(dir, 'agent.sock')).isSocket());
});

void t.test('a socket left by a killed agent is replaced', async (t) => {
  const socketPath = path.join(socketDir(t), 'agent.sock');
  // A process that listens and is killed leaves its socket file behind.
  const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  t.ok(statSync(socketPath).isSocket(), 'the stale socket is there');
  await startApi(t, socketPath);
  t.equal((await fetchAgentStatus(socketPath)).nodeId, 'node-local-1');
});

void t.test('a socket another process listens on is left alone', async (t) => {
  const socketPath = path.join(socketDir(t), 'agent.sock');
  const other = net.createServer((c) => c.destroy());
  await new Promise<void>((resolve) => other.listen(socketPath, resolve));
  t.teardown(() => new Promise<void>((resolve) => other.close(() => resolve())));
  const api = new LocalApi(socketPath, () => ({}), testLog('local-api-in-use').logger);
  await t.rejects(api.start(undefined), { code: 'LOCAL_SOCKET_UNUSABLE', message: /another process listens on .*agent\.sock, probably another agent/ });
  const answered = await new Promise<boolean>((resolve) => net.connect(socketPath).once('connect', () => resolve(true)).once('error', () => resolve(false)));
  t.ok(answered, 'the other process still has its socket');
});

void t.test('a file that is not a socket is not deleted', async (t) => {
  const socketPath = path.join(socketDir(t), 'agent.sock');
  writeFileSync(socketPath, 'precious data\n');
  const api = new LocalApi(socketPath, () => ({}), testLog('local-api-not-socket').logger);
  await t.rejects(api.start(undefined), { code: 'LOCAL_SOCKET_UNUSABLE', message: /exists and is not a socket; it was left as it is. Move it away, or choose another path with --socket/ });
  t.equal(readFileSync(socketPath, 'utf8'), 'precious data\n');
});

void t.test('a request over the size limit is refused with RESOURCE_EXHAUSTED and the socket goes on serving', async (t) => {
  const socketPath = path.join(socketDir(t), 'agent.sock');
  await startApi(t, socketPath);
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  // Raw bytes as the request body: the limit applies before the server decodes anything.
  const ask = (bytes: number): Promise<grpc.ServiceError | null> =>
    new Promise((resolve) => {
      client.makeUnaryRequest('/stevedore.v1.AgentLocal/GetStatus', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(bytes, 0x0a), { deadline: Date.now() + 10000 }, (err) => resolve(err));
    });
  const oversized = await ask(LOCAL_API_MAX_REQUEST_BYTES + 1024);
  t.equal(oversized?.code, grpc.status.RESOURCE_EXHAUSTED, `a ${LOCAL_API_MAX_REQUEST_BYTES + 1024}-byte request: ${oversized?.details ?? 'no error'}`);
  t.equal((await fetchAgentStatus(socketPath)).nodeId, 'node-local-1', 'the socket still answers a status request');
  const many = await Promise.all(Array.from({ length: 5 }, () => ask(4 * LOCAL_API_MAX_REQUEST_BYTES)));
  t.same(many.map((e) => e?.code), Array(5).fill(grpc.status.RESOURCE_EXHAUSTED), 'several at once, four times the limit');
  t.equal((await fetchAgentStatus(socketPath)).nodeId, 'node-local-1', 'and still answers after them');
});
