import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadAgentConfig, DEFAULT_CONFIG_FILE, type AgentConfig } from '../../src/agent/agent-config.ts';
import { StevedoreError } from '../../src/util/errors.ts';

function errorOf(fn: () => unknown): StevedoreError {
  try {
    fn();
  } catch (err) {
    if (err instanceof StevedoreError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

void t.test('defaults when there is no file, no environment and no flags', (t) => {
  const dir = t.testdir();
  const config = loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: {} });
  t.same(config, {
    coordinator: { address: '127.0.0.1:7443', tls: undefined },
    nodeName: os.hostname(),
    stateDir: '/var/lib/stevedore',
    workRoot: '/var/lib/stevedore/jobs',
    socketPath: '/run/stevedore/agent.sock',
    socketGroup: undefined,
    dockerHost: 'unix:///var/run/docker.sock',
    nvidiaSmiPath: 'nvidia-smi',
    labels: {},
    registries: [],
    pullInactivityTimeoutSeconds: 120,
    reconnect: { initialMs: 500, maxMs: 30000 },
    shutdownTimeoutSeconds: 10,
    logLevel: 'info',
    s3: { endpoints: {} },
    checkpoints: { partSizeMiB: 16, maxInFlightMiB: 256, rescanSeconds: 2 },
    preemption: { cloud: 'auto', metadataUrl: undefined, pollSeconds: undefined, safetyMarginSeconds: 10, drainOnSigterm: 'auto', sigtermWindowSeconds: 80 },
    metrics: { listen: '0.0.0.0:9464' },
    gpuHealth: { intervalSeconds: 30, maxTemperatureC: 90, maxUncorrectedEcc: 0, kernelLog: '/dev/kmsg', fatalXids: [48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120] },
    security: { allowPrivileged: false, allowedCapabilities: [], allowedHostPaths: [], allowedDevices: [], allowHostNetwork: true, allowHostIpc: true },
  } satisfies AgentConfig);
  t.equal(DEFAULT_CONFIG_FILE, '/etc/stevedore/agent.yaml');
  t.end();
});

void t.test('a file named with --config must exist', (t) => {
  const file = path.join(t.testdir(), 'missing.yaml');
  const err = errorOf(() => loadAgentConfig({ file, fileIsExplicit: true, env: {} }));
  t.equal(err.code, 'CONFIG_UNREADABLE');
  t.match(err.message, `cannot read the agent configuration ${file} (ENOENT): check the path given to --config`);
  t.end();
});

void t.test('a directory given as the file is CONFIG_UNREADABLE', (t) => {
  const dir = t.testdir({ 'agent.yaml': {} });
  t.throws(() => loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: {} }), { code: 'CONFIG_UNREADABLE', message: /EISDIR/ });
  t.end();
});

