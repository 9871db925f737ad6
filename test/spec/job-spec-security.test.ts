// The job spec's privilege fields and the node's security policy: what is
// refused by default, with which message, and what the agent's config allows.
import t from 'tap';
import { symlinkSync } from 'node:fs';
import path from 'node:path';
import { prepareHostMounts, resolveDevices } from '../../src/agent/job-paths.ts';
import { checkSecurityPolicy, DEFAULT_SECURITY_POLICY, fromSpecMessage, validateJobSpec, type SecurityPolicy } from '../../src/spec/job-spec.ts';
import { StevedoreError } from '../../src/util/errors.ts';

const base = { name: 'secure', image: 'trainer:1' };

function errorOf(fn: () => unknown): StevedoreError {
  try {
    fn();
  } catch (err) {
    if (err instanceof StevedoreError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

const policy = (p: Partial<SecurityPolicy>): SecurityPolicy => ({ ...DEFAULT_SECURITY_POLICY, ...p });

void t.test('a spec without the new fields gets the closed defaults, also from the wire', (t) => {
  const spec = validateJobSpec(base);
  t.same([spec.privileged, spec.capabilities, spec.hostMounts, spec.devices], [false, [], [], []]);
  const wire = fromSpecMessage({ ...base, privileged: false, capabilities: [], hostMounts: [], devices: [] });
  t.same([wire.privileged, wire.capabilities, wire.hostMounts, wire.devices], [false, [], [], []]);
  t.doesNotThrow(() => checkSecurityPolicy(spec, DEFAULT_SECURITY_POLICY));
  t.end();
});

void t.test('the fields are validated: capability names, absolute host paths, devices under /dev', (t) => {
  const spec = validateJobSpec({ ...base, capabilities: ['cap_sys_ptrace', 'IPC_LOCK', 'SYS_PTRACE'], hostMounts: [{ hostPath: '/data/shared/', target: '/shared' }], devices: ['/dev/infiniband/uverbs0'] });
  t.same(spec.capabilities, ['SYS_PTRACE', 'IPC_LOCK'], 'normalized, without duplicates');
  t.same(spec.hostMounts, [{ hostPath: '/data/shared', target: '/shared', readOnly: false }]);
  const cases: [string, unknown, RegExp][] = [
    ['unknown capability', { capabilities: ['SUPERPOWER'] }, /capabilities\[0\]: "SUPERPOWER" is not a Linux capability/],
    ['ALL', { capabilities: ['ALL'] }, /capabilities\[0\]: ALL is not accepted: name each capability/],
    ['relative host path', { hostMounts: [{ hostPath: 'data', target: '/d' }] }, /hostMounts\[0\]\.hostPath: must be an absolute path on the host/],
    ['.. in host path', { hostMounts: [{ hostPath: '/data/../etc', target: '/d' }] }, /hostMounts\[0\]\.hostPath: "\/data\/\.\.\/etc" contains "\.\."/],
    ['target taken twice', { hostMounts: [{ hostPath: '/a', target: '/d' }], mounts: [{ source: 'd', target: '/d' }] }, /hostMounts\[0\]\.target: \/d is also mounts\[0\]\.target/],
    ['device outside /dev', { devices: ['/etc/shadow'] }, /devices\[0\]: must be a device path under \/dev/],
    ['unknown field', { securityOpt: ['seccomp=unconfined'] }, /unknown field "securityOpt"/],
    ['pid namespace', { pidMode: 'host' }, /unknown field "pidMode"/],
  ];
  for (const [what, extra, message] of cases) {
    const err = errorOf(() => validateJobSpec({ ...base, ...(extra as object) }));
    t.equal(err.code, 'SPEC_INVALID', what);
    t.match(err.message, message, what);
  }
  t.end();
});

void t.test('by default each request beyond the defaults is refused, naming the field, the value and the setting', (t) => {
  const spec = validateJobSpec({
    ...base,
    privileged: true,
    capabilities: ['SYS_ADMIN'],
    hostMounts: [{ hostPath: '/etc', target: '/host-etc', readOnly: true }],
    devices: ['/dev/infiniband/uverbs0'],
  });
  const err = errorOf(() => checkSecurityPolicy(spec, DEFAULT_SECURITY_POLICY));
  t.equal(err.code, 'SPEC_FORBIDDEN');
  t.match(err.message, 'job spec secure asks for more than this node allows');
  t.match(err.message, 'privileged: true is not allowed on this node');
  t.match(err.message, 'security.allowPrivileged: true');
  t.match(err.message, 'capabilities: SYS_ADMIN is not allowed on this node (security.allowedCapabilities: none); add SYS_ADMIN to security.allowedCapabilities');
  t.match(err.message, 'hostMounts[0].hostPath: /etc is not inside a host path this node allows (security.allowedHostPaths: none); add /etc or a directory above it to security.allowedHostPaths');
  t.match(err.message, 'devices: /dev/infiniband/uverbs0 is not allowed on this node (security.allowedDevices: none)');
  t.end();
});

void t.test('what the agent config allows passes; only that', (t) => {
  const allowing = policy({
    allowPrivileged: true,
    allowedCapabilities: ['SYS_PTRACE'],
    allowedHostPaths: [{ path: '/data/shared', readOnly: false }, { path: '/data/datasets', readOnly: true }],
    allowedDevices: ['/dev/infiniband'],
  });
  const ok = validateJobSpec({
    ...base,
    privileged: true,
    capabilities: ['SYS_PTRACE'],
    hostMounts: [{ hostPath: '/data/shared/run-1', target: '/shared' }, { hostPath: '/data/datasets/imagenet', target: '/in', readOnly: true }],
    devices: ['/dev/infiniband/uverbs0'],
  });
  t.doesNotThrow(() => checkSecurityPolicy(ok, allowing));
  const cases: [string, unknown, string][] = [
    ['another capability', { capabilities: ['SYS_PTRACE', 'NET_ADMIN'] }, 'capabilities: NET_ADMIN is not allowed on this node (security.allowedCapabilities: SYS_PTRACE)'],
    ['a sibling with a common prefix', { hostMounts: [{ hostPath: '/data/shared-other', target: '/x' }] }, 'hostMounts[0].hostPath: /data/shared-other is not inside a host path this node allows (security.allowedHostPaths: /data/shared, /data/datasets:ro)'],
    ['the parent', { hostMounts: [{ hostPath: '/data', target: '/x' }] }, 'hostMounts[0].hostPath: /data is not inside'],
    ['writing below a read-only entry', { hostMounts: [{ hostPath: '/data/datasets/imagenet', target: '/x' }] }, 'hostMounts[0].readOnly: /data/datasets/imagenet may only be mounted read-only on this node (security.allowedHostPaths has /data/datasets:ro); set readOnly: true'],
    ['another device', { devices: ['/dev/sda'] }, 'devices: /dev/sda is not allowed on this node (security.allowedDevices: /dev/infiniband)'],
  ];
  for (const [what, extra, message] of cases) {
    const err = errorOf(() => checkSecurityPolicy(validateJobSpec({ ...base, ...(extra as object) }), allowing));
    t.equal(err.code, 'SPEC_FORBIDDEN', what);
    t.match(err.message, message, what);
  }
  t.end();
});

void t.test('host network and IPC are allowed by default and can be closed', (t) => {
  const spec = validateJobSpec({ ...base, hostNetwork: true, hostIpc: true });
  t.doesNotThrow(() => checkSecurityPolicy(spec, DEFAULT_SECURITY_POLICY));
  const err = errorOf(() => checkSecurityPolicy(spec, policy({ allowHostNetwork: false, allowHostIpc: false })));
  t.equal(err.code, 'SPEC_FORBIDDEN');
  t.match(err.message, 'hostNetwork: true is not allowed on this node (security.allowHostNetwork: false)');
  t.match(err.message, 'hostIpc: true is not allowed on this node (security.allowHostIpc: false)');
  t.end();
});

void t.test('host mounts are resolved on the host: symbolic links out of an allowed path are refused', (t) => {
  const dir = t.testdir({ shared: { run: {} }, ro: { set: {} }, secret: {} });
  symlinkSync(path.join(dir, 'secret'), path.join(dir, 'shared', 'escape'));
  symlinkSync(path.join(dir, 'shared'), path.join(dir, 'alias'));
  const allowing = { allowedHostPaths: [{ path: path.join(dir, 'shared'), readOnly: false }, { path: path.join(dir, 'ro'), readOnly: true }] };
  t.same(prepareHostMounts([{ hostPath: path.join(dir, 'shared', 'run'), target: '/r', readOnly: false }], allowing), [
    { hostPath: path.join(dir, 'shared', 'run'), containerPath: '/r', readOnly: false },
  ]);
  const escape = errorOf(() => prepareHostMounts([{ hostPath: path.join(dir, 'shared', 'escape'), target: '/x', readOnly: false }], allowing));
  t.equal(escape.code, 'SPEC_FORBIDDEN');
  t.match(escape.message, `leads through a symbolic link to ${path.join(dir, 'secret')}, which security.allowedHostPaths does not allow`);
  // A link may lead into an allowed path: what counts is where it leads.
  t.same(prepareHostMounts([{ hostPath: path.join(dir, 'alias', 'run'), target: '/a', readOnly: false }], allowing)[0]?.hostPath, path.join(dir, 'shared', 'run'));
  const missing = errorOf(() => prepareHostMounts([{ hostPath: path.join(dir, 'shared', 'nope'), target: '/n', readOnly: false }], allowing));
  t.equal(missing.code, 'HOST_PATH_UNAVAILABLE');
  t.match(missing.message, 'ENOENT): create it on the host first');
  symlinkSync(path.join(dir, 'ro', 'set'), path.join(dir, 'shared', 'to-ro'));
  const writeRo = errorOf(() => prepareHostMounts([{ hostPath: path.join(dir, 'shared', 'to-ro'), target: '/w', readOnly: false }], allowing));
  t.match(writeRo.message, 'does not allow for writing');
  t.end();
});

void t.test('devices must be devices, where they really lead', (t) => {
  const dir = t.testdir({ 'not-a-device': 'x' });
  t.same(resolveDevices(['/dev/null'], { allowedDevices: ['/dev/null'] }), [{ hostPath: '/dev/null', containerPath: '/dev/null' }]);
  t.match(errorOf(() => resolveDevices([path.join(dir, 'not-a-device')], { allowedDevices: [dir] })), { code: 'SPEC_FORBIDDEN', message: /is not a device/ });
  symlinkSync('/dev/zero', path.join(dir, 'zero'));
  t.match(errorOf(() => resolveDevices([path.join(dir, 'zero')], { allowedDevices: [dir] })), { code: 'SPEC_FORBIDDEN', message: /leads through a symbolic link to \/dev\/zero/ });
  t.match(errorOf(() => resolveDevices(['/dev/stevedore-missing'], { allowedDevices: ['/dev'] })), { code: 'HOST_PATH_UNAVAILABLE' });
  t.end();
});
