// docs/BENCHMARKS.md from the BenchResult records, bench/results.json's
// merging (a run of some benchmarks replaces only their records), and a small
// grouped bar plot for throughput figures.
import { PALETTE, escapeXml, formatTick, niceTicks } from './svg.ts';
import type { BenchCase, BenchResult, Figure } from './types.ts';

/** What bench/results.json holds. */
export interface ResultsFile {
  /** When the newest record was measured (ISO). */
  updated: string;
  machine: MachineInfo;
  results: (BenchResult & { measured: string })[];
  /** The last run of every benchmark at once (plain `npm run bench`): when it ended and how long it took. */
  fullRun?: { finished: string; seconds: number };
}

export interface MachineInfo {
  cpus: number;
  cpuModel: string;
  memoryGiB: number;
  node: string;
  os: string;
}

/** Order of the benchmarks in the report (the issue's numbering); others follow by id. */
export const BENCHMARK_ORDER = ['upload', 'time-to-durable', 'drain', 'restore', 'footprint', 'coordinator-scale'];

function orderOf(id: string): number {
  const i = BENCHMARK_ORDER.indexOf(id);
  return i < 0 ? BENCHMARK_ORDER.length : i;
}

/** Replaces the records of `fresh`'s benchmarks in `previous` (by id), keeps the others, sorts them in report order. */
export function mergeResults(previous: ResultsFile | undefined, fresh: BenchResult[], machine: MachineInfo, now: Date, fullRunSeconds?: number): ResultsFile {
  const stamp = now.toISOString();
  const byId = new Map<string, BenchResult & { measured: string }>();
  for (const r of previous?.results ?? []) byId.set(r.id, r);
  for (const r of fresh) byId.set(r.id, { ...r, measured: stamp });
  const results = [...byId.values()].sort((a, b) => orderOf(a.id) - orderOf(b.id) || (a.id < b.id ? -1 : 1));
  const fullRun = fullRunSeconds !== undefined ? { finished: stamp, seconds: Math.round(fullRunSeconds) } : previous?.fullRun;
  return { updated: stamp, machine, results, ...(fullRun ? { fullRun } : {}) };
}

function minutes(seconds: number): string {
  return `${Math.floor(seconds / 60)} min ${String(Math.round(seconds % 60)).padStart(2, '0')} s`;
}

