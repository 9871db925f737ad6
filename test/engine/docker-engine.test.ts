// DockerEngine against the real engine started by scripts/with-test-env.ts.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import Docker from 'dockerode';
import type { ContainerSpec, LogLine, PullProgress } from '../../src/engine/container-engine.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { gpuRecords, testEngineEnv, uniqueName } from '../helpers/engine.ts';
import { startFakeRegistry } from '../fixtures/engine/registry.ts';

const env = testEngineEnv();
const engine = new DockerEngine({ dockerHost: env.dockerHost });
const docker = new Docker({ socketPath: env.socketPath });
const runLabel = { 'org.stevedore.test.run': uniqueName('run') };

t.teardown(async () => {
  for (const c of await engine.list(runLabel)) await engine.remove(c.id);
});

function spec(overrides: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name: uniqueName('engine'),
    image: env.trainerImage,
    command: ['true'],
    env: {},
    labels: { ...runLabel },
    gpuUuids: [],
    cpus: 0,
    memoryBytes: 0,
    shmBytes: 0,
    ulimits: [],
    hostIpc: false,
    hostNetwork: false,
    networkMode: 'none',
    mounts: [],
    stopSignal: 'SIGTERM',
    workingDir: '',
    ...overrides,
  };
}

/** Creates, starts and waits for a container; returns its exit code and its log lines. */
async function run(overrides: Partial<ContainerSpec>): Promise<{ id: string; exitCode: number; lines: LogLine[] }> {
  const id = await engine.create(spec(overrides));
  await engine.start(id);
  const { exitCode } = await engine.wait(id);
  const lines: LogLine[] = [];
  await engine.followLogs(id, {}, (line) => lines.push(line));
  return { id, exitCode, lines };
}

const stdout = (lines: LogLine[]): string[] => lines.filter((l) => l.stream === 'stdout').map((l) => l.text);
const stderr = (lines: LogLine[]): string[] => lines.filter((l) => l.stream === 'stderr').map((l) => l.text);

void t.test('ping answers on the test engine and names the socket when it cannot connect', async (t) => {
  await engine.ping();
  const missing = new DockerEngine({ dockerHost: 'unix:///nonexistent/stevedore/docker.sock' });
  await t.rejects(missing.ping(), { code: 'ENGINE_UNREACHABLE', message: /unix:\/\/\/nonexistent\/stevedore\/docker\.sock.*dockerd is running/ });
});

void t.test('a container runs its command and its exit code is reported', async (t) => {
  const id = await engine.create(spec({ command: ['sh', '-c', 'exit 3'] }));
  const created = await engine.inspect(id);
  t.equal(created?.state, 'created');
  t.equal(created?.exitCode, undefined);
  await engine.start(id);
  t.same(await engine.wait(id), { exitCode: 3, oomKilled: false });
  const info = await engine.inspect(id);
  t.equal(info?.state, 'exited');
  t.equal(info?.running, false);
  t.equal(info?.exitCode, 3);
  t.equal(info?.image, env.trainerImage);
  // Both times are set (for a command this short the engine may record the start after the finish).
  for (const at of [info?.startedAtMs, info?.finishedAtMs]) t.ok(at !== undefined && Math.abs(at - Date.now()) < 60_000);
  // Waiting again on an exited container answers at once.
  t.same(await engine.wait(id), { exitCode: 3, oomKilled: false });
});

void t.test('the image default command runs when the command is empty', async (t) => {
  const { exitCode, lines } = await run({ command: [], env: { TRAIN_STEPS: '2', TRAIN_STEP_SECONDS: '0', TRAIN_CKPT_EVERY: '0' } });
  t.equal(exitCode, 0);
  t.same(stdout(lines), ['step 1/2 loss=1.350', 'step 2/2 loss=0.933', 'training complete: 2 steps']);
});

