import t from 'tap';
import path from 'node:path';
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { ControlClient, coordinatorAddress, DEFAULT_COORDINATOR_ADDRESS } from '../../src/client/control-client.ts';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { isStevedoreError } from '../../src/util/errors.ts';
import { spec } from '../coordinator/fake-agent.ts';

void t.test('the address comes from the flag, then STEVEDORE_COORDINATOR, then the default', (t) => {
  t.equal(coordinatorAddress('10.0.0.1:7000', { STEVEDORE_COORDINATOR: 'x:1' }), '10.0.0.1:7000');
  t.equal(coordinatorAddress(undefined, { STEVEDORE_COORDINATOR: 'coord.internal:7443' }), 'coord.internal:7443');
  t.equal(coordinatorAddress(undefined, {}), DEFAULT_COORDINATOR_ADDRESS);
  t.equal(DEFAULT_COORDINATOR_ADDRESS, '127.0.0.1:7443');
  t.end();
});

void t.test('an unreachable coordinator: bounded retries, then an error that says what to check', async (t) => {
  const slept: number[] = [];
  const client = new ControlClient({
    address: '127.0.0.1:1',
    retries: 3,
    backoff: { initialMs: 100, maxMs: 400 },
    clock: { now: () => Date.now(), setTimeout: () => ({ cancel: () => undefined }), sleep: (ms) => { slept.push(ms); return Promise.resolve(); } },
  });
  t.teardown(() => client.close());
  try {
    await client.listJobs();
    t.fail('expected an error');
  } catch (err) {
    t.ok(isStevedoreError(err, 'COORDINATOR_UNREACHABLE'));
    t.match((err as Error).message, /^cannot reach the coordinator at 127\.0\.0\.1:1: is `stevedore coordinator` running\?/);
  }
  t.equal(slept.length, 3, 'three retries after the first try');
  t.ok(slept.every((ms, i) => ms >= 0 && ms <= Math.min(400, 100 * 2 ** i)), `jittered, capped delays: ${slept.join(',')}`);
});

void t.test('errors from the coordinator keep their code and are not retried', async (t) => {
  const coordinator = new Coordinator({ listen: '127.0.0.1:0', dbPath: path.join(t.testdir(), 'c.db') });
  const { address } = await coordinator.start();
  let sleeps = 0;
  const client = new ControlClient({
    address,
    clock: { now: () => Date.now(), setTimeout: () => ({ cancel: () => undefined }), sleep: () => { sleeps++; return Promise.resolve(); } },
  });
  t.teardown(async () => {
    client.close();
    await coordinator.close();
  });
  await t.rejects(client.getJob('nope'), { code: 'JOB_NOT_FOUND', message: 'no job nope; `stevedore status` lists jobs' });
  await t.rejects(client.submitJob({ ...spec('x', 0), stopSignal: 'SIGBOGUS' }), { code: 'SPEC_INVALID', message: /stopSignal/ });
  t.equal(sleeps, 0);
  const job = await client.submitJob(spec('ok', 0));
  t.equal((await client.getJob(job.jobId)).jobId, job.jobId);
});

void t.test('a server that never answers: the call ends within its deadlines, with the address in the message', async (t) => {
  // A server that accepts connections and never speaks HTTP/2.
  const sockets: Socket[] = [];
  const server = net.createServer((s) => { sockets.push(s); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const client = new ControlClient({ address: `127.0.0.1:${port}`, deadlineMs: 300, retries: 1, backoff: { initialMs: 10, maxMs: 10 } });
  t.teardown(() => {
    client.close();
    for (const s of sockets) s.destroy();
    server.close();
  });
  const started = Date.now();
  await t.rejects(client.listNodes(), { code: 'COORDINATOR_UNREACHABLE', message: /cannot reach the coordinator at 127\.0\.0\.1:\d+/ });
  t.ok(Date.now() - started < 3000, 'bounded by the deadlines');
});
