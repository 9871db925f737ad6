// Checks the health of every GPU of the inventory on a timer: nvidia-smi's
// answer, and the XIDs the driver wrote to the kernel log since the agent
// started. Keeps the current health per GPU UUID and a log of changes; a
// change is logged once (warn when a GPU turns unhealthy) and handed to
// onChange, not repeated per check.
import fs from 'node:fs';
import type { GpuHealth } from '../gen/stevedore/v1/GpuHealth.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import {
  assessGpuHealth, GPU_HEALTH_FIELDS, normalizePciBusId, parseXidLine, queryGpuHealth, xidMeaning,
  type GpuHealthQueryResult, type GpuHealthThresholds, type GpuProblem,
} from './inventory/gpu-health.ts';
import type { GpuInfo } from './inventory/gpus.ts';

/** The agent's gpuHealth settings (docs/configuration.md). */
export interface GpuHealthConfig {
  intervalSeconds: number;
  /** Unhealthy at or above this temperature. */
  maxTemperatureC: number;
  /** Unhealthy when uncorrected volatile ECC errors exceed this. */
  maxUncorrectedEcc: number;
  /** Where the driver's XIDs are read; '' reads none. */
  kernelLog: string;
  fatalXids: number[];
}

/** One change of a GPU's health. */
export interface GpuHealthChange {
  uuid: string;
  index: number;
  atMs: number;
  healthy: boolean;
  problems: string[];
  /** undefined for the first check. */
  wasHealthy: boolean | undefined;
}

export interface GpuHealthMonitorOptions {
  gpus: readonly GpuInfo[];
  config: GpuHealthConfig;
  nvidiaSmiPath: string;
  clock: Clock;
  logger: Logger;
  /** One health query; default runs nvidia-smi (queryGpuHealth). */
  query?: () => Promise<GpuHealthQueryResult>;
  /** Called after a check in which at least one GPU's health changed. */
  onChange?: (changes: GpuHealthChange[]) => void;
}

interface GpuState {
  gpu: GpuInfo;
  health: GpuHealth & { uuid: string; healthy: boolean; problems: string[]; xids: number[] };
  kinds: string;
  checked: boolean;
}

const MAX_CHANGES = 200;
const KMSG_RECORD_BYTES = 16 * 1024;

export class GpuHealthMonitor {
  private readonly opts: GpuHealthMonitorOptions;
  private readonly log: Logger;
  private readonly states = new Map<string, GpuState>();
  private readonly byBus = new Map<string, GpuState>();
  private readonly limits: GpuHealthThresholds;
  private readonly query: () => Promise<GpuHealthQueryResult>;
  private readonly changeLog: GpuHealthChange[] = [];
  private readonly kernelLog: KernelLogReader | undefined;
  private timer: Timer | undefined;
  private running: Promise<GpuHealth[]> | undefined;
  private closed = false;
  private readonly unknownBuses = new Set<string>();

  constructor(opts: GpuHealthMonitorOptions) {
    this.opts = opts;
    this.log = opts.logger.child({ component: 'gpu-health' });
    this.limits = { maxTemperatureC: opts.config.maxTemperatureC, maxUncorrectedEcc: opts.config.maxUncorrectedEcc, fatalXids: opts.config.fatalXids };
    // Shared by every query: a field the driver refused once is not asked again.
    const fields = [...GPU_HEALTH_FIELDS];
    this.query = opts.query ?? (() => queryGpuHealth(opts.nvidiaSmiPath, {
      fields,
      onFieldDropped: (field) => this.log.info({ field }, 'nvidia-smi does not know this health field (older driver); checking without it'),
    }));
    for (const gpu of opts.gpus) {
      const state: GpuState = {
        gpu,
        health: { uuid: gpu.uuid, healthy: true, problems: [], temperatureC: -1, eccUncorrectedVolatile: 0, xids: [], checkedMs: 0 },
        kinds: '',
        checked: false,
      };
      this.states.set(gpu.uuid, state);
      const bus = normalizePciBusId(gpu.pciBusId);
      if (bus) this.byBus.set(bus, state);
    }
    if (opts.config.kernelLog !== '' && opts.gpus.length > 0) this.kernelLog = new KernelLogReader(opts.config.kernelLog, this.log);
  }

