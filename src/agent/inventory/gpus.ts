// The host's NVIDIA GPUs, as nvidia-smi reports them. systeminformation cannot
// be used for this: on Linux it reports neither GPU UUIDs nor indexes, and the
// UUID is what jobs are pinned to.
import { execFile } from 'node:child_process';
import { StevedoreError } from '../../util/errors.ts';
import type { Logger } from '../../util/logger.ts';

/** One GPU; the shape of the Gpu message in proto/stevedore/v1/common.proto. */
export interface GpuInfo {
  index: number;
  uuid: string;
  name: string;
  /** memory.total in MiB; 0 when nvidia-smi reports it as not available. */
  memoryMib: number;
  /** '' when not available. */
  driverVersion: string;
  /** domain:bus:device.function, e.g. 00000000:07:00.0; '' when not available. */
  pciBusId: string;
}

export interface GpuQueryOptions {
  /** Default 10 s. */
  timeoutMs?: number;
  /** Where queryGpus() logs why a host has no GPUs. */
  logger?: Logger;
}

export interface GpuQueryResult {
  gpus: GpuInfo[];
  /** Set when the host is taken to have no GPUs: why (no nvidia-smi, no devices). */
  note: string | undefined;
}

export const GPU_QUERY_FIELDS = ['index', 'uuid', 'name', 'memory.total', 'driver_version', 'pci.bus_id'] as const;
export const DEFAULT_GPU_QUERY_TIMEOUT_MS = 10_000;

const UUID_RE = /^GPU-[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$/;
const MAX_OUTPUT_BYTES = 1024 * 1024;

interface ExecResult {
  error: (Error & { code?: string | number; killed?: boolean; signal?: NodeJS.Signals | null }) | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8', windowsHide: true }, (error, stdout, stderr) => {
      resolve({ error: error as ExecResult['error'], stdout, stderr });
    });
  });
}

/** A bracketed value such as [N/A], [Not Supported], [Unknown Error]: nvidia-smi could not tell. */
function unavailable(value: string): boolean {
  return value.startsWith('[') && value.endsWith(']');
}

function shorten(text: string, max = 200): string {
  return text.length > max ? `${text.slice(0, max)}...` : text;
}

/**
 * Parses the output of `nvidia-smi --query-gpu=index,uuid,name,memory.total,driver_version,pci.bus_id --format=csv,noheader,nounits`.
 * Values are separated by ", "; only the name is free text, so a name with a comma still parses.
 */
export function parseGpuCsv(stdout: string, source = 'nvidia-smi'): GpuInfo[] {
  const gpus: GpuInfo[] = [];
  const lines = stdout.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  for (const line of lines) {
    const bad = (why: string): StevedoreError =>
      new StevedoreError(
        'GPU_INVENTORY_FAILED',
        `${source} printed a line the agent cannot read (${why}): ${JSON.stringify(shorten(line))}; expected "${GPU_QUERY_FIELDS.join(', ')}". Check that it is NVIDIA's nvidia-smi (run it by hand with --query-gpu=${GPU_QUERY_FIELDS.join(',')} --format=csv,noheader,nounits)`,
      );
    const parts = line.split(',').map((p) => p.trim());
    if (parts.length < GPU_QUERY_FIELDS.length) throw bad(`${parts.length} values instead of ${GPU_QUERY_FIELDS.length}`);
    const [indexText, uuid] = parts as [string, string];
    const [memoryText, driver, pci] = parts.slice(-3) as [string, string, string];
    const name = parts.slice(2, -3).join(', ');
    if (!/^\d+$/.test(indexText)) throw bad(`index ${JSON.stringify(indexText)} is not a number`);
    if (!UUID_RE.test(uuid)) throw bad(`${JSON.stringify(uuid)} is not a GPU UUID`);
    let memoryMib = 0;
    if (!unavailable(memoryText)) {
      const m = /^(\d+)(?:\s*MiB)?$/.exec(memoryText);
      if (!m) throw bad(`memory.total ${JSON.stringify(memoryText)} is not a number of MiB`);
      memoryMib = Number(m[1]);
    }
    gpus.push({
      index: Number(indexText),
      uuid,
      name: unavailable(name) ? '' : name,
      memoryMib,
      driverVersion: unavailable(driver) ? '' : driver,
      pciBusId: unavailable(pci) ? '' : pci,
    });
  }
  const seen = new Set<string>();
  for (const gpu of gpus) {
    if (seen.has(gpu.uuid)) throw new StevedoreError('GPU_INVENTORY_FAILED', `${source} listed GPU ${gpu.uuid} twice; check the NVIDIA driver installation`);
    seen.add(gpu.uuid);
  }
  return gpus.sort((a, b) => a.index - b.index);
}