void t.test('every field from the file; relative paths resolved against the current directory', (t) => {
  const dir = t.testdir({
    pki: { 'ca.pem': 'ca', 'agent.pem': 'cert', 'agent-key.pem': 'key' },
    'agent.yaml': `
coordinator:
  address: coordinator.example.com:7443
  tls:
    ca: pki/ca.pem
    cert: pki/agent.pem
    key: pki/agent-key.pem
nodeName: gpu-node-17
stateDir: state
workRoot: /mnt/nvme/stevedore
socketPath: /run/stevedore-test/agent.sock
socketGroup: stevedore
dockerHost: tcp://127.0.0.1:2375
nvidiaSmiPath: bin/nvidia-smi
labels:
  zone: us-east-1a
  instance-type: p4d.24xlarge
  spot: true
  topology.example.com/rack: 7
registries:
  - server: registry.example.com
    username: robot
    password: s3cret
pullInactivityTimeoutSeconds: 300
reconnect: { initialMs: 250, maxMs: 10000 }
shutdownTimeoutSeconds: 30
logLevel: debug
s3:
  endpoints:
    default:
      endpoint: http://127.0.0.1:9000
      forcePathStyle: true
      accessKeyId: minio-admin
      secretAccessKey: minio-s3cret
      checksumMode: WHEN_REQUIRED
    aws:
      region: eu-west-3
      maxAttempts: 8
checkpoints: { partSizeMiB: 64, maxInFlightMiB: 1024, rescanSeconds: 0.5 }
preemption:
  cloud: aws
  metadataUrl: http://127.0.0.1:8111/
  pollSeconds: 0.5
  safetyMarginSeconds: 15
  drainOnSigterm: always
  sigtermWindowSeconds: 60
metrics:
  listen: 127.0.0.1:9100
security:
  allowPrivileged: true
  allowedCapabilities: [SYS_PTRACE, cap_ipc_lock]
  allowedHostPaths: [/data/shared/, /data/datasets:ro]
  allowedDevices: [/dev/infiniband]
  allowHostNetwork: false
  allowHostIpc: false
`,
  });
  const config = loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: {}, cwd: dir });
  t.same(config, {
    coordinator: {
      address: 'coordinator.example.com:7443',
      tls: { ca: path.join(dir, 'pki/ca.pem'), cert: path.join(dir, 'pki/agent.pem'), key: path.join(dir, 'pki/agent-key.pem') },
    },
    nodeName: 'gpu-node-17',
    stateDir: path.join(dir, 'state'),
    workRoot: '/mnt/nvme/stevedore',
    socketPath: '/run/stevedore-test/agent.sock',
    socketGroup: 'stevedore',
    dockerHost: 'tcp://127.0.0.1:2375',
    nvidiaSmiPath: path.join(dir, 'bin/nvidia-smi'),
    labels: { zone: 'us-east-1a', 'instance-type': 'p4d.24xlarge', spot: 'true', 'topology.example.com/rack': '7' },
    registries: [{ server: 'registry.example.com', username: 'robot', password: 's3cret' }],
    pullInactivityTimeoutSeconds: 300,
    reconnect: { initialMs: 250, maxMs: 10000 },
    shutdownTimeoutSeconds: 30,
    logLevel: 'debug',
    s3: {
      endpoints: {
        default: {
          endpoint: 'http://127.0.0.1:9000',
          region: 'us-east-1',
          forcePathStyle: true,
          accessKeyId: 'minio-admin',
          secretAccessKey: 'minio-s3cret',
          checksumMode: 'WHEN_REQUIRED',
          maxAttempts: 5,
        },
        aws: {
          endpoint: undefined,
          region: 'eu-west-3',
          forcePathStyle: false,
          accessKeyId: undefined,
          secretAccessKey: undefined,
          checksumMode: 'WHEN_SUPPORTED',
          maxAttempts: 8,
        },
      },
    },
    checkpoints: { partSizeMiB: 64, maxInFlightMiB: 1024, rescanSeconds: 0.5 },
    preemption: { cloud: 'aws', metadataUrl: 'http://127.0.0.1:8111', pollSeconds: 0.5, safetyMarginSeconds: 15, drainOnSigterm: 'always', sigtermWindowSeconds: 60 },
    metrics: { listen: '127.0.0.1:9100' },
    gpuHealth: { intervalSeconds: 30, maxTemperatureC: 90, maxUncorrectedEcc: 0, kernelLog: '/dev/kmsg', fatalXids: [48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120] },
    security: {
      allowPrivileged: true,
      allowedCapabilities: ['SYS_PTRACE', 'IPC_LOCK'],
      allowedHostPaths: [{ path: '/data/shared', readOnly: false }, { path: '/data/datasets', readOnly: true }],
      allowedDevices: ['/dev/infiniband'],
      allowHostNetwork: false,
      allowHostIpc: false,
    },
  } satisfies AgentConfig);
  t.end();
});