  /** Skips what the kernel log already holds, runs the first check, then checks every intervalSeconds. */
  async start(): Promise<GpuHealth[]> {
    this.kernelLog?.open();
    const first = await this.check();
    this.schedule();
    return first;
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer = this.opts.clock.setTimeout(() => {
      void this.check().finally(() => this.schedule());
    }, this.opts.config.intervalSeconds * 1000);
  }

  /** Checks every GPU now (a check already under way is joined); never throws. */
  check(): Promise<GpuHealth[]> {
    this.running ??= this.runCheck().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async runCheck(): Promise<GpuHealth[]> {
    if (this.states.size === 0) return [];
    this.readXids();
    let result: GpuHealthQueryResult;
    try {
      result = await this.query();
    } catch (err) {
      result = { samples: [], unreachable: [], failure: messageOf(err) };
    }
    const now = this.opts.clock.now();
    const samples = new Map(result.samples.map((s) => [s.uuid, s]));
    const unreachable = new Map(result.unreachable.map((u) => [normalizePciBusId(u.pciBusId), u.message]));
    const changes: GpuHealthChange[] = [];
    for (const state of this.states.values()) {
      const sample = samples.get(state.gpu.uuid);
      const assessment = assessGpuHealth(
        { gpu: state.gpu, sample, unreachable: unreachable.get(normalizePciBusId(state.gpu.pciBusId)), queryFailure: result.failure, xids: state.health.xids },
        this.limits,
      );
      const h = state.health;
      const wasHealthy = state.checked ? h.healthy : undefined;
      const kinds = kindsOf(assessment.problems);
      h.healthy = assessment.healthy;
      h.problems = assessment.problems.map((p) => p.message);
      h.temperatureC = sample?.temperatureC ?? -1;
      h.eccUncorrectedVolatile = sample?.eccUncorrectedVolatile ?? 0;
      h.checkedMs = now;
      const changed = !state.checked ? !assessment.healthy : kinds !== state.kinds;
      state.kinds = kinds;
      state.checked = true;
      if (!changed) continue;
      const change: GpuHealthChange = { uuid: state.gpu.uuid, index: state.gpu.index, atMs: now, healthy: h.healthy, problems: [...h.problems], wasHealthy };
      changes.push(change);
      this.changeLog.push(change);
      if (this.changeLog.length > MAX_CHANGES) this.changeLog.shift();
      const fields = { gpu: state.gpu.index, uuid: state.gpu.uuid, pciBusId: state.gpu.pciBusId, problems: h.problems };
      if (!h.healthy) this.log.warn(fields, 'GPU is not healthy: it takes no new jobs; running jobs keep it');
      else this.log.info(fields, 'GPU is healthy again: it takes new jobs');
    }
    if (changes.length > 0 && this.opts.onChange) {
      try {
        this.opts.onChange(changes);
      } catch (err) {
        this.log.error({ err }, 'reporting a GPU health change failed');
      }
    }
    return this.current();
  }

  /** New XIDs from the kernel log, each recorded against its GPU. */
  private readXids(): void {
    if (!this.kernelLog) return;
    for (const line of this.kernelLog.readNew()) {
      const rec = parseXidLine(line);
      if (!rec) continue;
      const state = this.byBus.get(rec.pciBusId);
      if (!state) {
        if (!this.unknownBuses.has(rec.pciBusId)) {
          this.unknownBuses.add(rec.pciBusId);
          this.log.warn({ pciBusId: rec.pciBusId, xid: rec.xid, detail: rec.detail }, 'Xid for a PCI device that is not one of this node\'s GPUs; ignored');
        }
        continue;
      }
      const fatal = this.limits.fatalXids.includes(rec.xid);
      const fields = { gpu: state.gpu.index, uuid: state.gpu.uuid, pciBusId: state.gpu.pciBusId, xid: rec.xid, meaning: xidMeaning(rec.xid), detail: rec.detail };
      if (fatal) this.log.warn(fields, 'fatal Xid: the GPU is unhealthy until it is reset and the agent restarted');
      else this.log.info(fields, 'Xid recorded (not a GPU fault)');
      if (!state.health.xids.includes(rec.xid)) state.health.xids.push(rec.xid);
    }
  }

  /** The health of every GPU, in inventory order (as sent in heartbeats). Not checked yet: healthy with checkedMs 0. */
  current(): GpuHealth[] {
    return [...this.states.values()].map((s) => ({ ...s.health, problems: [...s.health.problems], xids: [...s.health.xids] }));
  }

  healthOf(uuid: string): GpuHealth | undefined {
    const s = this.states.get(uuid);
    return s ? { ...s.health, problems: [...s.health.problems], xids: [...s.health.xids] } : undefined;
  }

  /** Why the GPU must not get a new job; undefined when it is healthy (or unknown to the monitor). */
  unhealthyReason(uuid: string): string | undefined {
    const s = this.states.get(uuid);
    if (!s || s.health.healthy) return undefined;
    return s.health.problems.join('; ');
  }

  /** The changes seen since the agent started (the last 200). */
  changes(): GpuHealthChange[] {
    return [...this.changeLog];
  }

  /** Stops checking; safe twice. Waits for a check under way. */
  async close(): Promise<void> {
    this.closed = true;
    this.timer?.cancel();
    await this.running?.catch(() => undefined);
    this.kernelLog?.close();
  }
}

function kindsOf(problems: readonly GpuProblem[]): string {
  return problems.map((p) => p.kind).sort().join(',');
}

/**
 * Follows the kernel log: /dev/kmsg, where each read() returns one record
 * "prio,seq,ts,flags;message", or a plain file of lines. Opened without
 * blocking; what it holds at open is skipped (XIDs from before the agent
 * started are not counted). When it cannot be read, that is logged once and
 * no XIDs are read.
 */
export class KernelLogReader {
  private readonly file: string;
  private readonly log: Logger;
  private fd: number | undefined;
  private partial = '';
  private failed = false;
  private readonly buffer = Buffer.alloc(KMSG_RECORD_BYTES);

