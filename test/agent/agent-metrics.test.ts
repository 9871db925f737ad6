// The agent's /metrics, /livez and /readyz, scraped over HTTP from a real
// agent (the test engine, a scripted coordinator, s3rver), read the way an
// operator reads them.
import t from 'tap';
import { loadAgentConfig } from '../../src/agent/agent-config.ts';
import { setupAgent, trainerSpec } from '../helpers/agent-harness.ts';
import { freePort, waitUntil } from '../helpers/cluster.ts';
import { FakeCoordinator } from '../helpers/fake-coordinator.ts';
import { writeFakeNvidiaSmi } from '../helpers/fake-gpus.ts';
import { checkNaming, httpGet, scrape } from '../helpers/prometheus.ts';
import { startS3Server } from '../helpers/s3-server.ts';

interface Readiness {
  ready: boolean;
  notReady: string[];
  checks: Record<string, { ready: boolean; detail: string }>;
}

function addressOf(agent: { metricsAddress: string | undefined }): string {
  if (!agent.metricsAddress) throw new Error('the agent serves no metrics');
  return agent.metricsAddress;
}

void t.test('metrics.listen: default, environment, flag, off, and a bad value named with its fix', (t) => {
  const load = (env: NodeJS.ProcessEnv, flags = {}): ReturnType<typeof loadAgentConfig> => loadAgentConfig({ file: '/nonexistent/agent.yaml', env, flags });
  t.equal(load({}).metrics.listen, '0.0.0.0:9464');
  t.equal(load({ STEVEDORE_METRICS_LISTEN: '127.0.0.1:0' }).metrics.listen, '127.0.0.1:0');
  t.equal(load({ STEVEDORE_METRICS_LISTEN: '127.0.0.1:0' }, { metricsListen: '[::1]:9100' }).metrics.listen, '[::1]:9100', 'the flag wins');
  t.equal(load({}, { metricsListen: 'off' }).metrics.listen, undefined, 'off: no server');
  t.throws(() => load({ STEVEDORE_METRICS_LISTEN: '9464' }), {
    code: 'CONFIG_INVALID',
    message: /metrics\.listen: "9464" is not host:port; write host:port such as 0\.0\.0\.0:9464 or 127\.0\.0\.1:0 \(IPv6: \[::1\]:9464\), or off \(set by STEVEDORE_METRICS_LISTEN\)/,
  });
  t.throws(() => load({}, { metricsListen: '0.0.0.0:99999' }), { message: /metrics\.listen: port 99999 is out of range.*\(set by --metrics-listen\)/ });
  t.end();
});

void t.test('readyz is 503 naming the session until it registers, then 200; livez 200; unknown paths 404', async (t) => {
  const port = await freePort();
  // Two GPUs, the second with uncorrected ECC errors.
  const nvidiaSmiPath = writeFakeNvidiaSmi(t.testdir(), [{}, { fields: { 'ecc.errors.uncorrected.volatile.total': 3 } }]);
  const { agent } = await setupAgent(t, 2, { coordinator: { address: `127.0.0.1:${port}`, tls: undefined }, nvidiaSmiPath }, { waitForRegister: false });
  const address = addressOf(agent);
  t.match(address, /^127\.0\.0\.1:\d+$/);

  const before = await httpGet(address, '/readyz');
  t.equal(before.status, 503, 'no coordinator yet: not ready');
  const body = JSON.parse(before.body) as Readiness;
  t.same(body.notReady, ['session']);
  t.match(body.checks, { engine: { ready: true }, localApi: { ready: true }, session: { ready: false, detail: /^(connecting|backoff)/ } });
  t.equal((await scrape(address)).value('stevedore_session_connected'), 0);

  const live = await httpGet(address, '/livez');
  t.same([live.status, live.body], [200, 'ok\n']);
  t.equal((await httpGet(address, '/nothing-here')).status, 404);

  const coordinator = new FakeCoordinator();
  await coordinator.start(port);
  t.teardown(() => coordinator.close());
  await coordinator.waitFor((m) => m.msg === 'register');
  await waitUntil(async () => (await httpGet(address, '/readyz')).status === 200, 10_000, () => 'readyz never became 200 after the registration');
  const metrics = await scrape(address);
  t.equal(metrics.value('stevedore_session_connected'), 1);
  t.ok((metrics.value('stevedore_session_reconnects_total') ?? 0) >= 1, 'the failed dials before the coordinator came count as reconnects');
  t.equal(metrics.value('stevedore_agent_gpus', { state: 'total' }), 2);
  t.equal(metrics.value('stevedore_agent_gpus', { state: 'allocated' }), 0);
  t.equal(metrics.value('stevedore_agent_gpus', { state: 'unhealthy' }), 1, 'the GPU with ECC errors');
  t.equal(metrics.value('stevedore_build_info', { version: agent.status().agentVersion ?? '' }), 1);
  t.ok((metrics.value('process_resident_memory_bytes') ?? 0) > 0, 'process metrics too');
  checkNaming(t, metrics, 'stevedore_');
});