void t.test('env, working directory and user reach the process', async (t) => {
  const { lines } = await run({
    command: ['sh', '-c', 'echo "$GREETING"; pwd; id -u'],
    env: { GREETING: 'hello world' },
    workingDir: '/tmp',
    user: '65534:65534',
  });
  t.same(stdout(lines), ['hello world', '/tmp', '65534']);
});

void t.test('create is idempotent by name', async (t) => {
  const s = spec({ command: ['sleep', '5'] });
  const first = await engine.create(s);
  const second = await engine.create(s);
  t.equal(second, first);
  t.equal((await engine.inspect(s.name))?.id, first);
});

void t.test('create fails clearly for an image that is not on the node', async (t) => {
  await t.rejects(engine.create(spec({ image: 'stevedore/not-here:1' })), {
    code: 'CONTAINER_CREATE_FAILED',
    message: /stevedore\/not-here:1.*pull it first/,
  });
});

void t.test('every container gets no-new-privileges, no privileges and the stop signal of the spec', async (t) => {
  const id = await engine.create(spec({ stopSignal: 'SIGUSR1' }));
  const raw = await docker.getContainer(id).inspect();
  t.same(raw.HostConfig.SecurityOpt, ['no-new-privileges']);
  t.equal(raw.HostConfig.Privileged, false);
  t.same(raw.HostConfig.CapAdd ?? [], []);
  t.equal((raw.Config as { StopSignal?: string }).StopSignal, 'SIGUSR1');
});

void t.test('cpus and memory become engine limits', async (t) => {
  const id = await engine.create(spec({ cpus: 1.5, memoryBytes: 256 * 1024 * 1024 }));
  const raw = await docker.getContainer(id).inspect();
  t.equal(raw.HostConfig.NanoCpus, 1_500_000_000);
  t.equal(raw.HostConfig.Memory, 256 * 1024 * 1024);
});

void t.test('labels are set and list finds containers in any state by all given labels', async (t) => {
  const job = { ...runLabel, 'org.stevedore.job': uniqueName('job') };
  const created = await engine.create(spec({ labels: { ...job, 'org.stevedore.attempt': '1' } }));
  const exited = (await run({ labels: { ...job, 'org.stevedore.attempt': '2' } })).id;
  await engine.create(spec({ labels: { ...runLabel, 'org.stevedore.attempt': '1' } }));

  const all = await engine.list(job);
  t.same(all.map((c) => c.id).sort(), [created, exited].sort());
  const first = await engine.list({ ...job, 'org.stevedore.attempt': '1' });
  t.same(first.map((c) => c.id), [created]);
  t.equal(first[0]?.labels['org.stevedore.attempt'], '1');
  t.equal(first[0]?.state, 'created');
  t.same(await engine.list({ 'org.stevedore.job': 'no-such-job' }), []);
});

void t.test('GPUs are handed out by UUID through the nvidia device driver', async (t) => {
  const { id, exitCode, lines } = await run({
    command: ['sh', '-c', 'echo "visible=$NVIDIA_VISIBLE_DEVICES"'],
    gpuUuids: ['GPU-a', 'GPU-b'],
    env: { STEVEDORE_JOB_ID: 'job-gpu', STEVEDORE_ATTEMPT: '2' },
  });
  t.equal(exitCode, 0);
  t.same(stdout(lines), ['visible=GPU-a,GPU-b']);
  const raw = await docker.getContainer(id).inspect();
  t.same(raw.HostConfig.DeviceRequests, [{ Driver: 'nvidia', Count: 0, DeviceIDs: ['GPU-a', 'GPU-b'], Capabilities: [['gpu']], Options: null }]);
  const records = gpuRecords(id);
  t.equal(records.length, 1, 'the hook ran once for the container');
  t.same(records[0]?.visibleDevices, ['GPU-a', 'GPU-b']);
  t.equal(records[0]?.jobId, 'job-gpu');
  t.equal(records[0]?.attempt, '2');

  const none = await run({ command: ['sh', '-c', 'echo "visible=${NVIDIA_VISIBLE_DEVICES:-none}"'] });
  t.same(stdout(none.lines), ['visible=none']);
  t.same(gpuRecords(none.id), [], 'no record for a container without GPUs');
});

