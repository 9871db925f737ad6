import t from 'tap';
import { fromSpecMessage, parseJobSpec, validateJobSpec, MAX_SPEC_BYTES } from '../../src/spec/job-spec.ts';
import { throwsCode } from '../helpers/assert.ts';


void t.test('a YAML spec with defaults filled in', (t) => {
  const spec = parseJobSpec(`
name: llama-ft
image: registry.example.com/team/trainer:1.2
command: ["python", "train.py"]
env: { EPOCHS: 3, DEBUG: true }
resources: { gpus: 2, cpus: 8, memory: 32Gi, shm: 8Gi }
mounts:
  - { source: data, target: /data, readOnly: true }
ulimits: { nofile: 65536, memlock: { soft: 8388608, hard: 8388608 } }
stopSignal: SIGUSR1
`);
  t.equal(spec.name, 'llama-ft');
  t.same(spec.command, ['python', 'train.py']);
  t.same(spec.env, { EPOCHS: '3', DEBUG: 'true' });
  t.same(spec.resources, { gpus: 2, cpus: 8, memoryBytes: 32 * 1024 ** 3, shmBytes: 8 * 1024 ** 3 });
  t.same(spec.ulimits, [{ name: 'nofile', soft: 65536, hard: 65536 }, { name: 'memlock', soft: 8388608, hard: 8388608 }]);
  t.equal(spec.stopGraceSeconds, 30);
  t.equal(spec.pullPolicy, 'if-not-present');
  t.equal(spec.hostIpc, false);
  t.end();
});

void t.test('errors name the field and the fix', (t) => {
  throwsCode(t, () => parseJobSpec('name: x\n'), 'SPEC_INVALID', /image: is required/);
  throwsCode(t, () => parseJobSpec('name: Bad Name\nimage: busybox'), 'SPEC_INVALID', /name: must be 1-63 characters/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\nresources: { gpus: 1.5 }'), 'SPEC_INVALID', /resources\.gpus: must be a whole number/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\nresources: { memory: lots }'), 'SPEC_INVALID', /resources\.memory: memory must be a size such as 512Mi/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\nmounts: [{source: /etc, target: /x}]'), 'SPEC_INVALID', /mounts\[0\]\.source: .*absolute/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\nmounts: [{source: ../x, target: /x}]'), 'SPEC_INVALID', /mounts\[0\]\.source: .*"\.\."/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\nimagePullPolicy: always'), 'SPEC_INVALID', /unknown field "imagePullPolicy": check the spelling/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\nenv: { STEVEDORE_JOB_ID: x }'), 'SPEC_INVALID', /env\.STEVEDORE_JOB_ID: names starting with STEVEDORE_ are set by the agent/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: "UPPER/Case"'), 'SPEC_INVALID', /image: is not a valid image reference/);
  throwsCode(t, () => parseJobSpec('name: [unclosed'), 'SPEC_INVALID', /not valid YAML or JSON/);
  throwsCode(t, () => parseJobSpec('- a\n- b'), 'SPEC_INVALID', /expected a mapping/);
  throwsCode(t, () => validateJobSpec({ name: 'a', image: 'b', command: ['x'.repeat(MAX_SPEC_BYTES)] }), 'SPEC_INVALID', /the limit is/);
  t.end();
});

void t.test('a spec from the wire treats proto3 empty values as unset', (t) => {
  const spec = fromSpecMessage({ name: 'a', image: 'busybox', command: [], env: {}, mounts: [], ulimits: [], stopSignal: '', pullPolicy: '', stopGraceSeconds: 5, workingDir: '', hostIpc: false, hostNetwork: false, resources: { gpus: 1, cpus: 0, memoryBytes: 0, shmBytes: 0 } });
  t.equal(spec.stopSignal, 'SIGTERM');
  t.equal(spec.pullPolicy, 'if-not-present');
  t.equal(spec.resources.gpus, 1);
  throwsCode(t, () => fromSpecMessage(null), 'SPEC_INVALID', /no job spec/);
  t.end();
});

void t.test('the checkpoint section: defaults, and errors that say what to write', (t) => {
  const spec = parseJobSpec('name: a\nimage: busybox\ncheckpoint: { path: /ckpt, destination: "s3://my-bucket/runs/a" }');
  t.same(spec.checkpoint, { path: '/ckpt', destination: 's3://my-bucket/runs/a', endpoint: 'default', rule: 'dcp', marker: 'COMMIT', quiescenceSeconds: 10, keep: 3, keepEvery: 0, signal: 'SIGUSR1', resume: true });
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\ncheckpoint: { path: /ckpt, destination: "http://x" }'), 'SPEC_INVALID', /checkpoint\.destination: must be an S3 URL/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\ncheckpoint: { path: /ckpt, destination: "s3://b-1/x", rule: pytorch }'), 'SPEC_INVALID', /checkpoint\.rule: must be one of dcp, orbax, hf, lightning, marker, quiescence/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\nmounts: [{source: c, target: /ckpt}]\ncheckpoint: { path: /ckpt, destination: "s3://b-1/x" }'), 'SPEC_INVALID', /checkpoint\.path: \/ckpt is also mounts\[0\]\.target/);
  const wire = fromSpecMessage({ name: 'a', image: 'busybox', checkpoint: { path: '/ckpt', destination: 's3://b-1/x', endpoint: '', rule: '', marker: '', quiescenceSeconds: 0, keep: 0, keepEvery: 0, signal: '', resume: true } });
  t.equal(wire.checkpoint?.rule, 'dcp');
  t.equal(wire.checkpoint?.keep, 3);
  t.end();
});

void t.test('input and output sections', (t) => {
  const spec = parseJobSpec('name: a\nimage: busybox\ninput: { url: "https://data.example.com/set.tar.gz", target: /data }\noutput: { path: /out, destination: "s3://b-1/out" }');
  t.same(spec.input, { url: 'https://data.example.com/set.tar.gz', endpoint: 'default', target: '/data', extract: 'auto' });
  t.same(spec.output, { path: '/out', destination: 's3://b-1/out', endpoint: 'default', intervalSeconds: 30 });
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\ninput: { url: "ftp://x/y", target: /data }'), 'SPEC_INVALID', /input\.url: must be an http\(s\):\/\/ URL or s3:\/\/bucket\/key/);
  throwsCode(t, () => parseJobSpec('name: a\nimage: busybox\ninput: { url: "s3://b-1/k", target: /o }\noutput: { path: /o, destination: "s3://b-1/out" }'), 'SPEC_INVALID', /output\.path: \/o is also input\.target/);
  t.end();
});
