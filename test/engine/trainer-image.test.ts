// The training stand-in image (test/fixtures/trainer/train.sh) on the real engine:
// later features rely on its steps, checkpoint layouts, resume and signals.
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import type { ContainerSpec, LogLine } from '../../src/engine/container-engine.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { testEngineEnv, uniqueName } from '../helpers/engine.ts';

const env = testEngineEnv();
const engine = new DockerEngine({ dockerHost: env.dockerHost });
const runLabel = { 'org.stevedore.test.run': uniqueName('trainer') };

t.teardown(async () => {
  for (const c of await engine.list(runLabel)) await engine.remove(c.id);
});

/** A trainer container with the host directory `dir` mounted at /work; checkpoints go to /work/ckpt. */
function trainer(dir: string, trainEnv: Record<string, string>, extra: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    name: uniqueName('trainer'),
    image: env.trainerImage,
    command: [],
    env: { TRAIN_CKPT_DIR: '/work/ckpt', TRAIN_STEP_LOG: '/work/steps.log', TRAIN_STEP_SECONDS: '0.02', ...trainEnv },
    labels: { ...runLabel },
    gpuUuids: [],
    cpus: 0,
    memoryBytes: 0,
    shmBytes: 0,
    ulimits: [],
    hostIpc: false,
    hostNetwork: false,
    networkMode: 'none',
    mounts: [{ hostPath: dir, containerPath: '/work', readOnly: false }],
    stopSignal: 'SIGTERM',
    workingDir: '',
    ...extra,
  };
}

async function runToEnd(spec: ContainerSpec): Promise<{ exitCode: number; out: string[]; err: string[] }> {
  const id = await engine.create(spec);
  await engine.start(id);
  const { exitCode } = await engine.wait(id);
  const lines: LogLine[] = [];
  await engine.followLogs(id, {}, (line) => lines.push(line));
  return {
    exitCode,
    out: lines.filter((l) => l.stream === 'stdout').map((l) => l.text),
    err: lines.filter((l) => l.stream === 'stderr').map((l) => l.text),
  };
}

const stepLog = (dir: string): string[] => readFileSync(path.join(dir, 'steps.log'), 'utf8').trimEnd().split('\n');
const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

void t.test('a default run: 10 steps, dcp checkpoints every 5, progress on stdout, a warning on stderr', async (t) => {
  const dir = t.testdir({});
  const { exitCode, out, err } = await runToEnd(trainer(dir, {}));
  t.equal(exitCode, 0);
  t.same(out.filter((l) => l.startsWith('step ')).map((l) => l.split(' ')[1]), range(1, 10).map((n) => `${n}/10`));
  t.match(out, ['step 1/10 loss=1.350']);
  t.ok(out.includes('checkpoint step-000005 written') && out.includes('checkpoint step-000010 written'));
  t.equal(out.at(-1), 'training complete: 10 steps');
  t.match(err.join('\n'), /^warning: /);

  t.same(readdirSync(path.join(dir, 'ckpt')).sort(), ['step-000005', 'step-000010']);
  for (const step of [5, 10]) {
    const ckpt = path.join(dir, 'ckpt', `step-${String(step).padStart(6, '0')}`);
    t.same(readdirSync(ckpt).sort(), ['.metadata', 'shard-0.bin'], 'no .metadata.tmp left behind');
    t.equal(statSync(path.join(ckpt, 'shard-0.bin')).size, 4096);
    t.match(JSON.parse(readFileSync(path.join(ckpt, '.metadata'), 'utf8')), { step, files: ['shard-0.bin'], bytes: 4096 });
  }
  t.same(stepLog(dir), [...range(1, 5).map((n) => `step ${n}`), 'checkpoint 5', ...range(6, 10).map((n) => `step ${n}`), 'checkpoint 10']);
});

void t.test('hf style, checkpoint size and exit code come from the environment', async (t) => {
  const dir = t.testdir({});
  const { exitCode, out } = await runToEnd(trainer(dir, {
    TRAIN_STEPS: '4', TRAIN_CKPT_EVERY: '2', TRAIN_CKPT_STYLE: 'hf', TRAIN_CKPT_BYTES: '1000', TRAIN_EXIT_CODE: '7',
  }));
  t.equal(exitCode, 7);
  t.ok(out.includes('checkpoint checkpoint-4 written'));
  t.same(readdirSync(path.join(dir, 'ckpt')).sort(), ['checkpoint-2', 'checkpoint-4']);
  const ckpt = path.join(dir, 'ckpt', 'checkpoint-4');
  t.same(readdirSync(ckpt).sort(), ['model.bin', 'trainer_state.json']);
  t.equal(statSync(path.join(ckpt, 'model.bin')).size, 1000);
  t.match(JSON.parse(readFileSync(path.join(ckpt, 'trainer_state.json'), 'utf8')), { global_step: 4 });
});

