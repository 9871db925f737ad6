// The agent in-process against the real test engine, driven by a scripted
// coordinator that can send it anything, well-formed or not.
import t from 'tap';
import Docker from 'dockerode';
import { execFile } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import { fetchAgentStatus } from '../../src/agent/local-api.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { gpuRecords, testEngineEnv } from '../helpers/engine.ts';
import type { FakeCoordinator } from '../helpers/fake-coordinator.ts';
import { setupAgent as setup, trainerSpec } from '../helpers/agent-harness.ts';
import { waitUntil } from '../helpers/cluster.ts';
import { startFakeRegistry } from '../fixtures/engine/registry.ts';

const run = promisify(execFile);

const env = testEngineEnv();
const engine = new DockerEngine({ dockerHost: env.dockerHost });

function exitedEvents(c: FakeCoordinator, jobId: string) {
  return c.events(jobId).filter((e) => e.body === 'exited');
}

void t.test('registers with its inventory, labels and version', async (t) => {
  const { coordinator, agent } = await setup(t);
  const reg = (await coordinator.waitFor((m) => m.msg === 'register')).register;
  t.equal(reg?.nodeId, agent.nodeId);
  t.match(reg?.nodeId, /^node-[0-9a-f]{12}$/);
  t.equal(reg?.protocolVersion, 1);
  t.equal(reg?.inventory?.gpus.length, 4);
  t.match(reg?.inventory?.gpus[0]?.uuid, /^GPU-/);
  t.equal(reg?.inventory?.hostname, 'test-node');
  t.ok((reg?.inventory?.memoryBytes ?? 0) > 0);
  t.same(reg?.labels, { zone: 'test-a', spot: 'true' });
  await coordinator.waitFor((m) => m.msg === 'heartbeat');
});

void t.test('runs a job on the GPUs it was given and reports its life once', async (t) => {
  const { coordinator, agent, config } = await setup(t);
  const ack = await coordinator.command({ startJob: { jobId: 'job-a', attempt: 1, spec: trainerSpec('job-a', { resources: { gpus: 2, shm: '128Mi' } }) } });
  t.same(ack.accepted, true);
  await coordinator.waitFor((m) => m.event?.jobId === 'job-a' && m.event.body === 'exited', 30000);
  const events = coordinator.events('job-a');
  const states = events.filter((e) => e.body === 'stateChanged').map((e) => e.stateChanged?.state);
  t.same(states, ['ATTEMPT_STATE_ACCEPTED', 'ATTEMPT_STATE_STARTING', 'ATTEMPT_STATE_RUNNING']);
  const exited = exitedEvents(coordinator, 'job-a');
  t.equal(exited.length, 1);
  t.equal(exited[0]?.exited?.state, 'ATTEMPT_STATE_SUCCEEDED');
  t.equal(exited[0]?.exited?.exitCode, 0);
  const running = events.find((e) => e.stateChanged?.state === 'ATTEMPT_STATE_RUNNING');
  const gpus = running?.stateChanged?.gpuUuids ?? [];
  t.equal(gpus.length, 2);
  // The engine's GPU hook saw exactly those GPUs for this container.
  const record = gpuRecords(running?.stateChanged?.containerId);
  t.equal(record.length, 1);
  t.same(record[0]?.visibleDevices, gpus);
  t.equal(record[0]?.jobId, 'job-a');
  // Logs reached the coordinator (stdout and stderr) and the host file.
  const lines = events.flatMap((e) => e.logs?.lines ?? []);
  t.ok(lines.some((l) => l.stream === 'stdout' && /training complete: 5 steps/.test(l.text)), 'stdout line');
  t.ok(lines.some((l) => l.stream === 'stderr'), 'stderr line');
  const hostLog = readFileSync(path.join(config.stateDir, 'logs', 'job-a.1.log'), 'utf8');
  t.match(hostLog, /stdout step 5\/5/);
  // Event ids grow by one.
  const ids = coordinator.events().map((e) => e.eventId);
  t.same(ids, ids.map((_, i) => i + 1));
  // The container goes once its end is acknowledged; the checkpoints stay on the host.
  await waitUntil(async () => (await engine.list({ [LABELS.jobId]: 'job-a', [LABELS.nodeId]: agent.nodeId })).length === 0, 10000, () => 'container not removed');
  t.equal(agent.status().attempts?.length, 0);
  t.match(readFileSync(path.join(config.workRoot, 'job-a', 'ckpt', 'step-000004', '.metadata'), 'utf8'), /"step": 4/, 'checkpoints written through the mount stay in the job directory');
});