function failureFix(exitCode: number, output: string): string {
  if (exitCode === 9 || /couldn't communicate with the NVIDIA driver/i.test(output)) {
    return 'the NVIDIA kernel driver is not loaded: check `lsmod | grep nvidia` and `dmesg`, install or rebuild the driver for the running kernel, then restart the agent';
  }
  if (/version mismatch/i.test(output)) {
    return "the driver's kernel module and its library differ (usually after a driver upgrade): reboot the node, then restart the agent";
  }
  if (exitCode === 4) return 'nvidia-smi lacks permission to read the GPUs: run the agent as root or fix the permissions of /dev/nvidia*';
  return 'run nvidia-smi by hand to see the problem, repair the NVIDIA driver installation, then restart the agent';
}

/**
 * Asks nvidia-smi for the GPUs, saying why when there are none: no nvidia-smi
 * (a CPU-only host) or no devices. Anything else that goes wrong is
 * GPU_INVENTORY_FAILED with what to do: a GPU host must not quietly present
 * itself as CPU-only.
 */
export async function queryGpuInventory(nvidiaSmiPath: string, opts: GpuQueryOptions = {}): Promise<GpuQueryResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_GPU_QUERY_TIMEOUT_MS;
  const args = [`--query-gpu=${GPU_QUERY_FIELDS.join(',')}`, '--format=csv,noheader,nounits'];
  const { error, stdout, stderr } = await run(nvidiaSmiPath, args, timeoutMs);
  if (error) {
    const output = (stderr.trim() || stdout.trim()).split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
    if (error.code === 'ENOENT') {
      const where = nvidiaSmiPath.includes('/') ? `at ${nvidiaSmiPath}` : `named ${nvidiaSmiPath} on PATH`;
      return {
        gpus: [],
        note: `no nvidia-smi ${where}: this host offers no GPUs. On a GPU host, install the NVIDIA driver or point nvidiaSmiPath (--nvidia-smi, STEVEDORE_NVIDIA_SMI) at nvidia-smi`,
      };
    }
    if (error.killed) {
      throw new StevedoreError(
        'GPU_INVENTORY_FAILED',
        `${nvidiaSmiPath} did not answer within ${timeoutMs / 1000} s: the NVIDIA driver may be hung. Check \`dmesg\` for Xid errors, reset the GPUs or reboot the node, then restart the agent`,
        { cause: error },
      );
    }
    if (error.signal) {
      throw new StevedoreError(
        'GPU_INVENTORY_FAILED',
        `${nvidiaSmiPath} was killed by ${error.signal}${output ? `: ${shorten(output, 500)}` : ''}. ${failureFix(-1, output)}`,
        { cause: error },
      );
    }
    if (typeof error.code === 'number') {
      if (error.code === 6 || /^No devices were found/i.test(output)) {
        return { gpus: [], note: `${nvidiaSmiPath} found no GPUs ("${shorten(output)}"): this host offers no GPUs. If it has some, check \`lspci | grep -i nvidia\` and \`dmesg\`` };
      }
      throw new StevedoreError(
        'GPU_INVENTORY_FAILED',
        `${nvidiaSmiPath} failed (exit ${error.code}): ${shorten(output, 500) || 'no output'}. ${failureFix(error.code, output)}`,
        { cause: error },
      );
    }
    throw new StevedoreError(
      'GPU_INVENTORY_FAILED',
      `cannot run ${nvidiaSmiPath} (${String(error.code ?? error.message)}): ${error.code === 'EACCES' ? 'make it executable by the agent' : 'check nvidiaSmiPath (--nvidia-smi, STEVEDORE_NVIDIA_SMI)'}`,
      { cause: error },
    );
  }
  const gpus = parseGpuCsv(stdout, nvidiaSmiPath);
  if (gpus.length === 0) return { gpus, note: `${nvidiaSmiPath} listed no GPUs: this host offers no GPUs` };
  return { gpus, note: undefined };
}

/** The host's GPUs; [] on a host without nvidia-smi (the reason is logged at info). */
export async function queryGpus(nvidiaSmiPath: string, opts: GpuQueryOptions = {}): Promise<GpuInfo[]> {
  const { gpus, note } = await queryGpuInventory(nvidiaSmiPath, opts);
  if (note !== undefined) opts.logger?.info({ nvidiaSmiPath }, note);
  return gpus;
}
