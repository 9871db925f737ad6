// End to end: a coordinator and agents as real `stevedore` processes, jobs in
// real containers on the test engine, GPUs handed out by UUID through the
// engine's NVIDIA device driver (stand-in hook), and the failures the agent is
// built for: kill -9, a coordinator outage, bad input.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { promisify } from 'node:util';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import type { JobInfo } from '../../src/client/control-client.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import type { CoordinatorMessage__Output } from '../../src/proto/load.ts';
import { validateJobSpec, type JobSpec } from '../../src/spec/job-spec.ts';
import { Cluster, waitUntil } from '../helpers/cluster.ts';
import { httpGet, scrape } from '../helpers/prometheus.ts';
import { gpuRecords, testEngineEnv } from '../helpers/engine.ts';

const env = testEngineEnv();
const engine = new DockerEngine({ dockerHost: env.dockerHost });
const run = promisify(execFile);
const stevedore = path.resolve(import.meta.dirname, '..', '..', 'bin', 'stevedore.js');

function trainer(name: string, trainEnv: Record<string, string>, extra: Record<string, unknown> = {}): JobSpec {
  return validateJobSpec({
    name,
    image: env.trainerImage,
    command: ['/stevedore/train.sh'],
    env: { TRAIN_STEP_SECONDS: '0.2', TRAIN_CKPT_EVERY: '5', TRAIN_CKPT_DIR: '/ckpt', ...trainEnv },
    resources: { gpus: 2, shm: '64Mi' },
    mounts: [{ source: 'ckpt', target: '/ckpt' }],
    pullPolicy: 'never',
    ...extra,
  });
}