void t.test('a failing job reports its exit code; a stop uses the stop signal', async (t) => {
  const { coordinator } = await setup(t);
  await coordinator.command({ startJob: { jobId: 'job-fail', attempt: 1, spec: trainerSpec('job-fail', {}, { TRAIN_EXIT_CODE: '3', TRAIN_STEPS: '1' }) } });
  const failed = await coordinator.waitFor((m) => m.event?.jobId === 'job-fail' && m.event.body === 'exited', 30000);
  t.equal(failed.event?.exited?.state, 'ATTEMPT_STATE_FAILED');
  t.equal(failed.event?.exited?.exitCode, 3);

  await coordinator.command({ startJob: { jobId: 'job-stop', attempt: 1, spec: trainerSpec('job-stop', { stopSignal: 'SIGUSR1' }, { TRAIN_STEPS: '1000', TRAIN_SIGNAL: 'USR1' }) } });
  await coordinator.waitFor((m) => m.event?.jobId === 'job-stop' && m.event.stateChanged?.state === 'ATTEMPT_STATE_RUNNING', 30000);
  await new Promise((r) => setTimeout(r, 500));
  const ack = await coordinator.command({ stopJob: { jobId: 'job-stop', attempt: 1, reason: 'test' } });
  t.equal(ack.accepted, true);
  const stopped = await coordinator.waitFor((m) => m.event?.jobId === 'job-stop' && m.event.body === 'exited', 30000);
  t.equal(stopped.event?.exited?.state, 'ATTEMPT_STATE_CANCELLED');
  t.equal(stopped.event?.exited?.exitCode, 0, 'the job caught USR1 and exited on its own, well inside the grace period');
  t.ok(coordinator.events('job-stop').some((e) => e.stateChanged?.state === 'ATTEMPT_STATE_STOPPING'));
  const lines = coordinator.events('job-stop').flatMap((e) => e.logs?.lines ?? []);
  t.ok(lines.some((l) => /final checkpoint/.test(l.text)), 'the job wrote its final checkpoint on the stop signal');
});

void t.test('bad commands get clear refusals and disturb nothing', async (t) => {
  const { coordinator, config } = await setup(t, 2);
  await coordinator.command({ startJob: { jobId: 'steady', attempt: 1, spec: trainerSpec('steady', { resources: { gpus: 1 } }, { TRAIN_STEPS: '30', TRAIN_STEP_SECONDS: '0.1' }) } });
  await coordinator.waitFor((m) => m.event?.jobId === 'steady' && m.event.stateChanged?.state === 'ATTEMPT_STATE_RUNNING', 30000);

  const refusals: [string, Parameters<FakeCoordinator['command']>[0], string, RegExp][] = [
    ['invalid spec', { startJob: { jobId: 'bad-spec', attempt: 1, spec: { name: 'bad-spec', image: '' } } }, 'SPEC_INVALID', /image/],
    ['job id escaping a path', { startJob: { jobId: '../../etc', attempt: 1, spec: trainerSpec('x') } }, 'SPEC_INVALID', /job id/],
    ['no attempt number', { startJob: { jobId: 'no-attempt', attempt: 0, spec: trainerSpec('x') } }, 'SESSION_PROTOCOL', /attempt/],
    ['more GPUs than the node has', { startJob: { jobId: 'greedy', attempt: 1, spec: trainerSpec('greedy', { resources: { gpus: 3 } }) } }, 'GPUS_UNSATISFIABLE', /asks for 3 GPUs; this node has 2/],
    ['more GPUs than are free', { startJob: { jobId: 'busy', attempt: 1, spec: trainerSpec('busy', { resources: { gpus: 2 } }) } }, 'GPUS_UNAVAILABLE', /1 of 2 are free/],
    ['an empty command', {}, 'SESSION_PROTOCOL', /no known instruction/],
    ['a start without a spec', { startJob: { jobId: 'nospec', attempt: 1 } }, 'SPEC_INVALID', /spec/],
  ];
  for (const [name, command, code, message] of refusals) {
    const ack = await coordinator.command(command);
    t.equal(ack.accepted, false, name);
    t.equal(ack.error?.code, code, `${name}: code`);
    t.match(ack.error?.message, message, `${name}: message`);
  }
  // A duplicate start is acknowledged without a second container.
  const again = await coordinator.command({ startJob: { jobId: 'steady', attempt: 1, spec: trainerSpec('steady', { resources: { gpus: 1 } }) } });
  t.equal(again.accepted, true);
  t.equal((await engine.list({ [LABELS.jobId]: 'steady' })).length, 1);
  // Messages the agent does not expect are ignored.
  coordinator.send({ registered: { sessionId: 'again', heartbeatIntervalMs: 1, leaseMs: 1, ackedEventId: 999 } });
  coordinator.send({});
  const stopUnknown = await coordinator.command({ stopJob: { jobId: 'never-heard-of', attempt: 7 } });
  t.equal(stopUnknown.accepted, true, 'stopping an attempt the agent does not hold is a no-op');

  const status = await fetchAgentStatus(config.socketPath);
  t.equal(status.sessionState, 'connected');
  const done = await coordinator.waitFor((m) => m.event?.jobId === 'steady' && m.event.body === 'exited', 30000);
  t.equal(done.event?.exited?.state, 'ATTEMPT_STATE_SUCCEEDED', 'the running job finished undisturbed');
});

