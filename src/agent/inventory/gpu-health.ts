// What nvidia-smi and the kernel log say about the health of each GPU, and
// the rules that turn it into healthy or not. I/O is limited to one run of
// nvidia-smi (queryGpuHealth); the rest is pure so that it can be tested on
// realistic output.
import { execFile } from 'node:child_process';
import type { GpuInfo } from './gpus.ts';

/**
 * The fields asked of nvidia-smi (`nvidia-smi --help-query-gpu`). Fields an
 * older driver does not know are dropped after its first refusal; values a GPU
 * cannot tell ([N/A], [Not Supported], e.g. ECC on a GPU without ECC) are not
 * problems.
 */
export const GPU_HEALTH_FIELDS = [
  'uuid',
  'pci.bus_id',
  'temperature.gpu',
  'ecc.errors.uncorrected.volatile.total',
  'retired_pages.pending',
  'remapped_rows.pending',
  'remapped_rows.failure',
] as const;
export type GpuHealthField = (typeof GPU_HEALTH_FIELDS)[number];

/**
 * XIDs that mean the GPU needs a reset or has a hardware fault (NVIDIA's XID
 * catalog): 48 double-bit ECC error, 62 internal micro-controller halt, 63/64
 * ECC page retirement or row remapping event / failure, 74 NVLink error, 79
 * fallen off the bus, 92 high single-bit ECC rate, 94/95 contained /
 * uncontained ECC error, 119/120 GSP error.
 */
export const DEFAULT_FATAL_XIDS: readonly number[] = [48, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120];

/** XIDs caused by the application (13 graphics engine exception, 31 MMU fault, 43 channel stopped, 45 preemptive cleanup): recorded, not a GPU fault. */
export const APPLICATION_XIDS: readonly number[] = [13, 31, 43, 45];

/** One GPU's line of the health query. undefined: nvidia-smi could not tell. */
export interface GpuHealthSample {
  uuid: string;
  /** As nvidia-smi prints it, e.g. 00000000:07:00.0. */
  pciBusId: string;
  temperatureC: number | undefined;
  eccUncorrectedVolatile: number | undefined;
  retiredPagesPending: boolean | undefined;
  remappedRowsPending: boolean | undefined;
  remappedRowsFailure: boolean | undefined;
  /** Fields that answered an error instead of a value, e.g. "temperature.gpu: [GPU requires reset]". */
  errors: string[];
}

export interface GpuHealthQueryResult {
  samples: GpuHealthSample[];
  /** GPUs nvidia-smi names but cannot reach ("Unable to determine the device handle for GPU ..."). */
  unreachable: { pciBusId: string; message: string }[];
  /** Set when nvidia-smi failed as a whole (not loaded, hung, not runnable): no GPU was checked. */
  failure: string | undefined;
}

/** Limits a GPU must stay within to be healthy. */
export interface GpuHealthThresholds {
  /** Unhealthy at or above this GPU temperature. */
  maxTemperatureC: number;
  /** Unhealthy when uncorrected volatile ECC errors exceed this. */
  maxUncorrectedEcc: number;
  fatalXids: readonly number[];
}

/** One reason a GPU is not healthy: `kind` is stable across checks (a change of health is a change of kinds). */
export interface GpuProblem {
  kind: string;
  message: string;
}

export interface GpuHealthAssessment {
  healthy: boolean;
  problems: GpuProblem[];
}

/** A value nvidia-smi could not give, in brackets. */
function bracketed(value: string): boolean {
  return value.startsWith('[') && value.endsWith(']');
}

/** Bracketed values that only mean "not available here"; any other bracketed value is an error. */
const NOT_AVAILABLE = /^\[(N\/A|Not Supported|Not Available|Insufficient Permissions)\]$/i;

/**
 * A PCI address in one form whatever the source: nvidia-smi prints
 * 00000000:07:00.0 (32-bit domain), the kernel log 0000:07:00 (16-bit domain,
 * no function). Returns domain:bus:device in lower case, e.g. 0000:07:00;
 * '' when the text is not a PCI address.
 */
export function normalizePciBusId(id: string): string {
  const m = /^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})(?:\.[0-7])?$/.exec(id.trim());
  if (!m) return '';
  const domain = parseInt(m[1] ?? '0', 16).toString(16).padStart(4, '0');
  return `${domain}:${(m[2] ?? '').toLowerCase().padStart(2, '0')}:${(m[3] ?? '').toLowerCase().padStart(2, '0')}`;
}

function yesNo(value: string): boolean | undefined {
  if (/^yes$/i.test(value)) return true;
  if (/^no$/i.test(value)) return false;
  return undefined;
}

