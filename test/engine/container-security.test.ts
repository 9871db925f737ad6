// What the agent asks the real engine for: the containers it creates, as the
// engine reports them, by default and where the agent's config allows more;
// and the specs it refuses.
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import Docker from 'dockerode';
import type { AgentConfig } from '../../src/agent/agent-config.ts';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { DEFAULT_SECURITY_POLICY } from '../../src/spec/job-spec.ts';
import { setupAgent, trainerSpec, type AgentSetup } from '../helpers/agent-harness.ts';
import { testEngineEnv, uniqueName } from '../helpers/engine.ts';

const docker = new Docker({ socketPath: testEngineEnv().socketPath });

/** Starts the job and returns the engine's view of its container once it runs. */
async function runAndInspect(s: AgentSetup, jobId: string, extra: Record<string, unknown>, trainEnv: Record<string, string> = {}): Promise<Docker.ContainerInspectInfo> {
  const ack = await s.coordinator.command({ startJob: { jobId, attempt: 1, spec: trainerSpec(jobId, extra, { TRAIN_STEPS: '600', ...trainEnv }) } });
  if (!ack.accepted) throw new Error(`start of ${jobId} refused: ${ack.error?.code} ${ack.error?.message}`);
  const running = await s.coordinator.waitFor((m) => m.event?.jobId === jobId && m.event.stateChanged?.state === 'ATTEMPT_STATE_RUNNING', 30000);
  return docker.getContainer(running.event?.stateChanged?.containerId ?? '').inspect();
}

/** The container's stdout lines so far. */
async function stdoutOf(id: string): Promise<string> {
  const buf = await docker.getContainer(id).logs({ stdout: true, stderr: false, follow: false });
  return buf.toString('utf8');
}

