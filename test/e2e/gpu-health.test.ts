// End to end: an agent process with two stand-in GPUs checks their health;
// one GPU gets uncorrected ECC errors; the coordinator shows it, places a
// 1-GPU job on the healthy GPU only, keeps a 2-GPU job queued with the
// reason, and places it once the GPU is reset (the count back at 0).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { validateJobSpec, type JobSpec } from '../../src/spec/job-spec.ts';
import { Cluster, waitUntil } from '../helpers/cluster.ts';
import { gpuRecords, testEngineEnv } from '../helpers/engine.ts';
import { setFakeGpuHealth } from '../helpers/fake-gpus.ts';

const env = testEngineEnv();
const engine = new DockerEngine({ dockerHost: env.dockerHost });

function trainer(name: string, gpus: number, steps: number): JobSpec {
  return validateJobSpec({
    name,
    image: env.trainerImage,
    command: ['/stevedore/train.sh'],
    env: { TRAIN_STEPS: String(steps), TRAIN_STEP_SECONDS: '0.1', TRAIN_CKPT_EVERY: '100', TRAIN_CKPT_DIR: '/ckpt' },
    resources: { gpus, shm: '64Mi' },
    mounts: [{ source: 'ckpt', target: '/ckpt' }],
    pullPolicy: 'never',
  });
}

void t.test('a GPU with uncorrected ECC errors gets no job until it is reset', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-gpuh-'));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost });
  t.teardown(async () => {
    const nodes = await cluster.client.listNodes().catch(() => []);
    await cluster.close();
    for (const node of nodes) for (const c of await engine.list({ [LABELS.nodeId]: node.nodeId })) await engine.remove(c.id);
    rmSync(dir, { recursive: true, force: true });
  });
  const agent = await cluster.addAgent('gpuhost', 2, { gpuHealth: { intervalSeconds: 0.2, kernelLog: '' } });
  const gpuDir = path.join(agent.dir, 'gpu');
  const [healthy, sick] = agent.gpuUuids as [string, string];

  const nodeGpus = async () => (await cluster.client.listNodes()).find((n) => n.hostname === 'gpuhost')?.inventory?.gpus ?? [];
  t.match(await nodeGpus(), [{ uuid: healthy, health: { healthy: true } }, { uuid: sick, health: { healthy: true } }], 'checked before the first registration');

  setFakeGpuHealth(gpuDir, 1, { fields: { 'ecc.errors.uncorrected.volatile.total': 3 } });
  await waitUntil(async () => (await nodeGpus())[1]?.health?.healthy === false, 10_000, () => `GPU 1 not reported unhealthy; agent log:\n${agent.proc.log().slice(-2000)}`);
  t.match((await nodeGpus())[1]?.health, { healthy: false, eccUncorrectedVolatile: 3, problems: [/^3 uncorrected ECC errors since the driver loaded \(limit 0\)/] }, 'ListNodes names the reason');

  const small = await cluster.client.submitJob(trainer('small', 1, 12));
  const running = await cluster.waitForJob(small.jobId, ['running', 'succeeded'], 20_000);
  t.same(running.attempts.at(-1)?.gpuUuids, [healthy], 'the 1-GPU job got the healthy GPU');

  const big = await cluster.client.submitJob(trainer('big', 2, 3));
  let message = '';
  await waitUntil(async () => {
    message = (await cluster.client.getJob(big.jobId)).message;
    return /needs 2 GPUs/.test(message);
  }, 10_000, () => `job message: ${message}`);
  t.match(message, new RegExp(`^waiting: needs 2 GPUs; the largest node has 1 healthy \\(not healthy: \\S+ GPU 1 \\(${sick}\\): 3 uncorrected ECC errors`));
  t.equal((await cluster.client.getJob(big.jobId)).state, 'queued');

  // A GPU reset (nvidia-smi -r) clears the volatile count; the next check sees it.
  setFakeGpuHealth(gpuDir, 1, { fields: { 'ecc.errors.uncorrected.volatile.total': undefined } });
  await cluster.waitForJob(small.jobId, ['succeeded'], 20_000);
  const done = await cluster.waitForJob(big.jobId, ['succeeded'], 30_000);
  const attempt = done.attempts.at(-1);
  t.same([...(attempt?.gpuUuids ?? [])].sort(), [healthy, sick].sort(), 'the 2-GPU job ran on both once the GPU recovered');
  t.same(gpuRecords().filter((r) => r.jobId === small.jobId).map((r) => r.visibleDevices), [[healthy]], 'the engine handed the 1-GPU job\'s container the healthy GPU only');
  t.same(gpuRecords().filter((r) => r.jobId === big.jobId).map((r) => [...r.visibleDevices].sort()), [[healthy, sick].sort()], 'and the 2-GPU job\'s container both');
  t.match(agent.proc.log(), /GPU is not healthy: it takes no new jobs/);
  t.match(agent.proc.log(), /GPU is healthy again/);
});