void t.test('flags beat the environment, which beats the file', (t) => {
  const dir = t.testdir({
    'agent.yaml': `
coordinator: { address: file.example.com:1 }
stateDir: /srv/file-state
workRoot: /srv/file-jobs
socketPath: /srv/file.sock
nodeName: file-name
nvidiaSmiPath: /srv/file-smi
dockerHost: unix:///srv/file-docker.sock
logLevel: error
labels: { zone: file-zone, rack: r1 }
`,
  });
  const file = path.join(dir, 'agent.yaml');
  const env = {
    STEVEDORE_COORDINATOR: 'env.example.com:2',
    STEVEDORE_STATE_DIR: '/srv/env-state',
    STEVEDORE_WORK_ROOT: '/srv/env-jobs',
    STEVEDORE_SOCKET: '/srv/env.sock',
    STEVEDORE_NODE_NAME: 'env-name',
    STEVEDORE_NVIDIA_SMI: '/srv/env-smi',
    STEVEDORE_LOG_LEVEL: 'warn',
    STEVEDORE_LABELS: 'zone=env-zone, spot=true',
    DOCKER_HOST: 'unix:///srv/env-docker.sock',
  };
  const fromEnv = loadAgentConfig({ file, env });
  t.match(fromEnv, {
    coordinator: { address: 'env.example.com:2' },
    stateDir: '/srv/env-state',
    workRoot: '/srv/env-jobs',
    socketPath: '/srv/env.sock',
    nodeName: 'env-name',
    nvidiaSmiPath: '/srv/env-smi',
    dockerHost: 'unix:///srv/env-docker.sock',
    logLevel: 'warn',
  });
  t.same(fromEnv.labels, { zone: 'env-zone', rack: 'r1', spot: 'true' }, 'labels merge key by key');

  const fromFlags = loadAgentConfig({
    file,
    env,
    flags: {
      coordinator: 'flag.example.com:3',
      stateDir: '/srv/flag-state',
      workRoot: '/srv/flag-jobs',
      socket: '/srv/flag.sock',
      nodeName: 'flag-name',
      nvidiaSmi: '/srv/flag-smi',
      dockerHost: 'unix:///srv/flag-docker.sock',
      logLevel: 'trace',
      labels: ['zone=flag-zone', 'pool=a'],
    },
  });
  t.match(fromFlags, {
    coordinator: { address: 'flag.example.com:3' },
    stateDir: '/srv/flag-state',
    workRoot: '/srv/flag-jobs',
    socketPath: '/srv/flag.sock',
    nodeName: 'flag-name',
    nvidiaSmiPath: '/srv/flag-smi',
    dockerHost: 'unix:///srv/flag-docker.sock',
    logLevel: 'trace',
  });
  t.same(fromFlags.labels, { zone: 'flag-zone', rack: 'r1', spot: 'true', pool: 'a' });
  t.end();
});

void t.test('a socket path too long for a unix socket is refused before the agent tries to listen', (t) => {
  const long = `/run/${'s'.repeat(110)}/agent.sock`;
  t.throws(() => loadAgentConfig({ file: '/nonexistent/agent.yaml', env: {}, flags: { socket: long } }), {
    message: /socketPath: .* is 126 bytes long; unix socket paths are limited to 107 bytes: choose a shorter path \(set by --socket\)/,
  });
  t.equal(loadAgentConfig({ file: '/nonexistent/agent.yaml', env: {}, flags: { socket: 'agent.sock' }, cwd: '/srv' }).socketPath, '/srv/agent.sock', 'relative to the current directory');
  t.end();
});

void t.test('the work root follows the state directory unless set', (t) => {
  const config = loadAgentConfig({ file: path.join(t.testdir(), 'none.yaml'), env: { STEVEDORE_STATE_DIR: '/data/stevedore' } });
  t.equal(config.workRoot, '/data/stevedore/jobs');
  t.end();
});

void t.test('DOCKER_HOST is used when nothing else names the engine', (t) => {
  const config = loadAgentConfig({ file: path.join(t.testdir(), 'none.yaml'), env: { DOCKER_HOST: 'unix:///run/user/1000/docker.sock' } });
  t.equal(config.dockerHost, 'unix:///run/user/1000/docker.sock');
  t.end();
});

void t.test('a bare nvidia-smi name stays a PATH lookup', (t) => {
  const config = loadAgentConfig({ file: path.join(t.testdir(), 'none.yaml'), env: { STEVEDORE_NVIDIA_SMI: 'nvidia-smi-535' } });
  t.equal(config.nvidiaSmiPath, 'nvidia-smi-535');
  t.end();
});