async function waitForOutput(id: string, pattern: RegExp): Promise<string> {
  const until = Date.now() + 15000;
  for (;;) {
    const out = await stdoutOf(id);
    if (pattern.test(out) || Date.now() > until) return out;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** no-new-privileges, and the engine's default seccomp and AppArmor profiles (no override). */
function assertSecurityOpts(t: Test, info: Docker.ContainerInspectInfo): void {
  const opts = (info.HostConfig.SecurityOpt as string[] | null) ?? [];
  t.ok(opts.includes('no-new-privileges'), 'no-new-privileges');
  // The engine itself adds label=disable (SELinux) for host IPC and privileged; nothing else may appear.
  t.same(opts.filter((o) => o !== 'no-new-privileges' && o !== 'label=disable'), [], 'no seccomp or AppArmor override');
}

function assertMountsInside(t: Test, info: Docker.ContainerInspectInfo, allowed: string[]): void {
  t.same(info.HostConfig.Binds ?? [], [], 'no binds besides the mounts');
  for (const m of info.Mounts) {
    t.equal(m.Type, 'bind', `${m.Destination} is a bind mount`);
    t.ok(allowed.some((dir) => m.Source === dir || m.Source.startsWith(`${dir}/`)), `${m.Source} is inside ${allowed.join(' or ')}`);
  }
}

void t.test('by default: not privileged, no added capabilities, no-new-privileges, mounts only in the job directory', async (t) => {
  const s = await setupAgent(t, 1);
  const info = await runAndInspect(s, 'plain', { resources: { gpus: 1 }, hostIpc: true, hostNetwork: true });
  const host = info.HostConfig;
  t.equal(host.Privileged, false);
  t.same(host.CapAdd ?? [], []);
  assertSecurityOpts(t, info);
  t.equal(host.PidMode ?? '', '', 'its own PID namespace');
  t.same((host.Devices as unknown[] | null) ?? [], [], 'no host devices');
  t.same(host.DeviceRequests?.map((d) => d.Driver), ['nvidia'], 'the GPU through a device request');
  t.equal(host.IpcMode, 'host', 'host IPC, allowed by default');
  t.equal(host.NetworkMode, 'host', 'host network, allowed by default');
  t.ok(info.Mounts.length > 0);
  assertMountsInside(t, info, [path.join(s.config.workRoot, 'plain')]);
});

void t.test('a spec asking for more than the node allows is refused at the start, with the setting that would allow it', async (t) => {
  const s = await setupAgent(t, 1);
  const outside = t.testdir({ data: {} });
  const refusals: [string, Record<string, unknown>, RegExp][] = [
    ['privileged', { privileged: true }, /privileged: true is not allowed on this node.*security\.allowPrivileged: true/],
    ['a capability', { capabilities: ['SYS_ADMIN'] }, /capabilities: SYS_ADMIN is not allowed on this node \(security\.allowedCapabilities: none\)/],
    ['a host mount', { hostMounts: [{ hostPath: path.join(outside, 'data'), target: '/data' }] }, /hostMounts\[0\]\.hostPath: .* is not inside a host path this node allows/],
    ['a device', { devices: ['/dev/fuse'] }, /devices: \/dev\/fuse is not allowed on this node/],
  ];
  for (const [what, extra, message] of refusals) {
    const jobId = `refused-${what.replace(/\W+/g, '-')}`;
    const ack = await s.coordinator.command({ startJob: { jobId, attempt: 1, spec: trainerSpec(jobId, extra) } });
    t.equal(ack.accepted, false, what);
    t.equal(ack.error?.code, 'SPEC_FORBIDDEN', what);
    t.match(ack.error?.message, message, what);
    t.same(await docker.listContainers({ all: true, filters: { label: [`io.stevedore.job-id=${jobId}`] } }), [], `${what}: no container`);
  }
  const closed = await setupAgent(t, 1, { security: { ...DEFAULT_SECURITY_POLICY, allowHostNetwork: false, allowHostIpc: false } });
  const ack = await closed.coordinator.command({ startJob: { jobId: 'host-net', attempt: 1, spec: trainerSpec('host-net', { hostNetwork: true, hostIpc: true }) } });
  t.equal(ack.error?.code, 'SPEC_FORBIDDEN');
  t.match(ack.error?.message, /hostNetwork: true is not allowed on this node \(security\.allowHostNetwork: false\)/);
  t.match(ack.error?.message, /hostIpc: true is not allowed on this node \(security\.allowHostIpc: false\)/);
});

void t.test('what the agent config allows is applied: capability, host mount, device, privileged', async (t) => {
  const shared = t.testdir({ shared: { 'hello.txt': 'hello from the host\n' }, secret: { 'key.txt': 'no' } });
  symlinkSync(path.join(shared, 'secret'), path.join(shared, 'shared', 'escape'));
  const security: AgentConfig['security'] = {
    ...DEFAULT_SECURITY_POLICY,
    allowPrivileged: true,
    allowedCapabilities: ['SYS_PTRACE'],
    allowedHostPaths: [{ path: path.join(shared, 'shared'), readOnly: true }],
    allowedDevices: ['/dev/fuse'],
  };
  const s = await setupAgent(t, 1, { security });
  const info = await runAndInspect(s, 'allowed', {
    command: ['/bin/sh', '-c', 'cat /shared/hello.txt; grep CapEff /proc/self/status; ls /dev/fuse; touch /shared/x 2>/dev/null || echo read-only; sleep 600'],
    capabilities: ['SYS_PTRACE'],
    hostMounts: [{ hostPath: path.join(shared, 'shared'), target: '/shared', readOnly: true }],
    devices: ['/dev/fuse'],
  });
  t.equal(info.HostConfig.Privileged, false);
  t.match(info.HostConfig.CapAdd, [/SYS_PTRACE$/]);
  assertSecurityOpts(t, info);
  const devices = (info.HostConfig.Devices as { PathOnHost: string; PathInContainer: string }[] | null) ?? [];
  t.same(devices.map((d) => [d.PathOnHost, d.PathInContainer]), [['/dev/fuse', '/dev/fuse']]);
  const sharedMount = info.Mounts.find((m) => m.Destination === '/shared');
  t.equal(sharedMount?.Source, path.join(shared, 'shared'));
  t.equal(sharedMount?.RW, false);
  assertMountsInside(t, info, [path.join(s.config.workRoot, 'allowed'), path.join(shared, 'shared')]);
  const out = await waitForOutput(info.Id, /read-only/);
  t.match(out, 'hello from the host', 'the host directory is mounted');
  const capEff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(out)?.[1] ?? '0'}`);
  t.equal((capEff >> 19n) & 1n, 1n, 'CAP_SYS_PTRACE (bit 19) is effective in the container');
  t.equal((capEff >> 21n) & 1n, 0n, 'CAP_SYS_ADMIN (bit 21) is not');
  t.match(out, '/dev/fuse', 'the device is there');
  t.match(out, 'read-only', 'the mount is read-only');

  // Writing below a read-only entry, and a link out of the allowed path, stay refused.
  const write = await s.coordinator.command({ startJob: { jobId: 'write-ro', attempt: 1, spec: trainerSpec('write-ro', { hostMounts: [{ hostPath: path.join(shared, 'shared'), target: '/shared' }] }) } });
  t.equal(write.error?.code, 'SPEC_FORBIDDEN');
  t.match(write.error?.message, /hostMounts\[0\]\.readOnly: .* may only be mounted read-only on this node/);
  const escape = await s.coordinator.command({ startJob: { jobId: 'escape', attempt: 1, spec: trainerSpec('escape', { hostMounts: [{ hostPath: path.join(shared, 'shared', 'escape'), target: '/e', readOnly: true }] }) } });
  t.equal(escape.error?.code, 'SPEC_FORBIDDEN');
  t.match(escape.error?.message, /leads through a symbolic link to .*secret, which security\.allowedHostPaths does not allow/);

  // Allowed, privileged is accepted and asked of the engine. (This test machine is
  // itself a container that cannot start privileged ones: create, not run.)
  const privileged = await s.coordinator.command({ startJob: { jobId: 'privileged', attempt: 1, spec: trainerSpec('privileged', { privileged: true }) } });
  t.equal(privileged.accepted, true, 'a privileged spec is accepted where allowPrivileged is true');
  const engine = new DockerEngine({ dockerHost: testEngineEnv().dockerHost });
  const id = await engine.create({
    name: uniqueName('privileged'), image: testEngineEnv().trainerImage, command: ['true'], env: {}, labels: { [LABELS.nodeId]: s.agent.nodeId },
    gpuUuids: [], cpus: 0, memoryBytes: 0, shmBytes: 0, ulimits: [], hostIpc: false, hostNetwork: false, networkMode: 'none', mounts: [],
    stopSignal: 'SIGTERM', workingDir: '', privileged: true,
  });
  const created = await docker.getContainer(id).inspect();
  t.equal(created.HostConfig.Privileged, true);
  assertSecurityOpts(t, created);
});

void t.test('mount escapes from the job directory stay refused', async (t) => {
  const s = await setupAgent(t, 1);
  const dotdot = await s.coordinator.command({ startJob: { jobId: 'dotdot', attempt: 1, spec: { ...trainerSpec('dotdot'), mounts: [{ source: '../other', target: '/o', readOnly: false }] } } });
  t.equal(dotdot.error?.code, 'SPEC_INVALID');
  t.match(dotdot.error?.message, /contains "\.\.": a mount must stay inside the job's own directory/);
  const jobDir = path.join(s.config.workRoot, 'linked');
  mkdirSync(jobDir, { recursive: true });
  const target = t.testdir({ 'secret.txt': 'no' });
  symlinkSync(target, path.join(jobDir, 'ckpt'));
  writeFileSync(path.join(target, 'marker'), '');
  const linked = await s.coordinator.command({ startJob: { jobId: 'linked', attempt: 1, spec: trainerSpec('linked') } });
  t.equal(linked.accepted, false);
  t.equal(linked.error?.code, 'MOUNT_OUTSIDE_JOB_DIR');
  t.match(linked.error?.message, /leads through a symbolic link to .*, outside the job's directory/);
});
