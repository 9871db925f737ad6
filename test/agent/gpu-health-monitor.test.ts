import t, { type Test } from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { GpuHealthMonitor, type GpuHealthChange, type GpuHealthConfig } from '../../src/agent/gpu-health-monitor.ts';
import { GPU_HEALTH_DEFAULTS, loadAgentConfig } from '../../src/agent/agent-config.ts';
import type { GpuHealthQueryResult, GpuHealthSample } from '../../src/agent/inventory/gpu-health.ts';
import type { GpuInfo } from '../../src/agent/inventory/gpus.ts';
import { eventually } from '../coordinator/fake-agent.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

const UUIDS = ['GPU-5fbd8d5e-7a3c-2f1b-9c4d-0e6a1b2c3d4e', 'GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90'];
const GPUS: GpuInfo[] = [
  { index: 0, uuid: UUIDS[0]!, name: 'NVIDIA A100-SXM4-80GB', memoryMib: 81920, driverVersion: '535.129.03', pciBusId: '00000000:07:00.0' },
  { index: 1, uuid: UUIDS[1]!, name: 'NVIDIA A100-SXM4-80GB', memoryMib: 81920, driverVersion: '535.129.03', pciBusId: '00000000:0F:00.0' },
];

interface LogLine { level: number; msg: string; uuid?: string; xid?: number; problems?: string[] }

/** A monitor over two GPUs whose nvidia-smi answer the test sets, with a fake clock and captured logs. */
function setup(t: Test, config: Partial<GpuHealthConfig> = {}) {
  const clock = new FakeClock();
  const logs: LogLine[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => logs.push(JSON.parse(l) as LogLine) });
  const readings = GPUS.map((g): GpuHealthSample => ({
    uuid: g.uuid, pciBusId: g.pciBusId, temperatureC: 35, eccUncorrectedVolatile: 0,
    retiredPagesPending: undefined, remappedRowsPending: false, remappedRowsFailure: false, errors: [],
  }));
  const answer: { result: GpuHealthQueryResult | undefined; queries: number } = { result: undefined, queries: 0 };
  const changes: GpuHealthChange[][] = [];
  const monitor = new GpuHealthMonitor({
    gpus: GPUS,
    config: { ...GPU_HEALTH_DEFAULTS, kernelLog: '', ...config },
    nvidiaSmiPath: 'unused',
    clock,
    logger,
    query: () => {
      answer.queries++;
      return Promise.resolve(answer.result ?? { samples: readings.map((r) => ({ ...r })), unreachable: [], failure: undefined });
    },
    onChange: (c) => changes.push(c),
  });
  t.teardown(() => monitor.close());
  return { clock, logs, readings, answer, changes, monitor };
}

void t.test('a change of health is reported and logged once, not per check; recovery too', async (t) => {
  const s = setup(t);
  const first = await s.monitor.start();
  t.same(first.map((h) => [h.uuid, h.healthy, h.temperatureC]), [[UUIDS[0], true, 35], [UUIDS[1], true, 35]]);
  t.equal(first[0]?.checkedMs, s.clock.now());
  t.same(s.changes, [], 'healthy at the first check is no change');

  s.readings[1]!.eccUncorrectedVolatile = 3;
  s.clock.advance(30_000);
  await eventually(() => s.answer.queries === 2);
  await s.monitor.check();
  t.equal(s.changes.length, 1, 'one change');
  t.match(s.changes[0], [{ uuid: UUIDS[1], index: 1, healthy: false, wasHealthy: true, problems: [/^3 uncorrected ECC errors/] }]);
  t.equal(s.monitor.healthOf(UUIDS[1]!)?.eccUncorrectedVolatile, 3);
  t.match(s.monitor.unhealthyReason(UUIDS[1]!), /3 uncorrected ECC errors/);
  t.equal(s.monitor.unhealthyReason(UUIDS[0]!), undefined);

  // More checks, and even a changed count, with the same problem: no new change, no new warning.
  s.readings[1]!.eccUncorrectedVolatile = 5;
  await s.monitor.check();
  await s.monitor.check();
  t.equal(s.changes.length, 1);
  t.equal(s.logs.filter((l) => l.level === 40 && l.msg.startsWith('GPU is not healthy')).length, 1, 'warned once');
  t.match(s.monitor.unhealthyReason(UUIDS[1]!), /^5 uncorrected ECC errors/, 'the reading itself is current');

  // A second problem is a change.
  s.readings[1]!.temperatureC = 95;
  await s.monitor.check();
  t.equal(s.changes.length, 2);
  t.equal(s.changes[1]?.[0]?.problems.length, 2);

  // The GPU was reset: the volatile count is 0 again.
  s.readings[1]!.eccUncorrectedVolatile = 0;
  s.readings[1]!.temperatureC = 40;
  await s.monitor.check();
  t.match(s.changes[2], [{ uuid: UUIDS[1], healthy: true, wasHealthy: false, problems: [] }]);
  t.match(s.logs.filter((l) => l.uuid === UUIDS[1] && l.level === 30), [{ msg: /GPU is healthy again/ }]);
  t.same(s.monitor.changes().map((c) => c.healthy), [false, false, true], 'the change log');
});