void t.test('shared memory size is set, and the engine default applies when it is 0', async (t) => {
  const sized = await run({ command: ['sh', '-c', "df -k /dev/shm | tail -n 1 | awk '{print $2}'"], shmBytes: 128 * 1024 * 1024 });
  t.same(stdout(sized.lines), ['131072']);
  const dflt = await run({ command: ['sh', '-c', "df -k /dev/shm | tail -n 1 | awk '{print $2}'"] });
  t.same(stdout(dflt.lines), ['65536']);
});

void t.test('host IPC and host network are opt-in', async (t) => {
  const id = await engine.create(spec({ hostIpc: true, hostNetwork: true }));
  const raw = await docker.getContainer(id).inspect();
  t.equal(raw.HostConfig.IpcMode, 'host');
  t.equal(raw.HostConfig.NetworkMode, 'host');
  const plain = await docker.getContainer(await engine.create(spec())).inspect();
  t.not(plain.HostConfig.IpcMode, 'host');
  t.equal(plain.HostConfig.NetworkMode, 'none');
});

void t.test('ulimits apply inside the container', async (t) => {
  const { lines } = await run({
    command: ['sh', '-c', 'ulimit -Sn; ulimit -Hn'],
    ulimits: [{ name: 'nofile', soft: 1234, hard: 2345 }],
  });
  t.same(stdout(lines), ['1234', '2345']);
});

void t.test('a memlock ulimit above the node hard limit fails at start, naming the problem', async (t) => {
  const id = await engine.create(spec({ ulimits: [{ name: 'memlock', soft: 64 * 1024 * 1024, hard: 64 * 1024 * 1024 }] }));
  await t.rejects(engine.start(id), {
    code: 'CONTAINER_START_FAILED',
    message: /rlimit.*ulimit in the job spec is above what this node allows/,
  });
  t.equal((await engine.inspect(id))?.running, false);
});

void t.test('start of a running container is fine; start of a missing one fails clearly', async (t) => {
  const id = await engine.create(spec({ command: ['sleep', '30'] }));
  await engine.start(id);
  await engine.start(id);
  t.equal((await engine.inspect(id))?.running, true);
  await engine.stop(id, 'SIGKILL', 0);
  await t.rejects(engine.start('stevedore-test-no-such-container'), { code: 'CONTAINER_START_FAILED', message: /create it again/ });
});

void t.test('bind mounts: read-only is enforced, read-write reaches the host', async (t) => {
  const dir = t.testdir({ ro: { 'input.txt': 'from the host\n' }, rw: {} });
  const { exitCode, lines } = await run({
    command: ['sh', '-c', 'cat /in/input.txt; echo x > /in/new.txt || echo "ro refused"; echo written > /out/result.txt'],
    mounts: [
      { hostPath: path.join(dir, 'ro'), containerPath: '/in', readOnly: true },
      { hostPath: path.join(dir, 'rw'), containerPath: '/out', readOnly: false },
    ],
  });
  t.equal(exitCode, 0);
  t.same(stdout(lines), ['from the host', 'ro refused']);
  t.match(stderr(lines).join('\n'), /Read-only file system/);
  t.notOk(existsSync(path.join(dir, 'ro', 'new.txt')));
  t.equal(readFileSync(path.join(dir, 'rw', 'result.txt'), 'utf8'), 'written\n');
});

