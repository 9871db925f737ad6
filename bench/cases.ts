// Runs the subjects of one benchmark case side by side and turns the samples
// into a BenchCase: runs are interleaved (A B C D, then B C D A, ...), so that
// a noisy moment on the shared machine hits every subject alike and no subject
// always goes first.
import { figure, ratio, type BenchCase, type Figure, type Subject } from './types.ts';
import type { Measurement } from './peers.ts';

export const STEVEDORE = 'stevedore';
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

export interface Trial {
  subject: string;
  version?: string;
  /** One measured run; `bytes` is what was moved. */
  run: () => Promise<Measurement & { bytes: number }>;
  /** Cleanup after each run (not measured). */
  after?: () => void | Promise<void>;
}

export interface Sample {
  wallS: number;
  cpuS: number;
  maxRssMiB: number;
  bytes: number;
}

export async function interleave(trials: Trial[], runs: number, log: (line: string) => void, label: string): Promise<Map<string, Sample[]>> {
  const samples = new Map<string, Sample[]>(trials.map((t) => [t.subject, []]));
  for (let r = 0; r < runs; r++) {
    for (let i = 0; i < trials.length; i++) {
      const trial = trials[(i + r) % trials.length]!;
      const m = await trial.run();
      try {
        samples.get(trial.subject)!.push({ wallS: m.wallS, cpuS: m.cpuS, maxRssMiB: m.maxRssMiB, bytes: m.bytes });
      } finally {
        await trial.after?.();
      }
      log(`${label}: run ${r + 1}/${runs} ${trial.subject}: ${m.wallS.toFixed(2)} s, ${(m.bytes / MIB / m.wallS).toFixed(0)} MiB/s, ${m.cpuS.toFixed(2)} CPU s, ${m.maxRssMiB.toFixed(0)} MiB RSS`);
    }
  }
  return samples;
}

export const FIGURE = {
  wall: 'wall time',
  throughput: 'throughput',
  cpu: 'CPU seconds per GiB',
  rss: 'peak RSS',
} as const;

export function figuresOf(samples: Sample[], withRss = true): Figure[] {
  const out = [
    figure(FIGURE.wall, 's', samples.map((s) => s.wallS), 'lower'),
    figure(FIGURE.throughput, 'MiB/s', samples.map((s) => s.bytes / MIB / s.wallS), 'higher'),
    figure(FIGURE.cpu, 'CPU s/GiB', samples.map((s) => s.cpuS / (s.bytes / GIB)), 'lower'),
  ];
  if (withRss) out.push(figure(FIGURE.rss, 'MiB', samples.map((s) => s.maxRssMiB), 'lower'));
  return out;
}

export function figureOf(subject: Subject | undefined, name: string): Figure | undefined {
  return subject?.figures.find((f) => f.name === name);
}

/** Stevedore's ratio over every peer for the given figures (> 1: Stevedore is better). */
export function ratiosOf(subjects: Subject[], peers: string[], figures: string[]): BenchCase['ratios'] {
  const own = subjects.find((s) => s.name === STEVEDORE);
  const out: BenchCase['ratios'] = [];
  for (const peer of peers) {
    const other = subjects.find((s) => s.name === peer);
    for (const name of figures) {
      const a = figureOf(own, name);
      const b = figureOf(other, name);
      if (a && b) out.push({ figure: name, peer, ratio: ratio(a, b) });
    }
  }
  return out;
}

/** The peer with the best median of a figure. */
export function bestPeer(subjects: Subject[], peers: string[], name: string): { subject: Subject; figure: Figure } | undefined {
  let best: { subject: Subject; figure: Figure } | undefined;
  for (const s of subjects) {
    if (!peers.includes(s.name)) continue;
    const f = figureOf(s, name);
    if (!f) continue;
    const better = best === undefined || (f.better === 'lower' ? f.median < best.figure.median : f.median > best.figure.median);
    if (better) best = { subject: s, figure: f };
  }
  return best;
}

export function fmt(n: number, digits = 2): string {
  if (!Number.isFinite(n)) return String(n);
  return n >= 100 ? n.toFixed(0) : n.toFixed(digits);
}
