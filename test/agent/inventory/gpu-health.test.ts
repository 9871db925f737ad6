import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import {
  assessGpuHealth, DEFAULT_FATAL_XIDS, GPU_HEALTH_FIELDS, normalizePciBusId, parseGpuHealthCsv, parseXidLine, queryGpuHealth,
  type GpuHealthSample,
} from '../../../src/agent/inventory/gpu-health.ts';
import type { GpuInfo } from '../../../src/agent/inventory/gpus.ts';
import { setFakeGpuHealth, writeFakeNvidiaSmi } from '../../helpers/fake-gpus.ts';

const UUID0 = 'GPU-5fbd8d5e-7a3c-2f1b-9c4d-0e6a1b2c3d4e';
const UUID1 = 'GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90';
const UUID2 = 'GPU-0c9d8e7f-6a5b-4c3d-2e1f-0a9b8c7d6e5f';
const LIMITS = { maxTemperatureC: 90, maxUncorrectedEcc: 0, fatalXids: DEFAULT_FATAL_XIDS };

function gpu(index: number, uuid: string, pciBusId: string): GpuInfo {
  return { index, uuid, name: 'NVIDIA A100-SXM4-80GB', memoryMib: 81920, driverVersion: '535.129.03', pciBusId };
}

function sample(over: Partial<GpuHealthSample> = {}): GpuHealthSample {
  return {
    uuid: UUID0, pciBusId: '00000000:07:00.0', temperatureC: 40, eccUncorrectedVolatile: 0,
    retiredPagesPending: undefined, remappedRowsPending: false, remappedRowsFailure: false, errors: [], ...over,
  };
}

void t.test('parseGpuHealthCsv: several GPUs, [N/A] and [Not Supported] are not problems, errors are kept', (t) => {
  // uuid, pci.bus_id, temperature.gpu, ecc.errors.uncorrected.volatile.total, retired_pages.pending, remapped_rows.pending, remapped_rows.failure
  const out = [
    `${UUID0}, 00000000:07:00.0, 34, 0, [N/A], No, No`,
    `${UUID1}, 00000000:0F:00.0, 91, 2, [N/A], Yes, No`,
    // A GeForce without ECC or row remapping.
    `${UUID2}, 00000000:81:00.0, 45, [N/A], [Not Supported], [Not Supported], [N/A]`,
    '',
  ].join('\n');
  const { samples, unreachable } = parseGpuHealthCsv(out);
  t.same(unreachable, []);
  t.same(samples, [
    { uuid: UUID0, pciBusId: '00000000:07:00.0', temperatureC: 34, eccUncorrectedVolatile: 0, retiredPagesPending: undefined, remappedRowsPending: false, remappedRowsFailure: false, errors: [] },
    { uuid: UUID1, pciBusId: '00000000:0F:00.0', temperatureC: 91, eccUncorrectedVolatile: 2, retiredPagesPending: undefined, remappedRowsPending: true, remappedRowsFailure: false, errors: [] },
    { uuid: UUID2, pciBusId: '00000000:81:00.0', temperatureC: 45, eccUncorrectedVolatile: undefined, retiredPagesPending: undefined, remappedRowsPending: undefined, remappedRowsFailure: undefined, errors: [] },
  ]);
  const broken = parseGpuHealthCsv(`${UUID0}, 00000000:07:00.0, [GPU requires reset], [Unknown Error], No, No, No`).samples[0];
  t.same(broken?.errors, ['temperature.gpu: [GPU requires reset]', 'ecc.errors.uncorrected.volatile.total: [Unknown Error]']);
  t.equal(broken?.temperatureC, undefined);
  t.end();
});

void t.test('parseGpuHealthCsv: a GPU nvidia-smi cannot reach is named between the others', (t) => {
  const out = [
    `${UUID0}, 00000000:07:00.0, 34, 0, No, No, No`,
    'Unable to determine the device handle for GPU 00000000:0F:00.0: Unknown Error',
    'Unable to determine the device handle for gpu 0000:47:00.0: GPU is lost.  Reboot the system to recover this GPU',
    `${UUID2}, 00000000:87:00.0, 35, 0, No, No, No`,
  ].join('\n');
  const { samples, unreachable } = parseGpuHealthCsv(out);
  t.same(samples.map((s) => s.uuid), [UUID0, UUID2]);
  t.same(unreachable, [
    { pciBusId: '00000000:0F:00.0', message: 'Unknown Error' },
    { pciBusId: '0000:47:00.0', message: 'GPU is lost.  Reboot the system to recover this GPU' },
  ]);
  t.end();
});

