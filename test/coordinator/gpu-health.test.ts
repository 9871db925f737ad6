// The coordinator's side of GPU health, against a scripted agent: health from
// the registration and the heartbeats, ListNodes, placement only on healthy
// GPUs, the reason a job waits, and an attempt on a GPU that turns unhealthy.
import t from 'tap';
import type { GpuHealth } from '../../src/gen/stevedore/v1/GpuHealth.ts';
import type { FakeAgent } from './fake-agent.ts';
import { eventually, inventory, setup, spec } from './fake-agent.ts';

function health(uuid: string, problems: string[] = []): GpuHealth {
  return { uuid, healthy: problems.length === 0, problems, temperatureC: 40, eccUncorrectedVolatile: problems.length > 0 ? 3 : 0, xids: [], checkedMs: Date.now() };
}

async function heartbeat(a: FakeAgent, gpuHealth: GpuHealth[]): Promise<void> {
  a.send({ heartbeat: { sentAtMs: Date.now(), runningAttempts: 0, gpuHealth } });
  await a.next((x) => x.msg === 'heartbeatAck');
}

const ECC = '3 uncorrected ECC errors since the driver loaded (limit 0); the count clears only with a GPU reset (nvidia-smi -r) or a driver reload';

void t.test('an unhealthy GPU gets no new attempt; a job that needs it waits with the reason; recovery places it', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register({ gpus: 2 });
  const [g0, g1] = ['GPU-node-a-0', 'GPU-node-a-1'];

  await heartbeat(a, [health(g0), health(g1, [ECC])]);
  const [node] = await s.client.listNodes();
  t.match(node?.inventory?.gpus, [
    { uuid: g0, health: { healthy: true, problems: [] } },
    { uuid: g1, health: { healthy: false, problems: [ECC], eccUncorrectedVolatile: 3 } },
  ], 'ListNodes shows each GPU\'s health with the reason');

  const small = await s.client.submitJob(spec('small', 1));
  const start = await a.takeStart();
  t.equal(start.jobId, small.jobId, 'a 1-GPU job is placed: one GPU is healthy');
  await a.running(small.jobId, 1, [g0]);

  const big = await s.client.submitJob(spec('big', 2));
  const waiting = await s.client.getJob(big.jobId);
  t.equal(waiting.state, 'queued');
  t.match(waiting.message, `waiting: needs 2 GPUs; the largest node has 1 healthy (not healthy: node-a GPU 1 (${g1}): 3 uncorrected ECC errors`);

  // The GPU the running attempt holds turns unhealthy: the attempt keeps running, the job says so.
  await heartbeat(a, [health(g0, ['temperature 95 °C is at or above 90 °C; check the node\'s cooling']), health(g1, [ECC])]);
  const hot = await s.client.getJob(small.jobId);
  t.equal(hot.state, 'running', 'not stopped by the coordinator');
  t.match(hot.message, `GPU 0 (${g0}) of attempt 1 on node-a is not healthy (temperature 95 °C`);
  t.match((await s.client.getJob(big.jobId)).message, /the largest node has 0 healthy/);

  // Both recover; the 1-GPU job still holds GPU 0, so the 2-GPU job waits for it, then is placed.
  await heartbeat(a, [health(g0), health(g1)]);
  t.match((await s.client.getJob(big.jobId)).message, /^waiting for 2 free GPUs; free now: node-a 1/);
  t.same(a.pending().filter((m) => m.msg === 'command'), [], 'no start yet');
  await a.exited(small.jobId, 1, 'ATTEMPT_STATE_SUCCEEDED', 0);
  const bigStart = await a.takeStart();
  t.equal(bigStart.jobId, big.jobId);
  t.equal((await s.client.getJob(big.jobId)).state, 'scheduled');
});

void t.test('health in the registration counts from the start, and is kept across a coordinator restart', async (t) => {
  const dbPath = `${t.testdir()}/coordinator.db`;
  const s = await setup(t, { dbPath });
  const a = s.agent('node-a');
  const inv = inventory('node-a', 2);
  inv.gpus = (inv.gpus ?? []).map((g, i) => ({ ...g, health: health(g.uuid ?? '', i === 1 ? ['missing from nvidia-smi\'s answer (fallen off the bus?)'] : []) }));
  a.send({ register: { nodeId: 'node-a', agentVersion: '0.1.0-test', protocolVersion: 1, inventory: inv, labels: {}, attempts: [], lastEventId: 0 } });
  await a.next((x) => x.msg === 'registered');
  const job = await s.client.submitJob(spec('big', 2));
  t.match((await s.client.getJob(job.jobId)).message, /needs 2 GPUs; the largest node has 1 healthy \(not healthy: node-a GPU 1 \(GPU-node-a-1\): missing from nvidia-smi's answer/);

  // The same GPU, unhealthy for a new reason, reported by heartbeat: stored.
  await heartbeat(a, [health('GPU-node-a-0'), health('GPU-node-a-1', ['the driver reported Xid 79 (GPU has fallen off the bus)'])]);
  await s.coordinator.close();
  a.kill();
  const again = await setup(t, { dbPath });
  const [node] = await again.client.listNodes();
  t.match(node?.inventory?.gpus[1]?.health, { healthy: false, problems: [/Xid 79/] }, 'the last change is in the database');
  await eventually(async () => (await again.client.listNodes()).length === 1);
});