function num(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

function cell(f: Figure | undefined): string {
  if (!f) return '';
  if (f.runs <= 1 || f.min === f.max) return num(f.median);
  return `${num(f.median)} (${num(f.min)}–${num(f.max)})`;
}

function mdEscape(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function caseTable(c: BenchCase): string[] {
  const figureNames: { name: string; unit: string; better: string }[] = [];
  for (const s of c.subjects) for (const f of s.figures) if (!figureNames.some((x) => x.name === f.name)) figureNames.push({ name: f.name, unit: f.unit, better: f.better });
  const runs = Math.max(0, ...c.subjects.flatMap((s) => s.figures.map((f) => f.runs)));
  const over = c.mediansOver ?? `Median over ${runs} run${runs === 1 ? '' : 's'}`;
  const lines = [`### ${mdEscape(c.name)}`, '', `${over} (min–max in brackets).`, ''];
  lines.push(`| subject | version | ${figureNames.map((f) => `${mdEscape(f.name)} (${mdEscape(f.unit)}, ${f.better} is better)`).join(' | ')} |`);
  lines.push(`|---|---|${figureNames.map(() => '---:').join('|')}|`);
  for (const s of c.subjects) {
    lines.push(`| ${mdEscape(s.name)} | ${mdEscape(s.version ?? '')} | ${figureNames.map((f) => cell(s.figures.find((x) => x.name === f.name))).join(' | ')} |`);
  }
  if (c.ratios.length > 0) {
    const peers = [...new Set(c.ratios.map((r) => r.peer))];
    const figs = [...new Set(c.ratios.map((r) => r.figure))];
    lines.push('', 'Stevedore\'s advantage over each peer in this run (> 1 means Stevedore is better):', '');
    lines.push(`| peer | ${figs.map(mdEscape).join(' | ')} |`, `|---|${figs.map(() => '---:').join('|')}|`);
    for (const p of peers) {
      lines.push(`| ${mdEscape(p)} | ${figs.map((f) => { const r = c.ratios.find((x) => x.peer === p && x.figure === f); return r ? `${num(r.ratio)}x` : ''; }).join(' | ')} |`);
    }
  }
  if (c.targets.length > 0) {
    lines.push('', 'Targets:', '');
    for (const t of c.targets) lines.push(`- ${t.met ? 'MET' : 'MISSED'}: ${t.text}: ${t.detail}`);
  }
  lines.push('');
  return lines;
}

/** The Markdown of one benchmark. */
export function renderResult(r: BenchResult & { measured?: string }): string {
  const when = [r.measured !== undefined ? `measured ${r.measured.slice(0, 16).replace('T', ' ')} UTC` : '', r.seconds !== undefined ? `took ${minutes(r.seconds)}` : ''].filter((x) => x !== '');
  const lines = [`## ${r.title}`, '', `Command: \`${r.command}\`${when.length > 0 ? ` (${when.join(', ')})` : ''}`, '', r.method, ''];
  for (const p of r.plots ?? []) lines.push(`![${p}](${p})`, '');
  for (const c of r.cases) lines.push(...caseTable(c));
  if (r.notes !== undefined && r.notes.trim() !== '') lines.push('### Notes', '', r.notes.trim(), '');
  return lines.join('\n');
}

/** docs/BENCHMARKS.md. */
export function renderMarkdown(file: ResultsFile): string {
  const m = file.machine;
  const summary: string[] = [];
  for (const r of file.results) {
    for (const c of r.cases) for (const t of c.targets) summary.push(`| ${mdEscape(r.title)} | ${mdEscape(c.name)} | ${mdEscape(t.text)} | ${t.met ? 'met' : '**missed**'} | ${mdEscape(t.detail)} |`);
  }
  return [
    '# Benchmarks',
    '',
    'Written by `npm run bench` (all benchmarks, or `npm run bench -- --only upload,restore`) from the records in `bench/results.json`; do not edit by hand.',
    `Machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB RAM, ${m.os}, Node.js ${m.node}; loopback only. Last updated ${file.updated.slice(0, 16).replace('T', ' ')} UTC.`,
    'Benchmarks are not timed tests: `npm test` runs a short smoke version of each (test/bench/) so they keep working, and never fails because something is slow.',
    ...(file.fullRun ? [`The last run of all of them (\`npm run bench\`) ended ${file.fullRun.finished.slice(0, 16).replace('T', ' ')} UTC and took ${minutes(file.fullRun.seconds)}.`] : []),
    '',
    ...(summary.length > 0 ? ['## Targets', '', '| benchmark | case | target | result | detail |', '|---|---|---|---|---|', ...summary, ''] : []),
    ...file.results.map(renderResult),
  ].join('\n');
}

export interface BarGroup {
  label: string;
  bars: { subject: string; value: number }[];
}

/** A grouped bar chart (one group per case, one colour per subject), values labelled on the bars. */
export function barPlot(opts: { title: string; unit: string; groups: BarGroup[]; width?: number; height?: number }): string {
  const subjects = [...new Set(opts.groups.flatMap((g) => g.bars.map((b) => b.subject)))];
  const width = opts.width ?? 820;
  const height = opts.height ?? 380;
  const frame = { left: 64, right: width - 16, top: 36, bottom: height - 80 };
  const max = Math.max(1, ...opts.groups.flatMap((g) => g.bars.map((b) => b.value)));
  const ticks = niceTicks(0, max * 1.1);
  const top = Math.max(max * 1.1, ticks.at(-1) ?? max);
  const y = (v: number): number => frame.bottom - (v / top) * (frame.bottom - frame.top);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(opts.title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${escapeXml(opts.title)}</text>`,
  ];
  for (const t of ticks) {
    out.push(`<line x1="${frame.left}" x2="${frame.right}" y1="${y(t).toFixed(1)}" y2="${y(t).toFixed(1)}" stroke="#e0e0e0"/>`);
    out.push(`<text x="${frame.left - 6}" y="${(y(t) + 4).toFixed(1)}" text-anchor="end">${formatTick(t)}</text>`);
  }
  out.push(`<text x="16" y="${(frame.top + frame.bottom) / 2}" transform="rotate(-90 16 ${(frame.top + frame.bottom) / 2})" text-anchor="middle">${escapeXml(opts.unit)}</text>`);
  const groupWidth = (frame.right - frame.left) / Math.max(1, opts.groups.length);
  const barWidth = Math.min(28, (groupWidth * 0.8) / Math.max(1, subjects.length));
  opts.groups.forEach((g, gi) => {
    const x0 = frame.left + gi * groupWidth + (groupWidth - barWidth * subjects.length) / 2;
    subjects.forEach((s, si) => {
      const bar = g.bars.find((b) => b.subject === s);
      if (!bar) return;
      const x = x0 + si * barWidth;
      out.push(`<rect x="${x.toFixed(1)}" y="${y(bar.value).toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${(frame.bottom - y(bar.value)).toFixed(1)}" fill="${PALETTE[si % PALETTE.length]}"><title>${escapeXml(`${s}: ${formatTick(bar.value)} ${opts.unit}`)}</title></rect>`);
      out.push(`<text x="${(x + barWidth / 2 - 1).toFixed(1)}" y="${(y(bar.value) - 3).toFixed(1)}" text-anchor="middle" font-size="9">${formatTick(bar.value)}</text>`);
    });
    out.push(`<text x="${(frame.left + gi * groupWidth + groupWidth / 2).toFixed(1)}" y="${frame.bottom + 16}" text-anchor="middle">${escapeXml(g.label)}</text>`);
  });
  out.push(`<line x1="${frame.left}" x2="${frame.right}" y1="${frame.bottom}" y2="${frame.bottom}" stroke="#333"/>`);
  subjects.forEach((s, si) => {
    const col = si % 4;
    const row = Math.floor(si / 4);
    const x = frame.left + col * 190;
    const yy = frame.bottom + 38 + row * 18;
    out.push(`<rect x="${x}" y="${yy - 10}" width="12" height="12" fill="${PALETTE[si % PALETTE.length]}"/>`, `<text x="${x + 18}" y="${yy}">${escapeXml(s)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
