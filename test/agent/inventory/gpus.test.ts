import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { parseGpuCsv, queryGpuInventory, queryGpus } from '../../../src/agent/inventory/gpus.ts';
import { writeFakeNvidiaSmi } from '../../helpers/fake-gpus.ts';

const UUID_RE = /^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

void t.test('reads every GPU of the host from nvidia-smi', async (t) => {
  const dir = t.testdir();
  const smi = writeFakeNvidiaSmi(dir, 4);
  const gpus = await queryGpus(smi);
  t.equal(gpus.length, 4);
  t.same(gpus.map((g) => g.index), [0, 1, 2, 3]);
  const fixture = JSON.parse(fs.readFileSync(path.join(dir, 'gpus.json'), 'utf8')) as { gpus: { uuid: string }[] };
  t.same(gpus.map((g) => g.uuid), fixture.gpus.map((g) => g.uuid), 'the UUIDs nvidia-smi reports');
  t.same(gpus[0], { index: 0, uuid: fixture.gpus[0]!.uuid, name: 'NVIDIA A100-SXM4-80GB', memoryMib: 81920, driverVersion: '535.129.03', pciBusId: '00000000:07:00.0' });
  for (const gpu of gpus) t.match(gpu.uuid, UUID_RE);
});

void t.test('two fake hosts never share a GPU UUID', async (t) => {
  const dir = t.testdir();
  const a = await queryGpus(writeFakeNvidiaSmi(path.join(dir, 'a'), 8));
  const b = await queryGpus(writeFakeNvidiaSmi(path.join(dir, 'b'), 8));
  t.equal(new Set([...a, ...b].map((g) => g.uuid)).size, 16);
  t.equal(new Set(a.map((g) => g.pciBusId)).size, 8, 'distinct bus ids on one host');
});

void t.test('values nvidia-smi cannot tell ([N/A]) and names with spaces', async (t) => {
  const dir = t.testdir();
  const smi = writeFakeNvidiaSmi(dir, [
    { name: 'NVIDIA GeForce RTX 4090', memoryMib: 24564 },
    { name: 'NVIDIA H100 80GB HBM3', memoryMib: null, fields: { driver_version: null, 'pci.bus_id': '[Not Supported]' } },
  ]);
  const gpus = await queryGpus(smi);
  t.match(gpus, [
    { index: 0, name: 'NVIDIA GeForce RTX 4090', memoryMib: 24564, driverVersion: '535.129.03' },
    { index: 1, name: 'NVIDIA H100 80GB HBM3', memoryMib: 0, driverVersion: '', pciBusId: '' },
  ]);
});

void t.test('a host without nvidia-smi has no GPUs, and says why', async (t) => {
  const missing = path.join(t.testdir(), 'nowhere', 'nvidia-smi');
  const result = await queryGpuInventory(missing);
  t.same(result.gpus, []);
  t.match(result.note, new RegExp(`no nvidia-smi at ${missing}.*install the NVIDIA driver or point nvidiaSmiPath`));

  const onPath = await queryGpuInventory('nvidia-smi-that-does-not-exist');
  t.match(onPath.note, /no nvidia-smi named nvidia-smi-that-does-not-exist on PATH/);

  const records: { msg: string; level: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (l: string) => records.push(JSON.parse(l) as { msg: string; level: number }) });
  t.same(await queryGpus(missing, { logger }), []);
  t.match(records, [{ level: 30, msg: /no nvidia-smi at/ }], 'queryGpus logs the reason');
});

void t.test('nvidia-smi that finds no devices: no GPUs, with a note', async (t) => {
  const result = await queryGpuInventory(writeFakeNvidiaSmi(t.testdir(), 0));
  t.same(result.gpus, []);
  t.match(result.note, /found no GPUs \("No devices were found"\)/);
});

