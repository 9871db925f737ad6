// The nvidia-smi stand-in (test/fixtures/gpu/nvidia-smi) must answer like the
// real tool, on every Node.js it may meet, as CommonJS (a copy outside the
// repository) or as an ES module (inside it).
import t, { type Test } from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { FAKE_NVIDIA_SMI, fakeGpuUuid, writeFakeNvidiaSmi } from '../../helpers/fake-gpus.ts';

const nodes = [process.execPath, '/usr/bin/node'].filter((n) => fs.existsSync(n));

function smi(script: string, args: string[], node?: string): { status: number | null; stdout: string; stderr: string } {
  const r = node ? spawnSync(node, [script, ...args], { encoding: 'utf8' }) : spawnSync(script, args, { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function outsideRepo(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-gpu-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

void t.test('the checked-in stand-in answers from its own gpus.json', (t) => {
  const r = smi(FAKE_NVIDIA_SMI, ['-L']);
  t.equal(r.status, 0);
  t.match(r.stdout, /^GPU 0: NVIDIA A100-SXM4-80GB \(UUID: GPU-5fbd8d5e-7a3c-2f1b-9c4d-0e6a1b2c3d4e\)\nGPU 1: /);
  t.end();
});

for (const node of nodes) {
  for (const where of ['outside the repository (CommonJS)', 'inside the repository (ES module)']) {
    void t.test(`on ${node} ${where}`, (t) => {
      const dir = where.startsWith('outside') ? outsideRepo(t) : t.testdir();
      const script = writeFakeNvidiaSmi(dir, 2);
      const u0 = fakeGpuUuid(dir, 0);
      const u1 = fakeGpuUuid(dir, 1);

      const list = smi(script, ['-L'], node);
      t.same(list, { status: 0, stderr: '', stdout: `GPU 0: NVIDIA A100-SXM4-80GB (UUID: ${u0})\nGPU 1: NVIDIA A100-SXM4-80GB (UUID: ${u1})\n` });

      const bare = smi(script, ['--query-gpu=index,uuid,name,memory.total,driver_version,pci.bus_id', '--format=csv,noheader,nounits'], node);
      t.same(bare, { status: 0, stderr: '', stdout: `0, ${u0}, NVIDIA A100-SXM4-80GB, 81920, 535.129.03, 00000000:07:00.0\n1, ${u1}, NVIDIA A100-SXM4-80GB, 81920, 535.129.03, 00000000:0F:00.0\n` });

      const full = smi(script, ['--query-gpu', 'index,gpu_name,memory.total,fan.speed,power.draw', '--format', 'csv'], node);
      t.equal(full.status, 0);
      t.equal(full.stdout, 'index, name, memory.total [MiB], fan.speed [%], power.draw [W]\n0, NVIDIA A100-SXM4-80GB, 81920 MiB, [N/A], 61.23 W\n1, NVIDIA A100-SXM4-80GB, 81920 MiB, [N/A], 61.23 W\n', 'header with units; [N/A] without');

      const units = smi(script, ['--query-gpu=memory.total', '--format=csv,nounits'], node);
      t.equal(units.stdout, 'memory.total [MiB]\n81920\n81920\n', 'the header keeps its units with nounits');

      const unknown = smi(script, ['--query-gpu=index,cuda_version', '--format=csv'], node);
      t.same(unknown, { status: 2, stderr: '', stdout: 'Field "cuda_version" is not a valid field to query.\n\n' });

      const nonsense = smi(script, ['--bogus'], node);
      t.equal(nonsense.status, 2);
      t.match(nonsense.stdout, /^Invalid combination of input arguments\. Please run 'nvidia-smi -h' for help\./);
      t.end();
    });
  }
}

void t.test('broken driver: exit 9 with the real message, for every query', (t) => {
  const script = writeFakeNvidiaSmi(t.testdir(), 2, { broken: true });
  for (const args of [['-L'], ['--query-gpu=uuid', '--format=csv']]) {
    t.same(smi(script, args), {
      status: 9,
      stderr: '',
      stdout: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n",
    });
  }
  t.end();
});

void t.test('no GPUs: "No devices were found", exit 6', (t) => {
  const script = writeFakeNvidiaSmi(t.testdir(), 0);
  t.same(smi(script, ['--query-gpu=uuid', '--format=csv']), { status: 6, stderr: '', stdout: 'No devices were found\n' });
  t.end();
});

void t.test('the same directory keeps its UUIDs when written again', (t) => {
  const dir = t.testdir();
  const first = smi(writeFakeNvidiaSmi(dir, 3), ['-L']).stdout;
  t.equal(smi(writeFakeNvidiaSmi(dir, 3), ['-L']).stdout, first);
  t.end();
});