void t.test('an address without a port names the field and the fix, and where it was set', (t) => {
  const err = errorOf(() => loadAgentConfig({ file: path.join(t.testdir(), 'none.yaml'), env: { STEVEDORE_COORDINATOR: 'localhost' } }));
  t.equal(err.code, 'CONFIG_INVALID');
  t.match(err.message, 'coordinator.address: "localhost" has no port; write host:port such as coordinator.example.com:7443 (set by STEVEDORE_COORDINATOR)');
  t.end();
});

void t.test('addresses', (t) => {
  const load = (address: string): AgentConfig => loadAgentConfig({ file: '/nonexistent/agent.yaml', env: {}, flags: { coordinator: address } });
  t.equal(load('10.0.0.5:7443').coordinator.address, '10.0.0.5:7443');
  t.equal(load('[2001:db8::1]:7443').coordinator.address, '[2001:db8::1]:7443');
  t.throws(() => load('https://coord.example.com:7443'), { message: /is a URL; write host:port .* without a scheme \(set by --coordinator\)/ });
  t.throws(() => load('coord.example.com:99999'), { message: /port 99999 is out of range/ });
  t.throws(() => load('coord example:1'), { message: /is not host:port/ });
  t.end();
});

void t.test('unknown fields are errors that name them (typos)', (t) => {
  const dir = t.testdir({ 'agent.yaml': 'stateDirectory: /srv/x\ncoordinator:\n  adress: a:1\n' });
  const err = errorOf(() => loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: {} }));
  t.equal(err.code, 'CONFIG_INVALID');
  t.match(err.message, 'top level: unknown field "stateDirectory": check the spelling');
  t.match(err.message, 'coordinator: unknown field "adress"');
  t.end();
});

void t.test('all problems are listed together', (t) => {
  const dir = t.testdir({
    'agent.yaml': `
coordinator: { address: nowhere, tls: { ca: ca.pem } }
workRoot: /
logLevel: loud
reconnect: { maxMs: 100 }
shutdownTimeoutSeconds: "10"
labels: { Zone: a }
dockerHost: /var/run/docker.sock
`,
  });
  const err = errorOf(() => loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: { STEVEDORE_LABELS: 'spot' }, cwd: dir }));
  t.equal(err.code, 'CONFIG_INVALID');
  const lines = err.message.split('\n');
  t.match(lines[0], `invalid agent configuration (file ${path.join(dir, 'agent.yaml')}, environment and flags):`);
  for (const expected of [
    'coordinator.address: "nowhere" has no port',
    'coordinator.tls: needs ca, cert and key (PEM files); cert and key are missing',
    `coordinator.tls.ca: cannot read ${path.join(dir, 'ca.pem')} (ENOENT): check the path`,
    "workRoot: must not be /: every job's directory would sit at the root of the host",
    'logLevel: must be one of fatal, error, warn, info, debug, trace, silent',
    'reconnect.maxMs: 100 is below reconnect.initialMs (500)',
    'shutdownTimeoutSeconds: must be a number of seconds',
    'labels.Zone: label keys are lower-case letters',
    'labels: "spot" from STEVEDORE_LABELS is not key=value; write for example zone=us-east-1a,spot=true',
    'dockerHost: "/var/run/docker.sock" is not a Docker Engine address',
  ]) {
    t.ok(lines.some((l) => l.includes(expected)), expected);
  }
  t.equal(lines.length, 11, 'one line per problem under the heading');
  t.end();
});

void t.test('the work root must not be a system directory', (t) => {
  const load = (workRoot: string): AgentConfig => loadAgentConfig({ file: '/nonexistent/agent.yaml', env: {}, flags: { workRoot } });
  for (const bad of ['/usr/local/jobs', '/etc', '/var/lib/docker/volumes', '/boot/x', '/proc/1', '/var', '/home', '/tmp']) {
    t.throws(() => load(bad), { code: 'CONFIG_INVALID', message: /workRoot: .*choose a directory of its own/ }, bad);
  }
  t.throws(() => load('/srv/jobs/../../usr'), { message: /\/usr is inside the system directory \/usr/ }, 'after resolving ..');
  t.equal(load('/mnt/nvme/jobs').workRoot, '/mnt/nvme/jobs');
  t.equal(load('/home/train/jobs').workRoot, '/home/train/jobs');
  t.throws(() => loadAgentConfig({ file: '/nonexistent/agent.yaml', env: {}, flags: { stateDir: '/srv/s', workRoot: '/srv/s' } }), {
    message: /workRoot: must not be the state directory itself/,
  });
  t.end();
});