  constructor(file: string, log: Logger) {
    this.file = file;
    this.log = log;
  }

  open(): void {
    if (this.fd !== undefined || this.failed) return;
    try {
      this.fd = fs.openSync(this.file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (err) {
      this.fail(err);
      return;
    }
    this.readNew();
    this.partial = '';
  }

  /** Complete lines written since the last call. */
  readNew(): string[] {
    if (this.fd === undefined) return [];
    let text = this.partial;
    for (;;) {
      let n: number;
      try {
        n = fs.readSync(this.fd, this.buffer, 0, this.buffer.length, null);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') break;
        // Records were overwritten before they were read: go on with the next.
        if (code === 'EPIPE') continue;
        this.fail(err);
        break;
      }
      if (n === 0) break;
      text += this.buffer.toString('utf8', 0, n);
    }
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    // Continuation lines of a kmsg record (" SUBSYSTEM=pci") start with a space.
    return lines.filter((l) => l !== '' && !l.startsWith(' '));
  }

  private fail(err: unknown): void {
    this.failed = true;
    const code = (err as NodeJS.ErrnoException).code;
    this.log.warn({ kernelLog: this.file, code, err: messageOf(err) }, 'cannot read the kernel log: GPU Xid errors are not watched (run the agent as root, or set gpuHealth.kernelLog)');
    this.close();
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fs.closeSync(fd);
    } catch {
      // already closed
    }
  }
}
