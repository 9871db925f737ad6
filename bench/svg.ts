// Small, dependency-free SVG plots for docs/BENCHMARKS.md: the distribution
// of a figure per subject (an empirical CDF with every run as a point), and a
// timeline (Gantt) of named spans with vertical markers.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Colours that stay distinct when printed in grey and for the common kinds of colour blindness. */
export const PALETTE = ['#0072b2', '#d55e00', '#009e73', '#cc79a7', '#e69f00', '#56b4e9', '#f0e442', '#000000'];

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

export function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c] ?? c);
}

/** A short number for an axis label: 0.25, 3, 12.5, 1500. */
export function formatTick(value: number): string {
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 100) return String(Math.round(value));
  if (abs >= 10) return String(Number(value.toFixed(1)));
  if (abs >= 1) return String(Number(value.toFixed(2)));
  return String(Number(value.toPrecision(2)));
}

/** About `count` round tick values covering [min, max] (steps of 1, 2 or 5 times a power of ten). */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (max <= min) return [min];
  const raw = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) ?? 10 * power;
  const ticks: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

export interface Series {
  name: string;
  values: number[];
}

export interface CdfPlotOptions {
  title: string;
  /** The x axis' label, with its unit, e.g. "time to durable (s)". */
  xLabel: string;
  series: Series[];
  /** A logarithmic x axis, for subjects an order of magnitude apart. Values <= 0 are drawn at the axis' start. */
  logX?: boolean;
  width?: number;
  height?: number;
}

interface Frame {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

function header(width: number, height: number, title: string): string[] {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14" font-weight="600">${escapeXml(title)}</text>`,
  ];
}

/**
 * The empirical CDF of each series (a step line; every run is a dot on it):
 * where a curve sits left is faster, how steep it is shows the spread, and the
 * p50 and p95 can be read off the dashed lines.
 */