void t.test('TRAIN_RESUME continues after the newest complete checkpoint, ignoring an incomplete one', async (t) => {
  const dir = t.testdir({});
  t.equal((await runToEnd(trainer(dir, { TRAIN_STEPS: '6', TRAIN_CKPT_EVERY: '3' }))).exitCode, 0);
  // A newer checkpoint whose metadata was never written: a crash in the middle of a save.
  mkdirSync(path.join(dir, 'ckpt', 'step-000009'));
  writeFileSync(path.join(dir, 'ckpt', 'step-000009', 'shard-0.bin'), 'partial');
  writeFileSync(path.join(dir, 'steps.log'), '');

  const { exitCode, out } = await runToEnd(trainer(dir, { TRAIN_STEPS: '10', TRAIN_CKPT_EVERY: '3', TRAIN_RESUME: '1' }));
  t.equal(exitCode, 0);
  t.equal(out[0], 'resumed from step 6');
  t.same(stepLog(dir), ['resume 6', 'step 7', 'step 8', 'step 9', 'checkpoint 9', 'step 10']);
});

void t.test('STEVEDORE_RESTORE_PATH names the checkpoint to continue after', async (t) => {
  const dir = t.testdir({ restore: { 'step-000004': { '.metadata': '{"step": 4, "files": ["shard-0.bin"], "bytes": 3}\n', 'shard-0.bin': 'abc' } } });
  const { exitCode, out } = await runToEnd(trainer(dir, { TRAIN_STEPS: '6', STEVEDORE_RESTORE_PATH: '/work/restore/step-000004' }));
  t.equal(exitCode, 0);
  t.same(out, ['resumed from step 4', 'step 5/6 loss=0.517', 'checkpoint step-000005 written', 'step 6/6 loss=0.457', 'training complete: 6 steps']);

  const broken = await runToEnd(trainer(dir, { STEVEDORE_RESTORE_PATH: '/work/restore/nothing-here' }));
  t.equal(broken.exitCode, 3);
  t.match(broken.err.join('\n'), /not a complete checkpoint/);
});

async function runUntilStep(spec: ContainerSpec, step: number): Promise<string> {
  const id = await engine.create(spec);
  await engine.start(id);
  const controller = new AbortController();
  await engine.followLogs(id, { signal: controller.signal }, (line) => {
    if (line.text.startsWith(`step ${step}/`)) controller.abort();
  });
  return id;
}

void t.test('the checkpoint signal (USR1) writes a final checkpoint of the current step and exits 0', async (t) => {
  const dir = t.testdir({});
  const id = await runUntilStep(trainer(dir, { TRAIN_STEPS: '1000', TRAIN_STEP_SECONDS: '0.2', TRAIN_CKPT_EVERY: '100' }), 3);
  await engine.stop(id, 'SIGUSR1', 10);
  const { exitCode } = await engine.wait(id);
  t.equal(exitCode, 0);
  const log = stepLog(dir);
  const last = Number(/^step (\d+)$/.exec(log.at(-2) ?? '')?.[1]);
  t.ok(last >= 3, `stopped after step ${last}`);
  t.equal(log.at(-1), `checkpoint ${last}`);
  t.ok(existsSync(path.join(dir, 'ckpt', `step-${String(last).padStart(6, '0')}`, '.metadata')));
});

void t.test('SIGTERM writes a final checkpoint and exits 143; a resume then loses and repeats no step', async (t) => {
  const dir = t.testdir({});
  const spec = trainer(dir, { TRAIN_STEPS: '1000', TRAIN_STEP_SECONDS: '0.2', TRAIN_CKPT_EVERY: '100', TRAIN_CKPT_STYLE: 'hf' });
  const id = await runUntilStep(spec, 2);
  await engine.stop(id, 'SIGTERM', 10);
  t.equal((await engine.wait(id)).exitCode, 143);
  const log = stepLog(dir);
  const last = Number(/^step (\d+)$/.exec(log.at(-2) ?? '')?.[1]);
  t.equal(log.at(-1), `checkpoint ${last}`);
  t.ok(existsSync(path.join(dir, 'ckpt', `checkpoint-${last}`, 'trainer_state.json')));

  const resumed = await runToEnd(trainer(dir, { TRAIN_STEPS: String(last + 2), TRAIN_CKPT_STYLE: 'hf', TRAIN_RESUME: '1', TRAIN_CKPT_EVERY: '0' }));
  t.equal(resumed.exitCode, 0);
  const steps = stepLog(dir).filter((l) => l.startsWith('step ')).map((l) => Number(l.slice(5)));
  t.same(steps, range(1, last + 2), 'every step exactly once across the two runs');
});