void t.test('registry entries need server, username and password; passwords never show in errors', (t) => {
  const dir = t.testdir({
    'entries.yaml': `
registries:
  - server: ghcr.io
    pasword: hunter2-typo
  - server: ""
    username: robot
    password: hunter2-empty-server
  - { server: r.example.com, username: robot, password: 12345678 }
`,
    'syntax.yaml': 'registries:\n  - server: ghcr.io\n    username: robot\n    password: hunter2: broken\n',
  });
  const err = errorOf(() => loadAgentConfig({ file: path.join(dir, 'entries.yaml'), env: {} }));
  t.equal(err.code, 'CONFIG_INVALID');
  t.match(err.message, 'registries[0].username: is required');
  t.match(err.message, 'registries[0].password: is required');
  t.match(err.message, 'registries[0]: unknown field "pasword"');
  t.match(err.message, 'registries[1].server: must name the registry');
  t.match(err.message, 'registries[2].password: must be a text value');
  t.notMatch(err.message, /hunter2|12345678/);

  const syntax = errorOf(() => loadAgentConfig({ file: path.join(dir, 'syntax.yaml'), env: {} }));
  t.equal(syntax.code, 'CONFIG_INVALID');
  t.match(syntax.message, /syntax.yaml is not valid YAML: .*line 4/);
  t.notMatch(syntax.message, /hunter2/);
  t.end();
});

void t.test('TLS needs all three files, readable', (t) => {
  const dir = t.testdir({ 'ca.pem': 'x', 'cert.pem': 'x', keys: {} });
  const write = (yaml: string): string => {
    const file = path.join(dir, `agent-${Math.random().toString(36).slice(2)}.yaml`);
    fs.writeFileSync(file, yaml);
    return file;
  };
  t.throws(() => loadAgentConfig({ file: write('coordinator: { tls: { ca: ca.pem, cert: cert.pem } }'), env: {}, cwd: dir }), {
    message: /coordinator.tls: needs ca, cert and key \(PEM files\); key is missing/,
  });
  t.throws(() => loadAgentConfig({ file: write('coordinator: { tls: { ca: ca.pem, cert: cert.pem, key: keys } }'), env: {}, cwd: dir }), {
    message: /coordinator.tls.key: .*keys is not a file/,
  });
  t.end();
});

void t.test('an empty file means defaults; a file that is not a mapping is an error', (t) => {
  const dir = t.testdir({ 'empty.yaml': '# nothing yet\n', 'list.yaml': '- a\n- b\n' });
  t.equal(loadAgentConfig({ file: path.join(dir, 'empty.yaml'), env: {} }).stateDir, '/var/lib/stevedore');
  t.throws(() => loadAgentConfig({ file: path.join(dir, 'list.yaml'), env: {} }), { code: 'CONFIG_INVALID', message: /must be a mapping of fields/ });
  t.end();
});

void t.test('label values of other types become text; bad label flags are reported', (t) => {
  t.throws(() => loadAgentConfig({ file: '/nonexistent/agent.yaml', env: {}, flags: { labels: ['=x'] } }), { message: /"=x" from --label is not key=value/ });
  t.throws(() => loadAgentConfig({ file: '/nonexistent/agent.yaml', env: {}, flags: { labels: ['rack=a\tb'] } }), { message: /labels.rack: label values are at most 253 characters, without control characters/ });
  t.end();
});