void t.test('parseGpuHealthCsv follows the fields asked (a field dropped for an older driver)', (t) => {
  const fields = GPU_HEALTH_FIELDS.filter((f) => !f.startsWith('remapped_rows'));
  const { samples } = parseGpuHealthCsv(`${UUID0}, 00000000:07:00.0, 50, 1, Yes`, fields);
  t.match(samples[0], { temperatureC: 50, eccUncorrectedVolatile: 1, retiredPagesPending: true, remappedRowsPending: undefined });
  t.same(parseGpuHealthCsv(`${UUID0}, 00000000:07:00.0, 50, 1, Yes`).samples, [], 'a line with the wrong number of values is not read');
  t.end();
});

void t.test('normalizePciBusId: nvidia-smi and kernel log forms agree', (t) => {
  t.equal(normalizePciBusId('00000000:07:00.0'), '0000:07:00');
  t.equal(normalizePciBusId('0000:07:00'), '0000:07:00');
  t.equal(normalizePciBusId('00000000:BD:00.0'), normalizePciBusId('0000:bd:00'));
  t.equal(normalizePciBusId('00000001:3B:00.0'), '0001:3b:00');
  t.equal(normalizePciBusId('[N/A]'), '');
  t.end();
});

void t.test('parseXidLine: kmsg records and dmesg lines', (t) => {
  t.same(parseXidLine('4,1234,5678901234,-;NVRM: Xid (PCI:0000:07:00): 79, pid=2817, name=python, GPU has fallen off the bus.'), {
    pciBusId: '0000:07:00', xid: 79, detail: 'pid=2817, name=python, GPU has fallen off the bus.',
  });
  t.same(parseXidLine("[ 8251.134125] NVRM: Xid (PCI:0000:3b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0."), {
    pciBusId: '0000:3b:00', xid: 48, detail: "pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer at partition 6, subpartition 0.",
  });
  t.match(parseXidLine('4,99,100,-;NVRM: Xid (0000:0f:00): 13, Graphics Exception: ESR 0x405840=0x3c000000'), { pciBusId: '0000:0f:00', xid: 13 }, 'older drivers leave out "PCI:"');
  t.equal(parseXidLine('6,100,200,-;NVRM: GPU at PCI:0000:07:00: GPU-5fbd8d5e-7a3c-2f1b-9c4d-0e6a1b2c3d4e'), undefined);
  t.equal(parseXidLine('6,101,300,-;usb 1-1: new high-speed USB device'), undefined);
  t.end();
});