void t.test('a driver that is not loaded is GPU_INVENTORY_FAILED with its message and the fix', async (t) => {
  const smi = writeFakeNvidiaSmi(t.testdir(), 2, { broken: true });
  await t.rejects(queryGpus(smi), {
    code: 'GPU_INVENTORY_FAILED',
    message: /failed \(exit 9\): NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver\..*the NVIDIA kernel driver is not loaded: check `lsmod \| grep nvidia`/,
  });
});

void t.test('a hung nvidia-smi is cut off after the timeout', async (t) => {
  const smi = writeFakeNvidiaSmi(t.testdir(), 2, { delayMs: 20_000 });
  const started = Date.now();
  await t.rejects(queryGpus(smi, { timeoutMs: 400 }), { code: 'GPU_INVENTORY_FAILED', message: /did not answer within 0.4 s.*Xid/ });
  t.ok(Date.now() - started < 5000, 'does not wait for it');
});

void t.test('an nvidia-smi that is not executable is GPU_INVENTORY_FAILED', async (t) => {
  const smi = writeFakeNvidiaSmi(t.testdir(), 1);
  fs.chmodSync(smi, 0o644);
  await t.rejects(queryGpus(smi), { code: 'GPU_INVENTORY_FAILED', message: /cannot run .* \(EACCES\): make it executable/ });
});

void t.test('output that is not what was asked for names the line', async (t) => {
  const dir = t.testdir();
  const smi = path.join(dir, 'nvidia-smi');
  fs.writeFileSync(smi, '#!/bin/sh\necho "Segmentation fault in libnvidia-ml"\n', { mode: 0o755 });
  await t.rejects(queryGpus(smi), { code: 'GPU_INVENTORY_FAILED', message: /cannot read \(1 values instead of 6\): "Segmentation fault in libnvidia-ml"/ });
});

void t.test('parseGpuCsv', (t) => {
  const uuid0 = 'GPU-5fbd8d5e-7a3c-2f1b-9c4d-0e6a1b2c3d4e';
  const uuid1 = 'GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90';
  t.same(parseGpuCsv(`1,${uuid1},Tesla V100-SXM2-16GB,16160,470.82.01,00000000:00:1E.0\r\n0, ${uuid0}, NVIDIA A100-SXM4-80GB, 81920 MiB, 535.129.03, 00000000:07:00.0\r\n\r\n`), [
    { index: 0, uuid: uuid0, name: 'NVIDIA A100-SXM4-80GB', memoryMib: 81920, driverVersion: '535.129.03', pciBusId: '00000000:07:00.0' },
    { index: 1, uuid: uuid1, name: 'Tesla V100-SXM2-16GB', memoryMib: 16160, driverVersion: '470.82.01', pciBusId: '00000000:00:1E.0' },
  ], 'sorted by index; no spaces after commas, units and CRLF are fine');
  t.equal(parseGpuCsv(`0, ${uuid0}, Odd, Name, [N/A], [Unknown Error], [N/A]`)[0]?.name, 'Odd, Name', 'a comma in the name');
  t.same(parseGpuCsv(''), []);
  t.throws(() => parseGpuCsv(`0, ${uuid0}, A100, 81920, 535, 00000000:07:00.0\nx, ${uuid1}, A100, 81920, 535, 00000000:0F:00.0`), {
    code: 'GPU_INVENTORY_FAILED',
    message: /index "x" is not a number\): "x, GPU-a1b2/,
  });
  t.throws(() => parseGpuCsv('0, [N/A], A100, 81920, 535, 00000000:07:00.0'), { message: /"\[N\/A\]" is not a GPU UUID/ });
  t.throws(() => parseGpuCsv(`0, ${uuid0}, A100, lots, 535, 00000000:07:00.0`), { message: /memory.total "lots" is not a number of MiB/ });
  t.throws(() => parseGpuCsv(`0, ${uuid0}, A100, 1, 535, x\n1, ${uuid0}, A100, 1, 535, y`), { message: /listed GPU GPU-5fbd8d5e-7a3c-2f1b-9c4d-0e6a1b2c3d4e twice/ });
  t.end();
});