void t.test('STEVEDORE_S3_ENDPOINT sets the default endpoint; AWS_REGION only fills a missing region', (t) => {
  const dir = t.testdir({
    'none.yaml': 'logLevel: info\n',
    'minio.yaml': 's3: { endpoints: { default: { endpoint: http://file:9000, region: eu-central-1, forcePathStyle: true } } }\n',
    'aws.yaml': 's3: { endpoints: { default: { forcePathStyle: false } } }\n',
  });
  const none = loadAgentConfig({ file: path.join(dir, 'none.yaml'), env: { AWS_REGION: 'eu-west-1' } });
  t.same(none.s3, { endpoints: {} }, 'AWS_REGION alone configures no endpoint');

  const fromEnv = loadAgentConfig({ file: path.join(dir, 'none.yaml'), env: { STEVEDORE_S3_ENDPOINT: 'http://127.0.0.1:9000', AWS_REGION: 'eu-west-1' } });
  t.same(fromEnv.s3.endpoints.default, {
    endpoint: 'http://127.0.0.1:9000',
    region: 'eu-west-1',
    forcePathStyle: false,
    accessKeyId: undefined,
    secretAccessKey: undefined,
    checksumMode: 'WHEN_SUPPORTED',
    maxAttempts: 5,
  });

  const minio = loadAgentConfig({ file: path.join(dir, 'minio.yaml'), env: { STEVEDORE_S3_ENDPOINT: 'http://env:9000', AWS_REGION: 'eu-west-1' } });
  t.match(minio.s3.endpoints.default, { endpoint: 'http://env:9000', region: 'eu-central-1', forcePathStyle: true }, 'the environment wins for the URL, the file for the region');

  const aws = loadAgentConfig({ file: path.join(dir, 'aws.yaml'), env: { AWS_REGION: 'ap-south-1' } });
  t.match(aws.s3.endpoints.default, { endpoint: undefined, region: 'ap-south-1' });

  const bad = errorOf(() => loadAgentConfig({ file: path.join(dir, 'none.yaml'), env: { STEVEDORE_S3_ENDPOINT: 'minio:9000' } }));
  t.match(bad.message, 's3.endpoints.default.endpoint: "minio:9000" is not an http:// or https:// URL; write the URL of the server, such as http://127.0.0.1:9000 or https://s3.example.com (set by STEVEDORE_S3_ENDPOINT)');
  t.end();
});

void t.test('S3 endpoint and checkpoint problems name the field; secrets never show in errors', (t) => {
  const dir = t.testdir({
    'agent.yaml': `
s3:
  endpoints:
    default:
      endpoint: http://user:pa55word@minio:9000
      secretAccessKey: wJalrXUtnFEMI-only-half
      checksumMode: NEVER
      maxAttempts: 0
      regoin: us-east-1
    "bad name!":
      region: Not_A_Region
    typed:
      secretAccessKey: 12345
      accessKeyId: robot
      forcePathStyle: "yes"
checkpoints: { partSizeMiB: 4, maxInFlightMiB: 2, rescanSeconds: 0 }
`,
  });
  const err = errorOf(() => loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: {} }));
  t.equal(err.code, 'CONFIG_INVALID');
  t.match(err.message, 's3.endpoints.default.endpoint: must not carry credentials in the URL; use accessKeyId and secretAccessKey');
  t.match(err.message, 's3.endpoints.default.checksumMode: must be WHEN_SUPPORTED or WHEN_REQUIRED');
  t.match(err.message, 's3.endpoints.default.maxAttempts: must be at least 1');
  t.match(err.message, 's3.endpoints.default: unknown field "regoin"');
  t.match(err.message, 's3.endpoints.bad name!.region: "Not_A_Region" is not a region name');
  t.match(err.message, 's3.endpoints.typed.secretAccessKey: must be a text value');
  t.match(err.message, 's3.endpoints.typed.forcePathStyle: must be true or false');
  t.match(err.message, 'checkpoints.partSizeMiB: must be at least 5 (S3 parts are at least 5 MiB)');
  t.match(err.message, 'checkpoints.maxInFlightMiB: must be at least 5 MiB');
  t.match(err.message, 'checkpoints.rescanSeconds: must be at least 0.1 seconds');
  t.notMatch(err.message, /pa55word|wJalrXUtnFEMI|12345/);

  fs.writeFileSync(path.join(dir, 'pair.yaml'), 's3: { endpoints: { "bad name!": { region: eu-west-3 }, default: { secretAccessKey: wJalrXUtnFEMI-only-half } } }\n');
  const pair = errorOf(() => loadAgentConfig({ file: path.join(dir, 'pair.yaml'), env: {} }));
  t.match(pair.message, 's3.endpoints.default.accessKeyId: needs both accessKeyId and secretAccessKey, or neither (for the default credential chain); accessKeyId is missing');
  t.match(pair.message, 's3.endpoints.bad name!: "bad name!" is not a valid endpoint name');
  t.notMatch(pair.message, /wJalrXUtnFEMI/);

  fs.writeFileSync(path.join(dir, 'inflight.yaml'), 'checkpoints: { partSizeMiB: 64, maxInFlightMiB: 32 }\n');
  t.throws(() => loadAgentConfig({ file: path.join(dir, 'inflight.yaml'), env: {} }), {
    code: 'CONFIG_INVALID',
    message: /checkpoints.maxInFlightMiB: 32 is below checkpoints.partSizeMiB \(64\); at least one part must fit in memory/,
  });
  t.end();
});

