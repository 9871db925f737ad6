// The coordinator's /metrics, /livez and /readyz, scraped over HTTP from a
// real coordinator with agents speaking the session protocol.
import t, { type Test } from 'tap';
import path from 'node:path';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { ControlClient } from '../../src/client/control-client.ts';
import { FakeAgent, eventually, spec } from './fake-agent.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { checkNaming, httpGet, scrape } from '../helpers/prometheus.ts';

async function start(t: Test, clock = new FakeClock()): Promise<{ coordinator: Coordinator; address: string; metrics: string; client: ControlClient; clock: FakeClock; agent: (id: string) => FakeAgent }> {
  const coordinator = new Coordinator({ listen: '127.0.0.1:0', dbPath: path.join(t.testdir(), 'coordinator.db'), clock, metricsListen: '127.0.0.1:0' });
  const { address, metricsAddress } = await coordinator.start();
  if (!metricsAddress) throw new Error('no metrics address');
  const client = new ControlClient({ address, retries: 0, deadlineMs: 5000 });
  const agents: FakeAgent[] = [];
  t.teardown(async () => {
    for (const a of agents) a.kill();
    client.close();
    await coordinator.close();
  });
  return {
    coordinator, address, metrics: metricsAddress, client, clock,
    agent: (id) => {
      const a = new FakeAgent(address, id);
      agents.push(a);
      return a;
    },
  };
}

void t.test('readyz 200 once the store is open and gRPC listens; livez 200; other paths 404; nothing after close', async (t) => {
  const s = await start(t);
  t.equal(s.coordinator.metricsAddress, s.metrics);
  const ready = await httpGet(s.metrics, '/readyz');
  t.equal(ready.status, 200);
  t.match(JSON.parse(ready.body), { ready: true, notReady: [], checks: { store: { ready: true }, grpc: { ready: true, detail: `listening on ${s.address}` } } });
  t.same(await httpGet(s.metrics, '/livez'), { status: 200, body: 'ok\n', contentType: 'text/plain; charset=utf-8' });
  t.equal((await httpGet(s.metrics, '/metrics.json')).status, 404);
  await s.coordinator.close();
  await t.rejects(httpGet(s.metrics, '/livez'), 'the server stops with the coordinator');
});

void t.test('an invalid --metrics-listen is CONFIG_INVALID before anything starts; off starts no server', async (t) => {
  const dbPath = path.join(t.testdir(), 'c.db');
  t.throws(() => new Coordinator({ listen: '127.0.0.1:0', dbPath, metricsListen: '9465' }), { code: 'CONFIG_INVALID', message: /--metrics-listen.*"9465" is not host:port/ });
  const off = new Coordinator({ listen: '127.0.0.1:0', dbPath, metricsListen: 'off' });
  t.teardown(() => off.close());
  const started = await off.start();
  t.equal(started.metricsAddress, undefined);
  t.equal(off.metricsAddress, undefined);
});

void t.test('jobs, nodes, GPUs, sessions, events, placements, queue wait and Control calls move as an operator expects', async (t) => {
  const s = await start(t);
  const empty = await scrape(s.metrics);
  t.equal(empty.value('stevedore_coordinator_jobs', { state: 'queued' }), 0);
  t.equal(empty.value('stevedore_coordinator_nodes', { state: 'online' }), 0);
  t.equal(empty.value('stevedore_coordinator_sessions'), 0);
  t.equal(empty.value('stevedore_coordinator_gpus', { state: 'total' }), 0);
  t.equal(empty.value('stevedore_coordinator_placements_total'), 0);

  const job = await s.client.submitJob(spec('train', 2));
  const queued = await scrape(s.metrics);
  t.equal(queued.value('stevedore_coordinator_jobs', { state: 'queued' }), 1);
  t.equal(queued.value('stevedore_coordinator_control_requests_total', { method: 'SubmitJob', code: 'OK' }), 1);
  t.equal(queued.value('stevedore_coordinator_control_request_duration_seconds_count', { method: 'SubmitJob' }), 1);

  // The job waits 2.5 s (clock time) for a node.
  s.clock.advance(2500);
  const a = s.agent('node-a');
  await a.register({ gpus: 4 });
  const start1 = await a.takeStart();
  t.equal(start1.jobId, job.jobId);
  const placed = await scrape(s.metrics);
  t.equal(placed.value('stevedore_coordinator_placements_total'), 1);
  t.equal(placed.value('stevedore_coordinator_queue_wait_seconds_count'), 1);
  t.equal(placed.value('stevedore_coordinator_queue_wait_seconds_sum'), 2.5, 'from the submission to the placement');
  t.equal(placed.value('stevedore_coordinator_jobs', { state: 'scheduled' }), 1);
  t.equal(placed.value('stevedore_coordinator_jobs', { state: 'queued' }), 0);
  t.equal(placed.value('stevedore_coordinator_nodes', { state: 'online' }), 1);
  t.equal(placed.value('stevedore_coordinator_sessions'), 1);
  t.equal(placed.value('stevedore_coordinator_gpus', { state: 'total' }), 4);
  t.equal(placed.value('stevedore_coordinator_gpus', { state: 'allocated' }), 2, 'reserved for the placed attempt');

  await a.running(job.jobId, 1, ['GPU-node-a-0', 'GPU-node-a-1']);
  const id = await a.logs(job.jobId, 1, [{ text: 'step 1' }]);
  await a.logs(job.jobId, 1, [{ text: 'step 1' }], id);
  const running = await scrape(s.metrics);
  t.equal(running.value('stevedore_coordinator_events_total', { type: 'stateChanged' }), 1);
  t.equal(running.value('stevedore_coordinator_events_total', { type: 'logs' }), 1, 'an event sent again is not counted twice');
  t.equal(running.value('stevedore_coordinator_jobs', { state: 'running' }), 1);
  t.equal(running.value('stevedore_coordinator_gpus', { state: 'allocated' }), 2);

  // A GPU the agent reports unhealthy.
  a.send({ heartbeat: { sentAtMs: s.clock.now(), runningAttempts: 1, gpuHealth: [{ uuid: 'GPU-node-a-3', healthy: false, problems: ['3 uncorrected ECC errors'], temperatureC: 40 }] } });
  await a.next((m) => m.msg === 'heartbeatAck');
  const unhealthy = await scrape(s.metrics);
  t.equal(unhealthy.value('stevedore_coordinator_gpus', { state: 'unhealthy' }), 1);
  t.equal(unhealthy.value('stevedore_coordinator_gpus', { state: 'total' }), 4);

  await t.rejects(s.client.getJob('no-such-job'), { code: 'JOB_NOT_FOUND' });
  const lines: string[] = [];
  for await (const l of s.client.streamLogs(job.jobId)) lines.push(l.line?.text ?? '');
  t.same(lines, ['step 1']);
  await eventually(async () => (await scrape(s.metrics)).value('stevedore_coordinator_control_requests_total', { method: 'StreamLogs', code: 'OK' }) === 1);
  const calls = await scrape(s.metrics);
  t.equal(calls.value('stevedore_coordinator_control_requests_total', { method: 'GetJob', code: 'NOT_FOUND' }), 1);

  a.kill();
  await eventually(async () => (await scrape(s.metrics)).value('stevedore_coordinator_sessions') === 0);
  const gone = await scrape(s.metrics);
  t.equal(gone.value('stevedore_coordinator_nodes', { state: 'offline' }), 1);
  t.equal(gone.value('stevedore_coordinator_gpus', { state: 'total' }), 0, 'only connected nodes count');
  checkNaming(t, gone, 'stevedore_coordinator_');
});