export function cdfPlot(opts: CdfPlotOptions): string {
  const width = opts.width ?? 720;
  const height = opts.height ?? 360;
  const legendRows = opts.series.length;
  const f: Frame = { left: 60, right: width - 20, top: 34, bottom: height - 48 - legendRows * 16 };
  const all = opts.series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const logX = opts.logX === true;
  const positive = all.filter((v) => v > 0);
  let lo = logX ? Math.min(...positive) : 0;
  let hi = Math.max(...all, 0);
  if (!Number.isFinite(lo) || lo <= 0) lo = logX ? 0.01 : 0;
  if (!(hi > lo)) hi = lo + 1;
  let ticks: number[];
  let toX: (v: number) => number;
  if (logX) {
    const a = Math.floor(Math.log10(lo));
    const b = Math.ceil(Math.log10(hi));
    lo = 10 ** a;
    hi = 10 ** Math.max(b, a + 1);
    ticks = [];
    for (let e = a; e <= Math.max(b, a + 1); e++) ticks.push(Number((10 ** e).toPrecision(6)));
    toX = (v) => f.left + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * (f.right - f.left);
  } else {
    ticks = niceTicks(0, hi * 1.05, 6);
    hi = Math.max(hi * 1.05, ticks[ticks.length - 1] ?? hi);
    toX = (v) => f.left + ((v - lo) / (hi - lo)) * (f.right - f.left);
  }
  const toY = (p: number): number => f.bottom - p * (f.bottom - f.top);
  const out = header(width, height, opts.title);
  // Grid and axes.
  for (const p of [0, 0.25, 0.5, 0.75, 0.95, 1]) {
    const dashed = p === 0.5 || p === 0.95;
    out.push(`<line x1="${f.left}" y1="${toY(p).toFixed(1)}" x2="${f.right}" y2="${toY(p).toFixed(1)}" stroke="${dashed ? '#999' : '#e4e4e4'}"${dashed ? ' stroke-dasharray="4 3"' : ''}/>`);
    out.push(`<text x="${f.left - 6}" y="${(toY(p) + 4).toFixed(1)}" text-anchor="end">${p === 0.5 ? 'p50' : p === 0.95 ? 'p95' : `${Math.round(p * 100)}%`}</text>`);
  }
  for (const t of ticks) {
    const x = toX(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${f.top}" x2="${x}" y2="${f.bottom}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x}" y="${f.bottom + 16}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  out.push(`<line x1="${f.left}" y1="${f.bottom}" x2="${f.right}" y2="${f.bottom}" stroke="#333"/>`);
  out.push(`<line x1="${f.left}" y1="${f.top}" x2="${f.left}" y2="${f.bottom}" stroke="#333"/>`);
  out.push(`<text x="${(f.left + f.right) / 2}" y="${f.bottom + 34}" text-anchor="middle">${escapeXml(opts.xLabel)}${logX ? ' (log scale)' : ''}</text>`);
  // One step curve per series.
  opts.series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length] ?? '#000';
    const values = s.values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
    if (values.length === 0) return;
    const n = values.length;
    let d = `M${toX(values[0] ?? 0).toFixed(1)},${toY(0).toFixed(1)}`;
    values.forEach((v, k) => {
      d += ` L${toX(v).toFixed(1)},${toY(k / n).toFixed(1)} L${toX(v).toFixed(1)},${toY((k + 1) / n).toFixed(1)}`;
    });
    d += ` L${f.right},${toY(1).toFixed(1)}`;
    out.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"/>`);
    values.forEach((v, k) => out.push(`<circle cx="${toX(v).toFixed(1)}" cy="${toY((k + 1) / n).toFixed(1)}" r="3" fill="${colour}"/>`));
    const y = height - 12 - (legendRows - 1 - i) * 16;
    out.push(`<rect x="${f.left}" y="${y - 9}" width="14" height="10" fill="${colour}"/>`);
    out.push(`<text x="${f.left + 20}" y="${y}">${escapeXml(`${s.name} (${n} run${n === 1 ? '' : 's'})`)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}

export interface Span {
  /** The row it is drawn on: spans with the same row share a line. */
  row: string;
  /** Seconds from the timeline's origin. */
  start: number;
  end: number;
  /** Written on the bar when it fits. */
  label?: string;
  /** Index into PALETTE or a CSS colour. */
  colour?: number | string;
}

export interface Marker {
  at: number;
  label: string;
  colour?: string;
  dashed?: boolean;
}

export interface TimelinePlotOptions {
  title: string;
  /** The x axis' label, e.g. "seconds after the notice". */
  xLabel: string;
  spans: Span[];
  markers?: Marker[];
  /** A shaded band, e.g. the safety margin before the deadline. */
  band?: { from: number; to: number; label: string };
  width?: number;
}

/** A Gantt chart: one row per name, bars from start to end, vertical markers (the notice, the deadline). */
export function timelinePlot(opts: TimelinePlotOptions): string {
  const width = opts.width ?? 760;
  const rows: string[] = [];
  for (const s of opts.spans) if (!rows.includes(s.row)) rows.push(s.row);
  const labelWidth = Math.min(260, 16 + 6.5 * Math.max(8, ...rows.map((r) => r.length)));
  const rowHeight = 24;
  const f: Frame = { left: labelWidth, right: width - 24, top: 40, bottom: 40 + rows.length * rowHeight };
  const height = f.bottom + 62;
  const markers = opts.markers ?? [];
  const points = [...opts.spans.flatMap((s) => [s.start, s.end]), ...markers.map((m) => m.at), ...(opts.band ? [opts.band.from, opts.band.to] : [])].filter(Number.isFinite);
  const lo = Math.min(0, ...points);
  const ticks = niceTicks(lo, Math.max(...points, lo + 1), 8);
  const hi = Math.max(...points, ticks[ticks.length - 1] ?? lo + 1);
  const toX = (v: number): number => f.left + ((v - lo) / (hi - lo || 1)) * (f.right - f.left);
  const out = header(width, height, opts.title);
  if (opts.band) {
    const x1 = toX(opts.band.from);
    const x2 = toX(opts.band.to);
    out.push(`<rect x="${x1.toFixed(1)}" y="${f.top}" width="${Math.max(0, x2 - x1).toFixed(1)}" height="${f.bottom - f.top}" fill="#fbe3d6"/>`);
    out.push(`<text x="${((x1 + x2) / 2).toFixed(1)}" y="${f.bottom + 48}" text-anchor="middle" fill="#a04000">${escapeXml(opts.band.label)}</text>`);
  }
  for (const t of ticks) {
    const x = toX(t).toFixed(1);
    out.push(`<line x1="${x}" y1="${f.top}" x2="${x}" y2="${f.bottom}" stroke="#eeeeee"/>`);
    out.push(`<text x="${x}" y="${f.bottom + 16}" text-anchor="middle">${formatTick(t)}</text>`);
  }
  rows.forEach((row, i) => {
    const y = f.top + i * rowHeight;
    out.push(`<text x="${f.left - 8}" y="${y + rowHeight / 2 + 4}" text-anchor="end">${escapeXml(row)}</text>`);
  });
  opts.spans.forEach((s, i) => {
    const r = rows.indexOf(s.row);
    const y = f.top + r * rowHeight + 4;
    const x1 = toX(s.start);
    const w = Math.max(2, toX(s.end) - x1);
    const colour = typeof s.colour === 'string' ? s.colour : (PALETTE[(s.colour ?? i) % PALETTE.length] ?? '#000');
    out.push(`<rect x="${x1.toFixed(1)}" y="${y}" width="${w.toFixed(1)}" height="${rowHeight - 8}" rx="2" fill="${colour}" fill-opacity="0.85"><title>${escapeXml(`${s.row}: ${formatTick(s.start)} to ${formatTick(s.end)}`)}</title></rect>`);
    if (s.label && w > 6.5 * s.label.length + 8) out.push(`<text x="${(x1 + 4).toFixed(1)}" y="${y + rowHeight / 2 + 1}" fill="#ffffff">${escapeXml(s.label)}</text>`);
    else if (s.label) out.push(`<text x="${(x1 + w + 4).toFixed(1)}" y="${y + rowHeight / 2 + 1}" fill="#333">${escapeXml(s.label)}</text>`);
  });
  markers.forEach((m, i) => {
    const x = toX(m.at).toFixed(1);
    const colour = m.colour ?? '#333';
    out.push(`<line x1="${x}" y1="${f.top - 6}" x2="${x}" y2="${f.bottom}" stroke="${colour}" stroke-width="1.5"${m.dashed ? ' stroke-dasharray="5 3"' : ''}/>`);
    out.push(`<text x="${x}" y="${f.top - 10 - (i % 2) * 0}" text-anchor="${i % 2 === 0 ? 'start' : 'end'}" fill="${colour}">${escapeXml(m.label)}</text>`);
  });
  out.push(`<line x1="${f.left}" y1="${f.bottom}" x2="${f.right}" y2="${f.bottom}" stroke="#333"/>`);
  out.push(`<text x="${(f.left + f.right) / 2}" y="${f.bottom + 32}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/**
 * Writes the plot into plotDir and returns its path as BenchResult.plots wants
 * it: relative to docs/ when plotDir is docs/bench ("bench/NAME"), else the
 * last folder's name and the file's.
 */
export function writePlot(plotDir: string, fileName: string, svg: string): string {
  mkdirSync(plotDir, { recursive: true });
  writeFileSync(path.join(plotDir, fileName), svg);
  return `${path.basename(plotDir)}/${fileName}`;
}
