// Gives a test host its own GPUs: a copy of the nvidia-smi stand-in
// (test/fixtures/gpu/nvidia-smi) next to a gpus.json describing them. The
// stand-in reads gpus.json on every call: setFakeGpuHealth changes a GPU's
// health while an agent runs.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';

export const FAKE_NVIDIA_SMI = path.resolve(import.meta.dirname, '..', 'fixtures', 'gpu', 'nvidia-smi');

export interface FakeGpu {
  uuid?: string;
  name?: string;
  /** memory.total; null prints [N/A]. Default 81920 (an A100 80GB). */
  memoryMib?: number | null;
  pciBusId?: string;
  serial?: string | null;
  /** Any queried field by its nvidia-smi name, e.g. { 'temperature.gpu': 40 }; null prints [N/A]. */
  fields?: Record<string, string | number | null>;
  /** Left out of nvidia-smi's answers, like a GPU that fell off the bus. */
  missing?: boolean;
  /** nvidia-smi names it as unreachable with this message (and exits 15), e.g. 'Unknown Error'. */
  unreachable?: string;
}

/** A change to one fake GPU's health, see setFakeGpuHealth. */
export interface FakeGpuHealth {
  /** Merged into the GPU's field overrides; undefined removes an override, null prints [N/A]. */
  fields?: Record<string, string | number | null | undefined>;
  missing?: boolean;
  /** null: reachable again. */
  unreachable?: string | null;
}

export interface FakeNvidiaSmiOptions {
  /** Fail like a host whose NVIDIA driver is not loaded (exit 9). */
  broken?: boolean;
  driverVersion?: string;
  /** Answer only after this long, like a hung driver. */
  delayMs?: number;
}

// The bus ids of the eight A100s in a DGX A100.
const DGX_BUS_IDS = ['07', '0F', '47', '4E', '87', '90', 'B7', 'BD'];

/** A UUID formatted like NVIDIA's (GPU-8-4-4-4-12 hex), derived from the directory so that two fake hosts never share one. */
export function fakeGpuUuid(dir: string, index: number): string {
  const h = createHash('sha256').update(`${path.resolve(dir)}\0${index}`).digest('hex');
  return `GPU-${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

function busId(index: number): string {
  const bus = DGX_BUS_IDS[index] ?? (0xc0 + index).toString(16).toUpperCase().padStart(2, '0');
  return `00000000:${bus}:00.0`;
}

/**
 * Writes `<dir>/nvidia-smi` and `<dir>/gpus.json` and returns the script's
 * path. A number gives that many A100-SXM4-80GB GPUs with distinct UUIDs;
 * an array describes each GPU (missing fields get A100-like values).
 * The same dir always gets the same UUIDs, so a restarted test agent keeps its GPUs.
 */
export function writeFakeNvidiaSmi(dir: string, gpus: number | FakeGpu[], opts: FakeNvidiaSmiOptions = {}): string {
  fs.mkdirSync(dir, { recursive: true });
  const list: FakeGpu[] = typeof gpus === 'number' ? Array.from({ length: gpus }, () => ({})) : gpus;
  const fixture = {
    driverVersion: opts.driverVersion ?? '535.129.03',
    broken: opts.broken ?? false,
    delayMs: opts.delayMs ?? 0,
    gpus: list.map((gpu, index) => ({
      index,
      uuid: gpu.uuid ?? fakeGpuUuid(dir, index),
      name: gpu.name ?? 'NVIDIA A100-SXM4-80GB',
      memoryTotalMib: gpu.memoryMib === undefined ? 81920 : gpu.memoryMib,
      pciBusId: gpu.pciBusId ?? busId(index),
      serial: gpu.serial === undefined ? String(1564720004600 + index) : gpu.serial,
      fields: gpu.fields ?? {},
      ...(gpu.missing ? { missing: true } : {}),
      ...(gpu.unreachable ? { unreachable: gpu.unreachable } : {}),
    })),
  };
  const script = path.join(dir, 'nvidia-smi');
  fs.copyFileSync(FAKE_NVIDIA_SMI, script);
  fs.chmodSync(script, 0o755);
  fs.writeFileSync(path.join(dir, 'gpus.json'), `${JSON.stringify(fixture, null, 2)}\n`);
  return script;
}

interface FixtureGpu {
  index: number;
  uuid: string;
  fields?: Record<string, string | number | null>;
  missing?: boolean;
  unreachable?: string;
}

/**
 * Changes the health of GPU `index` of the fake host in `dir` (the directory
 * given to writeFakeNvidiaSmi), e.g. { fields: { 'ecc.errors.uncorrected.volatile.total': 3 } }.
 * The file is replaced atomically, so the stand-in never reads half of it.
 */
export function setFakeGpuHealth(dir: string, index: number, health: FakeGpuHealth): void {
  const file = path.join(dir, 'gpus.json');
  const fixture = JSON.parse(fs.readFileSync(file, 'utf8')) as { gpus: FixtureGpu[] };
  const gpu = fixture.gpus.find((g) => g.index === index);
  if (!gpu) throw new Error(`fake host ${dir} has no GPU ${index}`);
  const fields = { ...(gpu.fields ?? {}) };
  for (const [name, value] of Object.entries(health.fields ?? {})) {
    if (value === undefined) delete fields[name];
    else fields[name] = value;
  }
  gpu.fields = fields;
  if (health.missing !== undefined) gpu.missing = health.missing;
  if (health.unreachable === null) delete gpu.unreachable;
  else if (health.unreachable !== undefined) gpu.unreachable = health.unreachable;
  const temp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(temp, `${JSON.stringify(fixture, null, 2)}\n`);
  fs.renameSync(temp, file);
}