void t.test('assessGpuHealth: each rule, with a reason that says what to do', (t) => {
  const g = gpu(0, UUID0, '00000000:07:00.0');
  const assess = (over: Partial<Parameters<typeof assessGpuHealth>[0]>, limits = LIMITS) =>
    assessGpuHealth({ gpu: g, sample: sample(), unreachable: undefined, queryFailure: undefined, xids: [], ...over }, limits);
  t.same(assess({}), { healthy: true, problems: [] });
  t.same(assess({ sample: sample({ eccUncorrectedVolatile: undefined, remappedRowsPending: undefined, temperatureC: undefined }) }).healthy, true, 'values a GPU cannot tell are no problem');
  t.match(assess({ sample: sample({ eccUncorrectedVolatile: 3 }) }), { healthy: false, problems: [{ kind: 'ecc', message: /^3 uncorrected ECC errors since the driver loaded \(limit 0\); the count clears only with a GPU reset/ }] });
  t.equal(assess({ sample: sample({ eccUncorrectedVolatile: 3 }) }, { ...LIMITS, maxUncorrectedEcc: 5 }).healthy, true, 'below a configured threshold');
  t.match(assess({ sample: sample({ retiredPagesPending: true }) }).problems, [{ kind: 'retired-pages', message: /retired memory pages are pending/ }]);
  t.match(assess({ sample: sample({ remappedRowsPending: true }) }).problems, [{ kind: 'remapped-rows', message: /remapped memory rows are pending: reset the GPU/ }]);
  t.match(assess({ sample: sample({ remappedRowsFailure: true }) }).problems, [{ kind: 'remap-failure' }]);
  t.match(assess({ sample: sample({ temperatureC: 90 }) }).problems, [{ kind: 'temperature', message: /temperature 90 °C is at or above 90 °C/ }]);
  t.equal(assess({ sample: sample({ temperatureC: 89 }) }).healthy, true);
  t.match(assess({ sample: undefined }).problems, [{ kind: 'missing', message: /missing from nvidia-smi's answer \(fallen off the bus\?\)/ }]);
  t.match(assess({ sample: undefined, unreachable: 'Unknown Error' }).problems, [{ kind: 'unreachable', message: /nvidia-smi cannot reach it \(Unknown Error\)/ }]);
  t.match(assess({ sample: undefined, queryFailure: 'exit 9: NVIDIA-SMI has failed' }).problems, [{ kind: 'query-failed', message: /could not check it: exit 9/ }]);
  t.match(assess({ sample: sample({ errors: ['temperature.gpu: [GPU requires reset]'] }) }).problems, [{ message: /reports temperature.gpu: \[GPU requires reset\]/ }]);
  t.match(assess({ xids: [79, 79] }).problems, [{ kind: 'xid:79', message: /Xid 79 \(GPU has fallen off the bus\); reset the GPU or reboot the node, then restart the agent/ }]);
  t.same(assess({ xids: [13, 31, 43, 45] }), { healthy: true, problems: [] }, 'application XIDs do not make a GPU unhealthy');
  t.equal(assess({ xids: [13] }, { ...LIMITS, fatalXids: [13] }).healthy, false, 'the fatal list is configurable');
  t.end();
});

void t.test('queryGpuHealth against the stand-in: health fields settable while it runs', async (t) => {
  const dir = t.testdir();
  const smi = writeFakeNvidiaSmi(dir, 3);
  const fixture = JSON.parse(fs.readFileSync(path.join(dir, 'gpus.json'), 'utf8')) as { gpus: { uuid: string }[] };
  const first = await queryGpuHealth(smi);
  t.equal(first.failure, undefined);
  t.same(first.samples.map((s) => s.uuid), fixture.gpus.map((g) => g.uuid));
  t.match(first.samples[0], { pciBusId: '00000000:07:00.0', temperatureC: 31, eccUncorrectedVolatile: 0, remappedRowsPending: false, errors: [] });

  setFakeGpuHealth(dir, 1, { fields: { 'ecc.errors.uncorrected.volatile.total': 4, 'temperature.gpu': 93 } });
  setFakeGpuHealth(dir, 2, { unreachable: 'Unknown Error' });
  const second = await queryGpuHealth(smi);
  t.equal(second.failure, undefined, 'exit 15 with other GPUs listed is not a failure of the whole query');
  t.match(second.samples[1], { eccUncorrectedVolatile: 4, temperatureC: 93 });
  t.equal(second.samples.length, 2);
  t.same(second.unreachable, [{ pciBusId: '00000000:47:00.0', message: 'Unknown Error' }]);

  setFakeGpuHealth(dir, 2, { unreachable: null, missing: true });
  setFakeGpuHealth(dir, 1, { fields: { 'ecc.errors.uncorrected.volatile.total': undefined } });
  const third = await queryGpuHealth(smi);
  t.same(third.samples.map((s) => s.uuid), fixture.gpus.slice(0, 2).map((g) => g.uuid), 'a missing GPU is not listed');
  t.equal(third.samples[1]?.eccUncorrectedVolatile, 0, 'an override removed');
});

void t.test('queryGpuHealth: a driver that does not know a field is asked again without it', async (t) => {
  const smi = writeFakeNvidiaSmi(t.testdir(), 1);
  const fields = [...GPU_HEALTH_FIELDS, 'clocks_event_reasons.hw_slowdown'];
  const dropped: string[] = [];
  const result = await queryGpuHealth(smi, { fields, onFieldDropped: (f) => dropped.push(f) });
  t.same(dropped, ['clocks_event_reasons.hw_slowdown']);
  t.same(fields, [...GPU_HEALTH_FIELDS], 'remembered for the next query');
  t.equal(result.samples.length, 1);
});

void t.test('queryGpuHealth: whole failures are reported, not thrown', async (t) => {
  const broken = await queryGpuHealth(writeFakeNvidiaSmi(t.testdir(), 2, { broken: true }));
  t.same(broken.samples, []);
  t.match(broken.failure, /^exit 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/);
  const hung = await queryGpuHealth(writeFakeNvidiaSmi(path.join(t.testdir(), 'hung'), 2, { delayMs: 20_000 }), { timeoutMs: 300 });
  t.match(hung.failure, /did not answer within 0.3 s/);
  const gone = await queryGpuHealth(path.join(t.testdir(), 'no-such-nvidia-smi'));
  t.match(gone.failure, /is gone/);
});