void t.test('preemption problems name the field and the fix', (t) => {
  const dir = t.testdir({
    'agent.yaml': `
preemption:
  cloud: amazon
  metadataUrl: ftp://169.254.169.254
  pollSeconds: 0
  safetyMarginSeconds: -1
  drainOnSigterm: sometimes
  sigtermWindowSeconds: 0
`,
  });
  const err = errorOf(() => loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: {} }));
  t.equal(err.code, 'CONFIG_INVALID');
  t.match(err.message, /preemption\.cloud: must be one of auto, aws, gcp, azure, none/);
  t.match(err.message, /preemption\.metadataUrl: "ftp:\/\/169\.254\.169\.254" must be http:\/\/ or https:\/\/; write for example http:\/\/169\.254\.169\.254/);
  t.match(err.message, /preemption\.pollSeconds: must be at least 0\.01 seconds/);
  t.match(err.message, /preemption\.safetyMarginSeconds: must not be negative/);
  t.match(err.message, /preemption\.drainOnSigterm: must be one of auto, always, never/);
  t.match(err.message, /preemption\.sigtermWindowSeconds: must be at least 1 second/);

  for (const [url, problem] of [
    ['not a url', /is not a URL/],
    ['http://user:pw@169.254.169.254', /must not carry credentials/],
    ['http://169.254.169.254/latest/meta-data', /without a path or query/],
    ['http://169.254.169.254?x=1', /without a path or query/],
  ] as const) {
    const d = t.testdir({ 'agent.yaml': `preemption: { metadataUrl: "${url}" }\n` });
    const e = errorOf(() => loadAgentConfig({ file: path.join(d, 'agent.yaml'), env: {} }));
    t.match(e.message, problem, url);
    t.notMatch(e.message, /pw@/, 'credentials are not repeated');
  }
  const typo = t.testdir({ 'agent.yaml': 'preemption: { safetyMargin: 5 }\n' });
  t.match(errorOf(() => loadAgentConfig({ file: path.join(typo, 'agent.yaml'), env: {} })).message, /preemption: unknown field "safetyMargin"/);
  t.end();
});

void t.test('preemption: each cloud and none are accepted; the margin may be 0', (t) => {
  for (const cloud of ['auto', 'aws', 'gcp', 'azure', 'none'] as const) {
    const dir = t.testdir({ 'agent.yaml': `preemption: { cloud: ${cloud}, safetyMarginSeconds: 0 }\n` });
    const config = loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: {} });
    t.equal(config.preemption.cloud, cloud);
    t.equal(config.preemption.safetyMarginSeconds, 0);
  }
  t.end();
});

void t.test('security problems name the field and the fix', (t) => {
  const dir = t.testdir({
    'agent.yaml': `
security:
  allowPrivileged: "yes"
  allowedCapabilities: [SYS_PTRACE, SUPERPOWER]
  allowedHostPaths: [/, data/shared, /data/../etc]
  allowedDevices: [/etc/passwd]
  allowHostIpc: 1
`,
  });
  const err = errorOf(() => loadAgentConfig({ file: path.join(dir, 'agent.yaml'), env: {} }));
  t.equal(err.code, 'CONFIG_INVALID');
  t.match(err.message, 'security.allowPrivileged: must be true or false');
  t.match(err.message, 'security.allowedCapabilities[1]: "SUPERPOWER" is not a Linux capability');
  t.match(err.message, 'security.allowedHostPaths[0]: must not be /, which would let jobs mount any host path');
  t.match(err.message, 'security.allowedHostPaths[1]: "data/shared" is not an absolute path');
  t.match(err.message, 'security.allowedHostPaths[2]: "/data/../etc" contains ".."');
  t.match(err.message, 'security.allowedDevices[0]: "/etc/passwd" is not under /dev');
  t.match(err.message, 'security.allowHostIpc: must be true or false');
  t.end();
});