void t.test('checks run every intervalSeconds on the injected clock', async (t) => {
  const s = setup(t, { intervalSeconds: 5 });
  await s.monitor.start();
  t.equal(s.answer.queries, 1);
  s.clock.advance(4_999);
  await new Promise((r) => setImmediate(r));
  t.equal(s.answer.queries, 1, 'not before the interval');
  s.clock.advance(1);
  await eventually(() => s.answer.queries === 2);
  await new Promise((r) => setImmediate(r));
  s.clock.advance(5_000);
  await eventually(() => s.answer.queries === 3);
  await s.monitor.close();
  s.clock.advance(60_000);
  await new Promise((r) => setImmediate(r));
  t.equal(s.answer.queries, 3, 'none after close');
});

void t.test('a GPU missing from the answer, one nvidia-smi cannot reach, and a failed query', async (t) => {
  const s = setup(t);
  await s.monitor.start();
  s.answer.result = { samples: [{ ...s.readings[0]! }], unreachable: [], failure: undefined };
  await s.monitor.check();
  t.match(s.monitor.healthOf(UUIDS[1]!), { healthy: false, temperatureC: -1, problems: [/missing from nvidia-smi's answer \(fallen off the bus\?\)/] });
  s.answer.result = { samples: [{ ...s.readings[0]! }], unreachable: [{ pciBusId: '00000000:0F:00.0', message: 'Unknown Error' }], failure: undefined };
  await s.monitor.check();
  t.match(s.monitor.healthOf(UUIDS[1]!)?.problems, [/nvidia-smi cannot reach it \(Unknown Error\)/]);
  s.answer.result = { samples: [], unreachable: [], failure: 'exit 9: NVIDIA-SMI has failed' };
  await s.monitor.check();
  t.same(s.monitor.current().map((h) => h.healthy), [false, false], 'no GPU can be vouched for');
  t.match(s.monitor.healthOf(UUIDS[0]!)?.problems, [/nvidia-smi could not check it: exit 9/]);
});

void t.test('XIDs from the kernel log: what was there before start is skipped; fatal ones stick, application ones are recorded', async (t) => {
  const dir = t.testdir();
  const kmsg = path.join(dir, 'kmsg');
  fs.writeFileSync(kmsg, '4,10,1000,-;NVRM: Xid (PCI:0000:07:00): 79, pid=1, GPU has fallen off the bus.\n');
  const s = setup(t, { kernelLog: kmsg });
  await s.monitor.start();
  t.same(s.monitor.current().map((h) => [h.healthy, h.xids]), [[true, []], [true, []]], 'an XID from before the start is not counted');

  fs.appendFileSync(kmsg, [
    '6,11,2000,-;NVRM: GPU at PCI:0000:0f:00: GPU-a1b2c3d4-e5f6-0718-293a-4b5c6d7e8f90',
    '4,12,2001,-;NVRM: Xid (PCI:0000:0f:00): 13, pid=4242, name=python, Graphics Exception: ESR 0x405840=0x3c000000',
    ' SUBSYSTEM=pci',
    '4,13,2002,-;NVRM: Xid (PCI:0000:07:00): 48, pid=4243, name=python, An uncorrectable double bit error (DBE) has been detected',
    '4,14,2003,-;NVRM: Xid (PCI:0000:c1:00): 79, pid=1, GPU has fallen off the bus.',
    '4,15,2004,-;NVRM: Xid (PCI:0000:07:00): 4',
  ].join('\n'));
  await s.monitor.check();
  t.match(s.monitor.healthOf(UUIDS[0]!), { healthy: false, xids: [48], problems: [/Xid 48 \(double-bit ECC error\)/] }, 'a half-written line waits for its end');
  t.match(s.monitor.healthOf(UUIDS[1]!), { healthy: true, xids: [13] }, 'an application XID is recorded only');
  t.match(s.logs.filter((l) => l.xid !== undefined), [
    { level: 30, xid: 13, msg: /not a GPU fault/ },
    { level: 40, xid: 48, msg: /fatal Xid/ },
    { level: 40, xid: 79, msg: /not one of this node's GPUs/ },
  ]);

  fs.appendFileSync(kmsg, '3, pid=5, Ch 00000010\n');
  await s.monitor.check();
  t.same(s.monitor.healthOf(UUIDS[0]!)?.xids, [48, 43], 'the rest of the line arrived');
  t.equal(s.monitor.healthOf(UUIDS[0]!)?.healthy, false, 'a fatal XID stays until the agent restarts, whatever nvidia-smi says');
  t.equal(s.changes.length, 1, 'one change for GPU 0');
});

void t.test('an unreadable kernel log is logged once; health checks go on without XIDs', async (t) => {
  const s = setup(t, { kernelLog: path.join(t.testdir(), 'no-kmsg-here') });
  await s.monitor.start();
  await s.monitor.check();
  t.equal(s.logs.filter((l) => /cannot read the kernel log/.test(l.msg)).length, 1);
  t.same(s.monitor.current().map((h) => h.healthy), [true, true]);
});

void t.test('gpuHealth configuration: defaults, file values and errors', (t) => {
  const dir = t.testdir({
    'defaults.yaml': '',
    'set.yaml': 'gpuHealth:\n  intervalSeconds: 5\n  maxTemperatureC: 85\n  maxUncorrectedEcc: 2\n  kernelLog: logs/kmsg\n  fatalXids: [79, 48]\n',
    'off.yaml': 'gpuHealth:\n  kernelLog: ""\n',
    'bad.yaml': 'gpuHealth:\n  intervalSeconds: 0\n  maxTemperatureC: 90.5\n  maxUncorrectedEcc: -1\n  fatalXids: [seventy-nine]\n  interval: 3\n',
  });
  const load = (f: string) => loadAgentConfig({ file: path.join(dir, f), env: {}, cwd: dir });
  t.same(load('defaults.yaml').gpuHealth, { intervalSeconds: 30, maxTemperatureC: 90, maxUncorrectedEcc: 0, kernelLog: '/dev/kmsg', fatalXids: [48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120] });
  t.same(load('set.yaml').gpuHealth, { intervalSeconds: 5, maxTemperatureC: 85, maxUncorrectedEcc: 2, kernelLog: path.join(dir, 'logs/kmsg'), fatalXids: [79, 48] });
  t.equal(load('off.yaml').gpuHealth?.kernelLog, '', 'an empty kernelLog reads no XIDs');
  t.throws(() => load('bad.yaml'), {
    code: 'CONFIG_INVALID',
    message: /gpuHealth\.intervalSeconds: must be at least 0\.1 seconds[\s\S]*gpuHealth\.maxTemperatureC: must be whole degrees Celsius[\s\S]*gpuHealth\.maxUncorrectedEcc: must not be negative[\s\S]*gpuHealth\.fatalXids\[0\]: must be whole XID codes[\s\S]*gpuHealth: unknown field "interval"/,
  });
  t.end();
});