const UNREACHABLE_RE = /^Unable to determine the device handle for GPU\s*([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+(?:\.[0-9A-Fa-f])?)\s*:\s*(.*)$/i;
const UUID_RE = /^GPU-[0-9a-fA-F-]+$/;

/**
 * Parses `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`.
 * Lines that are not a GPU's values are skipped, except the ones naming a GPU
 * nvidia-smi cannot reach, which it prints between the others.
 */
export function parseGpuHealthCsv(stdout: string, fields: readonly string[] = GPU_HEALTH_FIELDS): Pick<GpuHealthQueryResult, 'samples' | 'unreachable'> {
  const samples: GpuHealthSample[] = [];
  const unreachable: GpuHealthQueryResult['unreachable'] = [];
  for (const raw of stdout.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '') continue;
    const lost = UNREACHABLE_RE.exec(line);
    if (lost) {
      unreachable.push({ pciBusId: lost[1] ?? '', message: (lost[2] ?? '').trim() || 'no reason given' });
      continue;
    }
    const values = line.split(',').map((v) => v.trim());
    if (values.length !== fields.length) continue;
    const get = (field: GpuHealthField): string | undefined => {
      const i = fields.indexOf(field);
      return i === -1 ? undefined : values[i];
    };
    const uuid = get('uuid') ?? '';
    if (!UUID_RE.test(uuid)) continue;
    const sample: GpuHealthSample = {
      uuid,
      pciBusId: '',
      temperatureC: undefined,
      eccUncorrectedVolatile: undefined,
      retiredPagesPending: undefined,
      remappedRowsPending: undefined,
      remappedRowsFailure: undefined,
      errors: [],
    };
    for (const field of fields) {
      const value = get(field as GpuHealthField) ?? '';
      if (field === 'uuid') continue;
      if (bracketed(value)) {
        if (!NOT_AVAILABLE.test(value)) sample.errors.push(`${field}: ${value}`);
        continue;
      }
      switch (field) {
        case 'pci.bus_id':
          sample.pciBusId = value;
          break;
        case 'temperature.gpu': {
          const n = Number(value);
          if (value !== '' && Number.isFinite(n)) sample.temperatureC = n;
          break;
        }
        case 'ecc.errors.uncorrected.volatile.total': {
          if (/^\d+$/.test(value)) sample.eccUncorrectedVolatile = Number(value);
          break;
        }
        case 'retired_pages.pending':
          sample.retiredPagesPending = yesNo(value);
          break;
        case 'remapped_rows.pending':
          sample.remappedRowsPending = yesNo(value);
          break;
        case 'remapped_rows.failure':
          sample.remappedRowsFailure = yesNo(value);
          break;
        default:
          break;
      }
    }
    samples.push(sample);
  }
  return { samples, unreachable };
}

/** One XID the driver wrote to the kernel log. */
export interface XidRecord {
  /** Normalized (normalizePciBusId). */
  pciBusId: string;
  xid: number;
  /** The rest of the driver's line, e.g. "pid=1234, GPU has fallen off the bus." */
  detail: string;
}

const XID_RE = /NVRM: Xid \((?:PCI:)?([0-9A-Fa-f]+:[0-9A-Fa-f]+:[0-9A-Fa-f]+(?:\.[0-9A-Fa-f])?)\): (\d+),?\s*(.*)$/;

/**
 * The XID of one kernel log line, or undefined when the line is not an XID.
 * Takes a /dev/kmsg record ("6,1234,5678901,-;NVRM: Xid (PCI:0000:07:00): 79, pid=..., GPU has fallen off the bus.")
 * as well as a dmesg or journal line ("[ 5.67] NVRM: Xid (PCI:0000:07:00): 79, ...").
 */
export function parseXidLine(line: string): XidRecord | undefined {
  const m = XID_RE.exec(line);
  if (!m) return undefined;
  const pciBusId = normalizePciBusId(m[1] ?? '');
  if (pciBusId === '') return undefined;
  return { pciBusId, xid: Number(m[2]), detail: (m[3] ?? '').trim() };
}

/** What is known about one GPU at one check, for assessGpuHealth. */
export interface GpuHealthInput {
  gpu: GpuInfo;
  /** Its line of the query; undefined when nvidia-smi did not list it. */
  sample: GpuHealthSample | undefined;
  /** Set when nvidia-smi named it but could not reach it. */
  unreachable: string | undefined;
  /** Set when nvidia-smi failed as a whole. */
  queryFailure: string | undefined;
  /** XIDs seen for it since the agent started. */
  xids: readonly number[];
}

