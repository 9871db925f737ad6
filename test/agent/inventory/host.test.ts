import t from 'tap';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { Inventory__Output } from '../../../src/proto/load.ts';
import type { Gpu__Output } from '../../../src/gen/stevedore/v1/Gpu.ts';
import { collectInventory, type InventoryInfo, type SystemProbes } from '../../../src/agent/inventory/host.ts';
import { writeFakeNvidiaSmi } from '../../helpers/fake-gpus.ts';

void t.test('loads the systeminformation modules it calls, not the package index and all twenty', async (t) => {
  const dir = t.testdir({ jobs: {} });
  await collectInventory({ workRoot: path.join(dir, 'jobs'), nvidiaSmiPath: path.join(dir, 'no-nvidia-smi') });
  const loaded = Object.keys(createRequire(import.meta.url).cache)
    .filter((file) => file.includes(`${path.sep}systeminformation${path.sep}`))
    .map((file) => path.basename(file))
    .sort();
  // network.js: osinfo.js asks it for the MAC addresses when it computes the host's UUID.
  t.same(loaded, ['cpu.js', 'memory.js', 'network.js', 'osinfo.js', 'util.js']);
});

void t.test('describes this host: CPU, memory, OS, the work root disk and the GPUs', async (t) => {
  const dir = t.testdir({ jobs: {} });
  const smi = writeFakeNvidiaSmi(path.join(dir, 'gpu'), 2);
  const started = Date.now();
  const inventory = await collectInventory({ workRoot: path.join(dir, 'jobs'), nvidiaSmiPath: smi });
  t.ok(Date.now() - started < 2000, `collected in ${Date.now() - started} ms`);

  // The shape of the protocol's Inventory message; health is added by the health check.
  const wire: Omit<Inventory__Output, 'gpus'> & { gpus: Omit<Gpu__Output, 'health'>[] } = inventory;
  t.equal(wire.hostname, os.hostname());
  t.equal(inventory.cpuCores, os.cpus().length, 'logical cores');
  t.ok(inventory.cpuModel.length > 0, `cpu model "${inventory.cpuModel}"`);
  t.equal(inventory.memoryBytes, os.totalmem());
  t.equal(inventory.kernel, os.release());
  t.equal(inventory.arch, os.machine());
  const release = fs.readFileSync('/etc/os-release', 'utf8');
  const name = /^NAME="?([^"\n]*)"?$/m.exec(release)?.[1] ?? '';
  t.ok(name !== '' && inventory.os.startsWith(name), `os "${inventory.os}" names the distribution "${name}"`);

  const stats = fs.statfsSync(dir);
  t.equal(inventory.diskTotalBytes, stats.blocks * stats.bsize);
  t.ok(Math.abs(inventory.diskFreeBytes - stats.bavail * stats.bsize) < 64 * 1024 * 1024, 'free bytes of the same file system');
  t.ok(inventory.diskFreeBytes <= inventory.diskTotalBytes);

  t.equal(inventory.gpus.length, 2);
  t.match(inventory.gpus[1], { index: 1, name: 'NVIDIA A100-SXM4-80GB', memoryMib: 81920, pciBusId: '00000000:0F:00.0' });
});

void t.test('a work root that does not exist yet is measured on the file system that will hold it', async (t) => {
  const dir = t.testdir();
  const inventory = await collectInventory({ workRoot: path.join(dir, 'not', 'yet', 'there'), nvidiaSmiPath: path.join(dir, 'no-nvidia-smi') });
  t.equal(inventory.diskTotalBytes, fs.statfsSync(dir).blocks * fs.statfsSync(dir).bsize);
  t.same(inventory.gpus, [], 'no nvidia-smi: a CPU-only host');
});

void t.test('a failing nvidia-smi fails the inventory', async (t) => {
  const dir = t.testdir();
  await t.rejects(collectInventory({ workRoot: dir, nvidiaSmiPath: writeFakeNvidiaSmi(dir, 1, { broken: true }) }), { code: 'GPU_INVENTORY_FAILED' });
});

void t.test('a slow or failing probe does not hold up the agent: Node.js fills in', async (t) => {
  const never = new Promise<never>(() => {});
  const systemProbes: SystemProbes = { cpu: () => never, mem: () => Promise.reject(new Error('no /proc/meminfo')), osInfo: () => never };
  const dir = t.testdir();
  const started = Date.now();
  const inventory: InventoryInfo = await collectInventory({ workRoot: dir, nvidiaSmiPath: path.join(dir, 'none'), probeTimeoutMs: 300, systemProbes });
  t.ok(Date.now() - started < 1500, 'bounded by the probe timeout');
  t.equal(inventory.cpuCores, os.cpus().length);
  t.equal(inventory.cpuModel, os.cpus()[0]?.model ?? '');
  t.equal(inventory.memoryBytes, os.totalmem());
  t.equal(inventory.kernel, os.release());
  t.equal(inventory.os, `${os.type()} ${os.release()}`);
});