void t.test('a checkpoint commit, the attempt states, unacknowledged events and notices move their metrics', async (t) => {
  const s3 = await startS3Server({ buckets: ['metrics'] });
  t.teardown(() => s3.close());
  const { coordinator, agent } = await setupAgent(t, 2, { s3: { endpoints: { default: s3.config } } });
  const address = addressOf(agent);
  const before = await scrape(address);
  t.equal(before.value('stevedore_checkpoint_uploaded_bytes_total'), 0);
  t.equal(before.value('stevedore_checkpoint_time_to_commit_seconds_count'), 0);
  t.equal(before.value('stevedore_checkpoint_commits_total', { result: 'committed' }), 0);
  t.equal(before.value('stevedore_events_pending'), 0);

  // Events stay unacknowledged, as with a coordinator that stores nothing.
  coordinator.ackEvents = false;
  const spec = trainerSpec(
    'measured',
    { checkpoint: { path: '/ckpt', destination: 's3://metrics/jobs/measured', rule: 'dcp', keep: 5 }, mounts: [], resources: { gpus: 1 } },
    { TRAIN_STEPS: '3', TRAIN_STEP_SECONDS: '0.4', TRAIN_CKPT_EVERY: '2', TRAIN_CKPT_BYTES: String(1024 * 1024) },
  );
  await coordinator.command({ startJob: { jobId: 'measured', attempt: 1, spec } });
  let running: Awaited<ReturnType<typeof scrape>> | undefined;
  await waitUntil(async () => {
    running = await scrape(address);
    return running.value('stevedore_agent_attempts', { state: 'running' }) === 1;
  }, 20_000, () => 'the attempt never showed as running');
  t.equal(running?.value('stevedore_agent_gpus', { state: 'allocated' }), 1, 'its GPU is allocated while it runs');
  t.equal(running?.value('stevedore_agent_attempts', { state: 'pulling' }), 0, 'every state is there, at 0 when empty');

  await coordinator.waitFor((m) => m.event?.jobId === 'measured' && m.event.body === 'exited', 30_000);
  const commits = coordinator.events('measured').flatMap((e) => (e.checkpointCommitted ? [e.checkpointCommitted] : []));
  t.equal(commits.length, 1, 'one checkpoint (step 2)');
  const commit = commits[0];
  const after = await scrape(address);
  t.equal(after.value('stevedore_checkpoint_uploaded_bytes_total'), Number(commit?.uploadedBytes), "grew by the checkpoint's uploaded bytes");
  t.ok(Number(commit?.uploadedBytes) > 1024 * 1024, 'the data file and the metadata');
  t.equal(after.value('stevedore_checkpoint_commits_total', { result: 'committed' }), 1);
  t.equal(after.value('stevedore_checkpoint_time_to_commit_seconds_count'), 1, 'one more time-to-commit observation');
  t.ok(Math.abs((after.value('stevedore_checkpoint_time_to_commit_seconds_sum') ?? NaN) - Number(commit?.timeToCommitMs) / 1000) < 1e-9, 'of the time the commit event reports');
  t.equal(after.value('stevedore_checkpoint_upload_throughput_bytes_per_second_count'), 1);
  t.equal(after.value('stevedore_checkpoint_uploads_in_flight'), 0, 'nothing uploading after the end');
  t.equal(after.value('stevedore_agent_attempts', { state: 'succeeded' }), 1, 'the ended attempt is held until the coordinator has its end');
  t.equal(after.value('stevedore_agent_gpus', { state: 'allocated' }), 0, 'its GPU is free again');
  const sent = coordinator.events().length;
  t.ok(sent > 0);
  t.equal(after.value('stevedore_events_pending'), sent, 'every event sent is still unacknowledged');

  const last = Math.max(...coordinator.events().map((e) => e.eventId));
  coordinator.send({ eventAck: { upToEventId: last } });
  await waitUntil(async () => (await scrape(address)).value('stevedore_events_pending') === 0, 5000, () => 'events still pending after the acknowledgement');

  const now = Date.now();
  await agent.onNotice({ id: 'rebalance-1', source: 'aws-rebalance', kind: 'rebalance recommendation', deadlineMs: now + 120_000, receivedMs: now, advisory: true });
  const advised = await scrape(address);
  t.equal(advised.value('stevedore_preemption_notices_total', { source: 'aws-rebalance' }), 1);
  t.equal(advised.value('stevedore_drain_duration_seconds_count'), 0, 'an advisory notice drains nothing');

  const notice = { id: 'gcp-1', source: 'gcp' as const, kind: 'preempted', deadlineMs: now + 30_000, receivedMs: now, advisory: false };
  await agent.onNotice(notice);
  await agent.onNotice(notice);
  const drained = await scrape(address);
  t.equal(drained.value('stevedore_preemption_notices_total', { source: 'gcp' }), 1, 'a notice seen twice counts once');
  t.equal(drained.value('stevedore_drain_duration_seconds_count'), 1);
  t.equal(drained.value('stevedore_drain_margin_seconds_count'), 0, 'no job was drained: no margin');
  checkNaming(t, drained, 'stevedore_');
});