async function startCluster(t: Test, leaseSeconds = 30): Promise<Cluster> {
  // Short paths: unix socket paths are limited to 107 bytes.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-e2e-'));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost, leaseSeconds });
  t.teardown(async () => {
    await cluster.close();
    for (const agent of cluster.agents.values()) {
      const nodeId = (await cluster.client.listNodes().catch(() => [])).find((n) => n.hostname === agent.name)?.nodeId;
      if (nodeId) for (const c of await engine.list({ [LABELS.nodeId]: nodeId })) await engine.remove(c.id);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return cluster;
}

async function logText(cluster: Cluster, jobId: string): Promise<string[]> {
  const lines: string[] = [];
  for await (const line of cluster.client.streamLogs(jobId)) lines.push(line.line?.text ?? '');
  return lines;
}

function stepLines(lines: string[]): string[] {
  return lines.filter((l) => /^step \d+\//.test(l));
}

/** What the coordinator stored, read from its database. */
function storedEvents(cluster: Cluster, jobId: string): { nodeId: string; eventId: number; kind: string }[] {
  const db = new DatabaseSync(path.join(cluster.dir, 'coordinator.db'), { readOnly: true });
  try {
    return db.prepare('SELECT node_id AS nodeId, event_id AS eventId, kind FROM events WHERE job_id = ? ORDER BY event_id').all(jobId) as { nodeId: string; eventId: number; kind: string }[];
  } finally {
    db.close();
  }
}

function currentAttempt(job: JobInfo): JobInfo['attempts'][number] {
  const attempt = job.attempts.at(-1);
  if (!attempt) throw new Error(`job ${job.jobId} has no attempt`);
  return attempt;
}

void t.test('three 2-GPU jobs on two agents with four GPUs each: all run, no GPU twice', async (t) => {
  const cluster = await startCluster(t);
  const a = await cluster.addAgent('agent-a', 4);
  const b = await cluster.addAgent('agent-b', 4);
  const jobs = await Promise.all([
    cluster.client.submitJob(trainer('one', { TRAIN_STEPS: '12' })),
    cluster.client.submitJob(trainer('two', { TRAIN_STEPS: '12' })),
    cluster.client.submitJob(trainer('three', { TRAIN_STEPS: '12', TRAIN_EXIT_CODE: '3' })),
  ]);
  const ended = await Promise.all(jobs.map((j) => cluster.waitForJob(j.jobId, ['succeeded', 'failed', 'cancelled'], 90000)));
  t.same(ended.map((j) => j.state), ['succeeded', 'succeeded', 'failed']);
  t.same(ended.map((j) => currentAttempt(j).exitCode), [0, 0, 3], 'exit codes reached the coordinator');

  // Every process serves its metrics and health checks on a port of its own (127.0.0.1:0).
  const [metricsA, metricsB, metricsC] = await Promise.all([a.proc.metricsAddress(), b.proc.metricsAddress(), cluster.coordinatorProc.metricsAddress()]);
  t.equal(new Set([metricsA, metricsB, metricsC]).size, 3, 'two agents and the coordinator on one host, three ports');
  for (const address of [metricsA, metricsB, metricsC]) t.equal((await httpGet(address, '/readyz')).status, 200, `${address} is ready`);
  const fleet = await scrape(metricsC);
  t.equal(fleet.value('stevedore_coordinator_jobs', { state: 'succeeded' }), 2);
  t.equal(fleet.value('stevedore_coordinator_jobs', { state: 'failed' }), 1);
  t.ok((fleet.value('stevedore_coordinator_placements_total') ?? 0) >= 3, 'each job was placed');
  t.equal(fleet.value('stevedore_coordinator_gpus', { state: 'total' }), 8);
  const agents = [await scrape(metricsA), await scrape(metricsB)];
  t.same(agents.map((m) => m.value('stevedore_agent_gpus', { state: 'total' })), [4, 4]);
  t.same(agents.map((m) => m.value('stevedore_session_connected')), [1, 1]);

  const nodes = await cluster.client.listNodes();
  const gpusOf = new Map(nodes.map((n) => [n.nodeId, new Set(n.inventory?.gpus.map((g) => g.uuid))]));
  const seen = new Map<string, string>();
  for (const job of ended) {
    const attempt = currentAttempt(job);
    const records = gpuRecords().filter((r) => r.jobId === job.jobId);
    t.equal(records.length, 1, `${job.jobId}: one container got GPUs`);
    const devices = records[0]?.visibleDevices ?? [];
    t.equal(devices.length, 2, `${job.jobId}: two GPUs`);
    t.same([...devices].sort(), [...attempt.gpuUuids].sort(), `${job.jobId}: the engine's record matches what the coordinator was told`);
    for (const uuid of devices) {
      t.ok(gpusOf.get(attempt.nodeId)?.has(uuid), `${uuid} belongs to the job's node`);
      t.notOk(seen.has(uuid), `${uuid} given to ${job.jobId} and to ${seen.get(uuid) ?? 'no other job'}`);
      seen.set(uuid, job.jobId);
    }
  }
  t.equal(seen.size, 6, 'six distinct GPUs for three concurrent 2-GPU jobs');
  t.ok([a.gpuUuids, b.gpuUuids].every((list) => list.length === 4));

  const logs = await logText(cluster, jobs[0]?.jobId ?? '');
  t.ok(logs.includes('training complete: 12 steps'), 'logs reached the coordinator');
  t.equal(stepLines(logs).length, 12);
  const cli = await run(process.execPath, [stevedore, 'logs', jobs[2]?.jobId ?? '', '--coordinator', cluster.address], { env: { ...process.env, ...cluster.cliEnv } });
  t.match(cli.stdout, /step 12\/12/);
  t.match(cli.stdout, /\[stderr\].*warning: stevedore stand-in trainer/);
});

void t.test('kill -9 of the agent: the job keeps running, is re-adopted, and ends once', async (t) => {
  const cluster = await startCluster(t);
  const agent = await cluster.addAgent('agent-k', 4);
  const job = await cluster.client.submitJob(trainer('survivor', { TRAIN_STEPS: '30' }));
  const running = await cluster.waitForJob(job.jobId, ['running']);
  await waitUntil(async () => (await logText(cluster, job.jobId)).some((l) => l.startsWith('step 3/')), 20000, () => 'no progress');
  const containers = await engine.list({ [LABELS.jobId]: job.jobId });
  t.equal(containers.length, 1);
  const containerId = containers[0]?.id ?? '';

  await agent.proc.stop('SIGKILL');
  const during = await engine.inspect(containerId);
  t.equal(during?.running, true, 'the container runs on while the agent is dead');
  await new Promise((r) => setTimeout(r, 1500));
  agent.proc.start();

  const done = await cluster.waitForJob(job.jobId, ['succeeded', 'failed'], 60000);
  t.equal(done.state, 'succeeded');
  t.equal(done.attempts.length, 1, 'no second attempt');
  t.equal(currentAttempt(done).exitCode, 0);
  t.equal(currentAttempt(done).nodeId, currentAttempt(running).nodeId);
  const exits = storedEvents(cluster, job.jobId).filter((e) => e.kind === 'exited');
  t.equal(exits.length, 1, 'the exit was reported exactly once');
  const steps = stepLines(await logText(cluster, job.jobId));
  t.equal(steps.length, 30, 'every step line once');
  t.equal(new Set(steps).size, 30);
  await waitUntil(async () => (await engine.inspect(containerId)) === undefined, 15000, () => 'container not removed after its end was acknowledged');
});

void t.test('SIGTERM: the agent leaves promptly and its job runs on', async (t) => {
  const cluster = await startCluster(t);
  const agent = await cluster.addAgent('agent-t', 2);
  const job = await cluster.client.submitJob(trainer('calm', { TRAIN_STEPS: '25' }));
  await cluster.waitForJob(job.jobId, ['running']);
  const [container] = await engine.list({ [LABELS.jobId]: job.jobId });
  const started = Date.now();
  const code = await agent.proc.stop('SIGTERM');
  t.equal(code, 0, 'clean exit');
  t.ok(Date.now() - started < 10000, 'within the shutdown timeout');
  t.equal((await engine.inspect(container?.id ?? ''))?.running, true, 'the job keeps running');
  t.match(agent.proc.log(), /running jobs left running/);
  agent.proc.start();
  const done = await cluster.waitForJob(job.jobId, ['succeeded', 'failed'], 60000);
  t.equal(done.state, 'succeeded');
  t.equal(done.attempts.length, 1);
});

void t.test('the coordinator stops for a while during a job: nothing lost, nothing twice', async (t) => {
  const cluster = await startCluster(t);
  await cluster.addAgent('agent-c', 4);
  const job = await cluster.client.submitJob(trainer('steady', { TRAIN_STEPS: '30' }));
  await cluster.waitForJob(job.jobId, ['running']);
  const [container] = await engine.list({ [LABELS.jobId]: job.jobId });
  const startedAt = container?.startedAtMs;

  await cluster.coordinatorProc.stop('SIGTERM');
  await new Promise((r) => setTimeout(r, 3000));
  const during = await engine.inspect(container?.id ?? '');
  t.equal(during?.running, true, 'the job runs on without a coordinator');
  cluster.coordinatorProc.start();
  await cluster.waitForCoordinator();

  const done = await cluster.waitForJob(job.jobId, ['succeeded', 'failed'], 60000);
  t.equal(done.state, 'succeeded');
  t.equal(done.attempts.length, 1);
  t.equal(during?.startedAtMs, startedAt, 'the container was never restarted');
  const steps = stepLines(await logText(cluster, job.jobId));
  t.same(steps.map((l) => Number(/^step (\d+)\//.exec(l)?.[1])), Array.from({ length: 30 }, (_, i) => i + 1), 'every step once, in order');
  const events = storedEvents(cluster, job.jobId);
  t.equal(events.filter((e) => e.kind === 'exited').length, 1, 'one exit');
  const ids = events.map((e) => e.eventId);
  t.equal(new Set(ids).size, ids.length, 'no event stored twice');
});

void t.test('bad input gets clear errors and disturbs nothing', async (t) => {
  const cluster = await startCluster(t);
  await cluster.addAgent('agent-x', 4);
  const steady = await cluster.client.submitJob(trainer('steady', { TRAIN_STEPS: '25' }, { resources: { gpus: 1 } }));
  await cluster.waitForJob(steady.jobId, ['running']);

  // An unknown image: the job fails with a reason; the agent goes on.
  const ghost = await cluster.client.submitJob(trainer('ghost', { TRAIN_STEPS: '1' }, { image: '127.0.0.1:9/nowhere/ghost:1', pullPolicy: 'if-not-present', resources: { gpus: 1 } }));
  const ghostDone = await cluster.waitForJob(ghost.jobId, ['failed', 'succeeded'], 60000);
  t.equal(ghostDone.state, 'failed');
  t.match(ghostDone.message + currentAttempt(ghostDone).message, /127\.0\.0\.1:9\/nowhere\/ghost:1/);

  // More GPUs than any node has; a mount outside the work root; a malformed spec file.
  await t.rejects(cluster.client.submitJob(trainer('greedy', {}, { resources: { gpus: 8 } })), { message: /asks for 8 GPUs; the largest node has 4/ });
  await t.rejects(cluster.client.submitJob({ ...trainer('escape', {}), mounts: [{ source: '../../etc', target: '/etc2', readOnly: false }] }), { message: /mounts\[0\]\.source: .*"\.\."/ });
  const bad = path.join(cluster.dir, 'bad.yaml');
  writeFileSync(bad, 'name: broken\nimage: [unclosed\n');
  const cli = await run(process.execPath, [stevedore, 'submit', bad, '--coordinator', cluster.address], { env: { ...process.env, ...cluster.cliEnv } }).catch((err: { code: number; stderr: string }) => err);
  t.equal('code' in cli ? cli.code : 0, 1, 'submit exits 1');
  t.match(cli.stderr, /not valid YAML or JSON/);

  // A malformed session: a client (with a node's certificate and token) that does not register first.
  const { client: session, metadata } = await cluster.agentSessionClient('malformed');
  const call = session.connect(metadata);
  const reply = new Promise<{ error: string; status: number }>((resolve) => {
    let error = '';
    call.on('data', (m: CoordinatorMessage__Output) => {
      error = m.error?.error?.code ?? error;
    });
    call.on('error', (e: grpc.ServiceError) => resolve({ error, status: e.code }));
    call.on('end', () => resolve({ error, status: -1 }));
  });
  call.write({ heartbeat: { sentAtMs: Date.now(), runningAttempts: 0 } });
  const answer = await reply;
  session.close();
  t.equal(answer.error, 'SESSION_PROTOCOL');
  t.equal(answer.status, grpc.status.INVALID_ARGUMENT);

  const done = await cluster.waitForJob(steady.jobId, ['succeeded', 'failed'], 60000);
  t.equal(done.state, 'succeeded', 'the running job was undisturbed');
  t.equal(done.attempts.length, 1);
  const nodes = await cluster.client.listNodes();
  t.equal(nodes.find((n) => n.hostname === 'agent-x')?.state, 'online', 'the agent is still there');
});