void t.test('coordinator TLS: join token from the file, a token file or STEVEDORE_JOIN_TOKEN; insecure by the file or --insecure', (t) => {
  const dir = t.testdir({ 'ca.pem': 'x', 'node.pem': 'x', 'node-key.pem': 'x', 'join-token': 'sdj1.node-aaaaaaaaaaaa.tokenfromfile\n', 'empty-token': '\n' });
  const write = (text: string): string => {
    const file = path.join(dir, `agent-${Math.random().toString(36).slice(2)}.yaml`);
    fs.writeFileSync(file, text);
    return file;
  };
  const tls = 'tls: { ca: ca.pem, cert: node.pem, key: node-key.pem, serverName: coord.example.com }';
  const fromFile = loadAgentConfig({ file: write(`coordinator: { ${tls}, joinTokenFile: join-token }`), env: {}, cwd: dir });
  t.same(fromFile.coordinator.tls, { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'node.pem'), key: path.join(dir, 'node-key.pem'), serverName: 'coord.example.com', joinToken: 'sdj1.node-aaaaaaaaaaaa.tokenfromfile' });
  const fromEnv = loadAgentConfig({ file: write(`coordinator: { ${tls} }`), env: { STEVEDORE_JOIN_TOKEN: 'sdj1.node-aaaaaaaaaaaa.fromenv' }, cwd: dir });
  t.equal(fromEnv.coordinator.tls?.joinToken, 'sdj1.node-aaaaaaaaaaaa.fromenv');
  t.equal(loadAgentConfig({ file: write('coordinator: { insecure: true }'), env: {}, cwd: dir }).coordinator.insecure, true);
  t.equal(loadAgentConfig({ file: write(''), env: {}, cwd: dir, flags: { insecure: true } }).coordinator.insecure, true, '--insecure');
  t.equal(loadAgentConfig({ file: write(''), env: {}, cwd: dir }).coordinator.insecure, undefined, 'not insecure unless asked');

  const secret = 'sdj1.node-aaaaaaaaaaaa.secretvalue';
  const err = errorOf(() => loadAgentConfig({ file: write(`coordinator: { joinToken: ${secret}, insecure: true }`), env: {}, cwd: dir }));
  t.match(err.message, /coordinator\.joinToken: needs coordinator\.tls: a join token is never sent in plaintext/);
  t.notOk(err.message.includes(secret), 'the token is not in the error');
  t.match(errorOf(() => loadAgentConfig({ file: write(`coordinator: { ${tls}, insecure: true }`), env: {}, cwd: dir })).message, /coordinator\.insecure: is true but coordinator\.tls is set/);
  t.match(errorOf(() => loadAgentConfig({ file: write(`coordinator: { ${tls}, joinTokenFile: nowhere }`), env: {}, cwd: dir })).message, /coordinator\.joinTokenFile: cannot read .*nowhere \(ENOENT\): check the path/);
  t.match(errorOf(() => loadAgentConfig({ file: write(`coordinator: { ${tls}, joinTokenFile: empty-token }`), env: {}, cwd: dir })).message, /coordinator\.joinTokenFile: .*empty-token is empty/);
  t.match(errorOf(() => loadAgentConfig({ file: write(`coordinator: { ${tls}, joinTokenFile: join-token, joinToken: abc }`), env: {}, cwd: dir })).message, /coordinator\.joinTokenFile: and coordinator\.joinToken are both set/);
  t.match(errorOf(() => loadAgentConfig({ file: write('coordinator: { insecure: yes please }'), env: {}, cwd: dir })).message, /coordinator\.insecure: must be true or false/);
  t.end();
});