void t.test('logs: stdout and stderr apart, in order, partial last line flushed', async (t) => {
  const { lines } = await run({
    command: ['sh', '-c', 'echo out-1; echo err-1 >&2; echo out-2; echo; echo err-2 >&2; printf "no newline"'],
  });
  t.same(stdout(lines), ['out-1', 'out-2', '', 'no newline']);
  t.same(stderr(lines), ['err-1', 'err-2']);
  for (const line of lines) {
    t.match(line.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    t.ok(Math.abs(line.timeMs - Date.now()) < 60_000);
  }
});

void t.test('logs are followed while the container runs, and resume after `since` without duplicates', async (t) => {
  const id = await engine.create(spec({
    command: ['sh', '-c', 'i=1; while [ $i -le 6 ]; do echo "line $i"; echo "warn $i" >&2; i=$((i+1)); sleep 0.1; done'],
  }));
  await engine.start(id);
  const live: LogLine[] = [];
  await engine.followLogs(id, {}, (line) => live.push(line));
  t.equal((await engine.inspect(id))?.running, false, 'following ends when the container exits');
  t.same(stdout(live), ['line 1', 'line 2', 'line 3', 'line 4', 'line 5', 'line 6']);
  t.same(stderr(live), ['warn 1', 'warn 2', 'warn 3', 'warn 4', 'warn 5', 'warn 6']);

  const cut = 5;
  const resumed: LogLine[] = [];
  await engine.followLogs(id, { since: live[cut - 1]?.timestamp ?? '' }, (line) => resumed.push(line));
  t.same(resumed.map((l) => `${l.stream}:${l.text}`), live.slice(cut).map((l) => `${l.stream}:${l.text}`));
});

void t.test('following logs stops when the signal aborts', async (t) => {
  const id = await engine.create(spec({ command: ['sh', '-c', 'echo started; sleep 30'] }));
  await engine.start(id);
  const controller = new AbortController();
  const lines: string[] = [];
  const following = engine.followLogs(id, { signal: controller.signal }, (line) => {
    lines.push(line.text);
    controller.abort();
  });
  await following;
  t.same(lines, ['started']);
  t.equal((await engine.inspect(id))?.running, true);
  await engine.stop(id, 'SIGKILL', 0);
});

void t.test('stop sends the given signal and the process may exit on its own', async (t) => {
  const id = await engine.create(spec({
    command: ['sh', '-c', 'trap "echo got USR1; exit 0" USR1; echo ready; while true; do sleep 0.1; done'],
  }));
  await engine.start(id);
  await waitForLine(id, 'ready');
  const started = Date.now();
  await engine.stop(id, 'SIGUSR1', 20);
  t.ok(Date.now() - started < 5000, 'no need to wait for the grace period');
  t.same(await engine.wait(id), { exitCode: 0, oomKilled: false });
  const lines: LogLine[] = [];
  await engine.followLogs(id, {}, (line) => lines.push(line));
  t.same(stdout(lines), ['ready', 'got USR1']);
});

void t.test('stop kills after the grace period when the signal is ignored; stop is idempotent', async (t) => {
  const id = await engine.create(spec({ command: ['sh', '-c', 'trap "" TERM; echo ready; while true; do sleep 0.1; done'] }));
  await engine.start(id);
  await waitForLine(id, 'ready');
  const started = Date.now();
  await engine.stop(id, 'SIGTERM', 1);
  const took = Date.now() - started;
  t.ok(took >= 900 && took < 8000, `killed after the 1 s grace period (took ${took} ms)`);
  const info = await engine.inspect(id);
  t.equal(info?.running, false);
  t.equal(info?.exitCode, 137);
  await engine.stop(id, 'SIGTERM', 1);
  await engine.remove(id);
  await engine.stop(id, 'SIGTERM', 1);
});

void t.test('remove is forced and idempotent; inspect then finds nothing', async (t) => {
  const id = await engine.create(spec({ command: ['sleep', '30'] }));
  await engine.start(id);
  await engine.remove(id);
  t.equal(await engine.inspect(id), undefined);
  await engine.remove(id);
  await engine.remove('stevedore-test-never-existed');
  await t.rejects(engine.wait(id), { code: 'CONTAINER_VANISHED' });
});

void t.test('images: hasImage tells present from absent', async (t) => {
  t.equal(await engine.hasImage(env.trainerImage), true);
  t.equal(await engine.hasImage('stevedore/not-here:1'), false);
});

void t.test('pulling from a registry that is not there fails at once with IMAGE_PULL_FAILED', async (t) => {
  // A port nothing listens on: the engine answers "connection refused".
  const registry = await startFakeRegistry();
  const address = registry.address;
  await registry.close();
  const started = Date.now();
  await t.rejects(engine.pullImage(`${address}/stevedore/nothing:1`, { inactivityTimeoutMs: 10_000 }), {
    code: 'IMAGE_PULL_FAILED',
    message: /connection refused.*can reach the registry/,
  });
  t.ok(Date.now() - started < 10_000, 'within the inactivity timeout');
});

void t.test('pulling an unknown repository or tag fails with IMAGE_NOT_FOUND', async (t) => {
  const registry = await startFakeRegistry();
  t.teardown(() => registry.close());
  registry.addImage('stevedore/known', '1', 1024);
  await t.rejects(engine.pullImage(`${registry.address}/stevedore/unknown:1`, { inactivityTimeoutMs: 10_000 }), {
    code: 'IMAGE_NOT_FOUND',
    message: /manifest unknown.*check the image name and tag/,
  });
  await t.rejects(engine.pullImage(`${registry.address}/stevedore/known:2`, { inactivityTimeoutMs: 10_000 }), { code: 'IMAGE_NOT_FOUND' });
});

void t.test('a pull that makes no progress fails with IMAGE_PULL_STALLED after the inactivity timeout', async (t) => {
  const registry = await startFakeRegistry({ stallRepos: ['stevedore/stuck'] });
  t.teardown(() => registry.close());
  const started = Date.now();
  await t.rejects(engine.pullImage(`${registry.address}/stevedore/stuck:1`, { inactivityTimeoutMs: 1500 }), {
    code: 'IMAGE_PULL_STALLED',
    message: /no progress for 1\.5 s/,
  });
  const took = Date.now() - started;
  t.ok(took >= 1400 && took < 6000, `failed after the timeout (${took} ms)`);
});

void t.test('a slow pull that keeps making progress completes, reporting progress, with credentials', async (t) => {
  const auth = { username: 'trainer', password: 'correct horse' };
  // 1 MiB in 64 KiB pieces, 150 ms apart: about 2.4 s, longer than the 1.5 s inactivity timeout.
  const registry = await startFakeRegistry({ auth, layerChunkDelayMs: 150 });
  t.teardown(() => registry.close());
  const image = registry.addImage('stevedore/slow', 'v1', 1024 * 1024);
  t.teardown(() => docker.getImage(image).remove({ force: true }).catch(() => undefined));

  await t.rejects(
    engine.pullImage(image, { inactivityTimeoutMs: 10_000, auth: { ...auth, password: 'wrong', serveraddress: registry.address } }),
    { code: 'IMAGE_PULL_FAILED', message: /credentials/ },
  );

  const progress: PullProgress[] = [];
  const started = Date.now();
  await engine.pullImage(image, {
    inactivityTimeoutMs: 1500,
    auth: { ...auth, serveraddress: registry.address },
    onProgress: (p) => progress.push(p),
  });
  t.ok(Date.now() - started > 1500, 'the pull took longer than the inactivity timeout');
  t.equal(await engine.hasImage(image), true);
  const downloading = progress.filter((p) => p.status === 'Downloading');
  t.ok(downloading.length >= 3, `several download progress messages (${downloading.length})`);
  t.ok(downloading.every((p) => p.total !== undefined && p.current !== undefined && p.current <= p.total));
  t.ok(progress.some((p) => /Downloaded newer image|Image is up to date/.test(p.status)));
});

void t.test('the engine address is validated', (t) => {
  t.throws(() => new DockerEngine({ dockerHost: 'ftp://example' }), { code: 'CONFIG_INVALID', message: /unix:\/\/\/path/ });
  const fromEnv = new DockerEngine({});
  t.equal(fromEnv.address, env.dockerHost);
  t.end();
});

async function waitForLine(id: string, text: string): Promise<void> {
  const controller = new AbortController();
  await engine.followLogs(id, { signal: controller.signal }, (line) => {
    if (line.text === text) controller.abort();
  });
}