/** The rules: which readings make a GPU unhealthy, each with a sentence saying why and what to do. */
export function assessGpuHealth(input: GpuHealthInput, limits: GpuHealthThresholds): GpuHealthAssessment {
  const problems: GpuProblem[] = [];
  const { sample } = input;
  if (input.queryFailure !== undefined) {
    problems.push({ kind: 'query-failed', message: `nvidia-smi could not check it: ${input.queryFailure}` });
  } else if (input.unreachable !== undefined) {
    problems.push({ kind: 'unreachable', message: `nvidia-smi cannot reach it (${input.unreachable}); reset the GPU or reboot the node` });
  } else if (!sample) {
    problems.push({ kind: 'missing', message: `missing from nvidia-smi's answer (fallen off the bus?); check \`dmesg\` for Xid 79, then reset the GPU or reboot the node` });
  }
  if (sample) {
    for (const error of sample.errors) problems.push({ kind: `error:${error.split(':')[0] ?? ''}`, message: `nvidia-smi reports ${error}; reset the GPU or reboot the node` });
    if (sample.eccUncorrectedVolatile !== undefined && sample.eccUncorrectedVolatile > limits.maxUncorrectedEcc) {
      problems.push({
        kind: 'ecc',
        message: `${sample.eccUncorrectedVolatile} uncorrected ECC error${sample.eccUncorrectedVolatile === 1 ? '' : 's'} since the driver loaded (limit ${limits.maxUncorrectedEcc}); the count clears only with a GPU reset (nvidia-smi -r) or a driver reload`,
      });
    }
    if (sample.retiredPagesPending === true) problems.push({ kind: 'retired-pages', message: 'retired memory pages are pending: reset the GPU (nvidia-smi -r) or reboot the node to retire them' });
    if (sample.remappedRowsPending === true) problems.push({ kind: 'remapped-rows', message: 'remapped memory rows are pending: reset the GPU (nvidia-smi -r) or reboot the node to apply them' });
    if (sample.remappedRowsFailure === true) problems.push({ kind: 'remap-failure', message: 'a memory row remapping failed: the GPU needs service' });
    if (sample.temperatureC !== undefined && sample.temperatureC >= limits.maxTemperatureC) {
      problems.push({ kind: 'temperature', message: `temperature ${sample.temperatureC} °C is at or above ${limits.maxTemperatureC} °C; check the node's cooling` });
    }
  }
  const fatal = [...new Set(input.xids.filter((x) => limits.fatalXids.includes(x)))];
  for (const xid of fatal) {
    problems.push({ kind: `xid:${xid}`, message: `the driver reported Xid ${xid} (${xidMeaning(xid)}); reset the GPU or reboot the node, then restart the agent` });
  }
  return { healthy: problems.length === 0, problems };
}

const XID_MEANINGS: Record<number, string> = {
  13: 'graphics engine exception',
  31: 'GPU memory page fault',
  43: 'GPU stopped processing',
  45: 'preemptive cleanup',
  46: 'GPU stopped processing',
  48: 'double-bit ECC error',
  62: 'internal micro-controller halt',
  63: 'ECC page retirement or row remapping event',
  64: 'ECC page retirement or row remapping failure',
  74: 'NVLink error',
  79: 'GPU has fallen off the bus',
  92: 'high single-bit ECC error rate',
  94: 'contained ECC error',
  95: 'uncontained ECC error',
  119: 'GSP RPC timeout',
  120: 'GSP error',
};

/** A short meaning of an XID for log lines and problems. */
export function xidMeaning(xid: number): string {
  return XID_MEANINGS[xid] ?? 'see NVIDIA\'s XID catalog';
}

export interface GpuHealthQueryOptions {
  /** Default 10 s. */
  timeoutMs?: number;
  /** Default GPU_HEALTH_FIELDS; fields the driver refuses are dropped from this list in place. */
  fields?: string[];
  /** Called when a field is dropped because nvidia-smi does not know it. */
  onFieldDropped?: (field: string) => void;
}

const MAX_OUTPUT_BYTES = 1024 * 1024;

interface RunResult {
  error: (Error & { code?: string | number; killed?: boolean; signal?: NodeJS.Signals | null }) | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8', windowsHide: true }, (error, stdout, stderr) => {
      resolve({ error: error as RunResult['error'], stdout, stderr });
    });
  });
}

function oneLine(text: string, max = 300): string {
  const flat = text.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}

/**
 * Runs the health query once. Never throws: a failure of nvidia-smi as a
 * whole is `failure`; a GPU it cannot reach (exit 15 and a line naming it)
 * is in `unreachable` while the other GPUs' lines still count.
 */
export async function queryGpuHealth(nvidiaSmiPath: string, opts: GpuHealthQueryOptions = {}): Promise<GpuHealthQueryResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const fields = opts.fields ?? [...GPU_HEALTH_FIELDS];
  for (;;) {
    const { error, stdout, stderr } = await run(nvidiaSmiPath, [`--query-gpu=${fields.join(',')}`, '--format=csv,noheader,nounits'], timeoutMs);
    const parsed = parseGpuHealthCsv(stdout, fields);
    if (!error) return { ...parsed, failure: undefined };
    const output = oneLine(stdout.trim() ? stdout : stderr);
    const unknown = /Field "([^"]+)" is not a valid field to query/.exec(output);
    if (error.code === 2 && unknown?.[1] && unknown[1] !== 'uuid' && fields.includes(unknown[1])) {
      fields.splice(fields.indexOf(unknown[1]), 1);
      opts.onFieldDropped?.(unknown[1]);
      continue;
    }
    if (parsed.samples.length > 0 || parsed.unreachable.length > 0) return { ...parsed, failure: undefined };
    let failure: string;
    if (error.killed) failure = `it did not answer within ${timeoutMs / 1000} s (a hung driver?)`;
    else if (error.code === 'ENOENT') failure = `${nvidiaSmiPath} is gone`;
    else if (typeof error.code === 'number') failure = `exit ${error.code}: ${output || 'no output'}`;
    else failure = `${String(error.code ?? error.signal ?? error.message)}${output ? `: ${output}` : ''}`;
    return { samples: [], unreachable: [], failure };
  }
}