void t.test('a registration reply claiming an event id beyond any the agent could assign does not hold back its events', async (t) => {
  const { coordinator } = await setup(t);
  coordinator.registeredAck = 2 ** 53;
  const before = coordinator.registrations;
  coordinator.dropSession();
  await waitUntil(() => coordinator.registrations > before, 15000, () => 'the agent did not register again');
  await coordinator.command({ startJob: { jobId: 'after-bad-ack', attempt: 1, spec: trainerSpec('after-bad-ack', { resources: { gpus: 1 } }) } });
  const done = await coordinator.waitFor((m) => m.event?.jobId === 'after-bad-ack' && m.event.body === 'exited', 30000);
  t.equal(done.event?.exited?.state, 'ATTEMPT_STATE_SUCCEEDED', 'the events after the bad acknowledgement reach the coordinator');
  t.ok(Number(done.event?.eventId) < 2 ** 52, `event ids stay exact (${String(done.event?.eventId)})`);
});

void t.test('an unknown image and an impossible ulimit fail the attempt, not the agent', async (t) => {
  const { coordinator, agent } = await setup(t);
  await coordinator.command({ startJob: { jobId: 'no-image', attempt: 1, spec: trainerSpec('no-image', { image: '127.0.0.1:9/nowhere/trainer:1', pullPolicy: 'if-not-present' }) } });
  const noImage = await coordinator.waitFor((m) => m.event?.jobId === 'no-image' && m.event.body === 'exited', 30000);
  t.equal(noImage.event?.exited?.state, 'ATTEMPT_STATE_FAILED');
  t.equal(noImage.event?.exited?.exitCode, -1);
  t.match(noImage.event?.exited?.error?.code, /^IMAGE_(PULL_FAILED|NOT_FOUND)$/);
  t.match(noImage.event?.exited?.error?.message, /127\.0\.0\.1:9\/nowhere\/trainer:1/);

  await coordinator.command({ startJob: { jobId: 'memlock', attempt: 1, spec: trainerSpec('memlock', { ulimits: { memlock: -1 } }) } });
  const memlock = await coordinator.waitFor((m) => m.event?.jobId === 'memlock' && m.event.body === 'exited', 30000);
  t.equal(memlock.event?.exited?.error?.code, 'CONTAINER_START_FAILED');
  t.match(memlock.event?.exited?.error?.message, /rlimit|memlock/);
  t.equal(agent.status().sessionState, 'connected');
});

void t.test('a restarted agent re-adopts its running container and reports its end once', async (t) => {
  const s = await setup(t);
  await s.coordinator.command({ startJob: { jobId: 'long', attempt: 1, spec: trainerSpec('long', { resources: { gpus: 2 } }, { TRAIN_STEPS: '20', TRAIN_STEP_SECONDS: '0.15' }) } });
  const running = await s.coordinator.waitFor((m) => m.event?.jobId === 'long' && m.event.stateChanged?.state === 'ATTEMPT_STATE_RUNNING', 30000);
  const containerId = running.event?.stateChanged?.containerId ?? '';
  await s.agent.close();
  t.equal((await engine.inspect(containerId))?.running, true, 'the container runs on without the agent');
  await new Promise((r) => setTimeout(r, 700));
  const agent = await s.restart();
  const reg = await s.coordinator.waitFor((m) => m.msg === 'register' && (m.register?.attempts.length ?? 0) > 0);
  t.same(reg.register?.attempts.map((a) => [a.jobId, a.attempt, a.state]), [['long', 1, 'ATTEMPT_STATE_RUNNING']]);
  // The re-adopted job keeps its GPUs: only 2 of 4 can be handed out meanwhile.
  const greedy = await s.coordinator.command({ startJob: { jobId: 'greedy', attempt: 1, spec: trainerSpec('greedy', { resources: { gpus: 3 } }) } });
  t.equal(greedy.error?.code, 'GPUS_UNAVAILABLE');
  t.match(greedy.error?.message, /2 of 4 are free/);
  await s.coordinator.waitFor((m) => m.event?.jobId === 'long' && m.event.body === 'exited', 30000);
  t.equal(exitedEvents(s.coordinator, 'long').length, 1);
  const stepLines = s.coordinator.events('long').flatMap((e) => e.logs?.lines ?? []).map((l) => l.text).filter((x) => /^step \d+\/20/.test(x));
  t.equal(stepLines.length, 20, 'every step line arrived exactly once across the restart');
  t.equal(new Set(stepLines).size, 20);
  await waitUntil(() => agent.status().attempts?.length === 0, 10000, () => 'attempt not cleaned up');
  const later = await s.coordinator.command({ startJob: { jobId: 'greedy', attempt: 2, spec: trainerSpec('greedy', { resources: { gpus: 3 } }, { TRAIN_STEPS: '1' }) } });
  t.equal(later.accepted, true, 'its GPUs are free again once it ended');
});

