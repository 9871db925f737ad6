// What the node offers, reported to the coordinator when the agent registers:
// CPU, memory, OS, the disk holding the work root, and the GPUs.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { Systeminformation } from 'systeminformation';
import type { Logger } from '../../util/logger.ts';
import { queryGpus, type GpuInfo } from './gpus.ts';

export type { GpuInfo } from './gpus.ts';

/** The shape of the Inventory message in proto/stevedore/v1/common.proto. */
export interface InventoryInfo {
  hostname: string;
  cpuModel: string;
  /** Logical cores. */
  cpuCores: number;
  memoryBytes: number;
  /** Bytes available to the agent on the file system holding the work root. */
  diskFreeBytes: number;
  diskTotalBytes: number;
  /** Distribution and release, e.g. "Debian GNU/Linux 12". */
  os: string;
  kernel: string;
  /** Machine architecture as `uname -m` prints it, e.g. x86_64, aarch64. */
  arch: string;
  gpus: GpuInfo[];
}

export interface CollectInventoryOptions {
  workRoot: string;
  nvidiaSmiPath: string;
  logger?: Logger;
  /** Bound on each systeminformation call; past it the agent falls back to what Node knows. Default 2 s. */
  probeTimeoutMs?: number;
  gpuTimeoutMs?: number;
  /** The systeminformation calls; tests pass slow or failing ones. */
  systemProbes?: SystemProbes;
}

const DEFAULT_PROBE_TIMEOUT_MS = 2000;

/** Resolves to the probe's answer, or to undefined when it fails or takes longer than `ms`. */
async function probe<T>(name: string, ms: number, fn: () => Promise<T>, logger: Logger | undefined): Promise<T | undefined> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    const result = await Promise.race([fn(), late]);
    const tookMs = Date.now() - started;
    if (result === undefined) logger?.warn({ probe: name, timeoutMs: ms }, 'host probe is slow; using what Node.js reports instead');
    else logger?.debug({ probe: name, tookMs }, 'host probe done');
    return result;
  } catch (err) {
    logger?.warn({ probe: name, err }, 'host probe failed; using what Node.js reports instead');
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** The nearest existing directory at or above `dir` (the work root may not exist yet). */
function existingAncestor(dir: string): string {
  let current = path.resolve(dir);
  for (;;) {
    if (fs.existsSync(current)) return current;
    const parent = path.dirname(current);
    if (parent === current) return current;
    current = parent;
  }
}

async function diskOf(dir: string): Promise<{ free: number; total: number }> {
  const stats = await fs.promises.statfs(existingAncestor(dir));
  return { free: stats.bavail * stats.bsize, total: stats.blocks * stats.bsize };
}

/** The three systeminformation calls the inventory makes. */
export interface SystemProbes {
  cpu(): Promise<Systeminformation.CpuData>;
  mem(): Promise<Systeminformation.MemData>;
  osInfo(): Promise<Systeminformation.OsData>;
}

let loadedProbes: SystemProbes | undefined;

/**
 * systeminformation's index loads all twenty of its modules (Wi-Fi, printers,
 * Bluetooth with its vendor table, ...); the agent calls three, so it loads
 * those three files alone, on first use: 2.6 MB less resident memory in a
 * bare process, for the agent's whole life. The inventory test calls them for real, so a release
 * that moves them fails there.
 */
function loadSystemProbes(): SystemProbes {
  if (loadedProbes === undefined) {
    const load = createRequire(import.meta.url);
    loadedProbes = {
      cpu: (load('systeminformation/lib/cpu.js') as Pick<SystemProbes, 'cpu'>).cpu,
      mem: (load('systeminformation/lib/memory.js') as Pick<SystemProbes, 'mem'>).mem,
      osInfo: (load('systeminformation/lib/osinfo.js') as Pick<SystemProbes, 'osInfo'>).osInfo,
    };
  }
  return loadedProbes;
}

/**
 * Collects the inventory. Only cheap systeminformation calls are made (cpu,
 * mem, osInfo), each bounded in time; GPUs come from nvidia-smi (none, with a
 * logged note, on a host without it; GPU_INVENTORY_FAILED when it fails).
 */
export async function collectInventory(opts: CollectInventoryOptions): Promise<InventoryInfo> {
  const ms = opts.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const logger = opts.logger;
  const si = opts.systemProbes ?? loadSystemProbes();
  const [cpu, mem, osInfo, disk, gpus] = await Promise.all([
    probe('cpu', ms, () => si.cpu(), logger),
    probe('mem', ms, () => si.mem(), logger),
    probe('osInfo', ms, () => si.osInfo(), logger),
    diskOf(opts.workRoot),
    queryGpus(opts.nvidiaSmiPath, { ...(opts.gpuTimeoutMs !== undefined && { timeoutMs: opts.gpuTimeoutMs }), ...(logger && { logger }) }),
  ]);
  const nodeCpus = os.cpus();
  const cpuModel = cpu ? [cpu.manufacturer, cpu.brand].filter(Boolean).join(' ') : (nodeCpus[0]?.model ?? '');
  const distro = osInfo ? [osInfo.distro, osInfo.release].filter((s) => s && s !== 'unknown').join(' ') : '';
  return {
    hostname: os.hostname(),
    cpuModel,
    cpuCores: cpu?.cores || os.cpus().length,
    memoryBytes: mem?.total || os.totalmem(),
    diskFreeBytes: disk.free,
    diskTotalBytes: disk.total,
    os: distro || `${os.type()} ${os.release()}`,
    kernel: osInfo?.kernel || os.release(),
    arch: os.machine(),
    gpus,
  };
}