void t.test('events wait on disk while the coordinator is away and arrive once after', async (t) => {
  const s = await setup(t);
  s.coordinator.ackEvents = false;
  await s.coordinator.command({ startJob: { jobId: 'offline', attempt: 1, spec: trainerSpec('offline', {}, { TRAIN_STEPS: '10', TRAIN_STEP_SECONDS: '0.1' }) } });
  await s.coordinator.waitFor((m) => m.event?.jobId === 'offline' && m.event.body === 'exited', 30000);
  t.ok(Number(s.agent.status().unackedEvents) > 0, 'nothing acknowledged yet');
  // The coordinator restarts: the agent re-registers and replays what was not acknowledged.
  const before = s.coordinator.events().length;
  s.coordinator.ackEvents = true;
  s.coordinator.dropSession();
  await s.coordinator.waitFor((m) => m.msg === 'register' && s.coordinator.registrations >= 2, 15000);
  await waitUntil(() => s.agent.status().unackedEvents === 0, 15000, () => 'events not acknowledged after the reconnect');
  const replayed = s.coordinator.events().slice(before);
  t.ok(replayed.length > 0, 'unacknowledged events were sent again');
  t.equal(exitedEvents(s.coordinator, 'offline').length, 2, 'sent twice on the wire, under one id');
  t.equal(new Set(exitedEvents(s.coordinator, 'offline').map((e) => e.eventId)).size, 1);
});

void t.test('pulls with the registry credentials from its config, progress in the job log', async (t) => {
  const auth = { username: 'trainer', password: 'correct horse battery' };
  const registry = await startFakeRegistry({ auth, layerChunkDelayMs: 20 });
  t.teardown(() => registry.close());
  const image = registry.addImage('team/private', 'v1', 256 * 1024);
  t.teardown(() => new Docker({ socketPath: env.socketPath }).getImage(image).remove({ force: true }).catch(() => undefined));
  const { coordinator, config } = await setup(t, 2, { registries: [{ server: registry.address, ...auth }] });
  await coordinator.command({ startJob: { jobId: 'private', attempt: 1, spec: trainerSpec('private', { image, pullPolicy: 'always' }) } });
  const end = await coordinator.waitFor((m) => m.event?.jobId === 'private' && m.event.body === 'exited', 30000);
  const states = coordinator.events('private').filter((e) => e.body === 'stateChanged').map((e) => e.stateChanged?.state);
  t.ok(states.includes('ATTEMPT_STATE_PULLING'), 'the attempt went through PULLING');
  t.ok(states.includes('ATTEMPT_STATE_STARTING'), 'and on to its container once the image was there');
  t.notMatch(end.event?.exited?.error?.code ?? '', /^IMAGE_/, 'the pull itself succeeded');
  t.ok(registry.requests.some((r) => r.includes('/blobs/')), 'layers were fetched from the registry');
  const hostLog = readFileSync(path.join(config.stateDir, 'logs', 'private.1.log'), 'utf8');
  t.match(hostLog, new RegExp(`agent pulling image ${image.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  t.match(hostLog, /agent pulled image/);
  t.notMatch(hostLog, /correct horse/, 'the password is never logged');
});

void t.test('the local API answers `stevedore status --agent`, on a socket only its owner may open', async (t) => {
  const { config, agent } = await setup(t);
  t.equal(statSync(config.socketPath).mode & 0o777, 0o600);
  const out = await run(process.execPath, [path.resolve(import.meta.dirname, '..', '..', 'bin', 'stevedore.js'), 'status', '--agent', config.socketPath, '--json']);
  const status = JSON.parse(out.stdout) as { nodeId: string; sessionState: string; inventory: { gpus: unknown[] } };
  t.equal(status.nodeId, agent.nodeId);
  t.equal(status.sessionState, 'connected');
  t.equal(status.inventory.gpus.length, 4);
  const human = await run(process.execPath, [path.resolve(import.meta.dirname, '..', '..', 'bin', 'stevedore.js'), 'status', '--agent', config.socketPath]);
  t.match(human.stdout, new RegExp(`node ${agent.nodeId} \\(test-node\\)`));
  t.match(human.stdout, /coordinator 127\.0\.0\.1:\d+: connected/);
});
