// npm run bench [-- --only upload,restore] [-- --smoke]
// Runs the benchmarks one after the other, then writes bench/results.json
// (a run of some benchmarks replaces only their records) and renders
// docs/BENCHMARKS.md from it; plots go to docs/bench/. With --smoke every
// benchmark runs its short version and nothing in the repository is written
// (the records go to the scratch directory's results.json, printed at the end).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { mergeResults, renderMarkdown, type MachineInfo, type ResultsFile } from './report.ts';
import type { BenchOptions, BenchResult, Benchmark } from './types.ts';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(BENCH_DIR);

/**
 * Every benchmark: its id, its file in bench/ and its named export. One line
 * each; a file that does not exist yet is reported and skipped in a full run
 * (and is an error when named with --only).
 */
export const BENCHMARKS: readonly { id: string; file: string; exportName: string }[] = [
  { id: 'upload', file: 'upload.ts', exportName: 'upload' },
  { id: 'time-to-durable', file: 'time-to-durable.ts', exportName: 'timeToDurable' },
  { id: 'drain', file: 'drain.ts', exportName: 'drain' },
  { id: 'restore', file: 'restore.ts', exportName: 'restore' },
  { id: 'footprint', file: 'footprint.ts', exportName: 'footprint' },
  { id: 'coordinator-scale', file: 'coordinator-scale.ts', exportName: 'coordinatorScale' },
];

export interface BenchArgs {
  smoke: boolean;
  only: string[] | undefined;
}

export function parseBenchArgs(argv: string[]): BenchArgs {
  let smoke = false;
  let only: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--smoke') smoke = true;
    else if (arg === '--only' || arg.startsWith('--only=')) {
      const value = arg === '--only' ? argv[++i] : arg.slice('--only='.length);
      if (value === undefined || value.trim() === '') throw new Error('--only needs a comma-separated list of benchmarks, e.g. --only upload,restore');
      only = value.split(',').map((s) => s.trim()).filter((s) => s !== '');
    } else throw new Error(`unknown argument ${JSON.stringify(arg)}; usage: npm run bench -- [--smoke] [--only ${BENCHMARKS.map((b) => b.id).join(',')}]`);
  }
  const unknown = (only ?? []).filter((id) => !BENCHMARKS.some((b) => b.id === id));
  if (unknown.length > 0) throw new Error(`unknown benchmark ${unknown.join(', ')}; the benchmarks are ${BENCHMARKS.map((b) => b.id).join(', ')}`);
  return { smoke, only };
}

/** Loads a benchmark's function, or undefined when its file does not exist. */
export async function loadBenchmark(entry: { file: string; exportName: string }): Promise<Benchmark | undefined> {
  const file = path.join(BENCH_DIR, entry.file);
  if (!fs.existsSync(file)) return undefined;
  const mod = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  const fn = mod[entry.exportName];
  if (typeof fn !== 'function') throw new Error(`bench/${entry.file} does not export a benchmark function named ${entry.exportName}`);
  return fn as Benchmark;
}

export function machineInfo(): MachineInfo {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown CPU',
    memoryGiB: Math.round(os.totalmem() / 1024 ** 3),
    node: process.versions.node,
    os: `${os.type()} ${os.release()}`,
  };
}

async function main(argv: string[]): Promise<number> {
  const args = parseBenchArgs(argv);
  const selected = BENCHMARKS.filter((b) => args.only === undefined || args.only.includes(b.id));
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'stevedore-bench-'));
  const log = (line: string): void => {
    process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
  };
  const results: BenchResult[] = [];
  const failures: string[] = [];
  const started = Date.now();
  try {
    for (const entry of selected) {
      const bench = await loadBenchmark(entry);
      if (!bench) {
        const message = `bench/${entry.file} does not exist yet: ${entry.id} skipped`;
        if (args.only !== undefined) failures.push(message);
        log(message);
        continue;
      }
      const workDir = path.join(scratch, entry.id);
      fs.mkdirSync(workDir, { recursive: true });
      const opts: BenchOptions = { smoke: args.smoke, workDir, plotDir: args.smoke ? path.join(scratch, 'plots') : path.join(ROOT, 'docs', 'bench'), log: (line) => log(`${entry.id}: ${line}`) };
      const t0 = Date.now();
      log(`${entry.id}: starting${args.smoke ? ' (smoke)' : ''}`);
      try {
        results.push({ ...(await bench(opts)), seconds: Math.round((Date.now() - t0) / 1000) });
        log(`${entry.id}: done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      } catch (err) {
        failures.push(`${entry.id}: ${err instanceof Error ? err.message : String(err)}`);
        log(`${entry.id}: FAILED: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
      } finally {
        fs.rmSync(workDir, { recursive: true, force: true });
      }
    }
    const resultsPath = args.smoke ? path.join(scratch, 'results.json') : path.join(BENCH_DIR, 'results.json');
    const previous = !args.smoke && fs.existsSync(resultsPath) ? (JSON.parse(fs.readFileSync(resultsPath, 'utf8')) as ResultsFile) : undefined;
    const fullRun = args.only === undefined && failures.length === 0 ? (Date.now() - started) / 1000 : undefined;
    const merged = mergeResults(previous, results, machineInfo(), new Date(), fullRun);
    fs.writeFileSync(resultsPath, `${JSON.stringify(merged, null, 2)}\n`);
    const markdownPath = args.smoke ? path.join(scratch, 'BENCHMARKS.md') : path.join(ROOT, 'docs', 'BENCHMARKS.md');
    fs.writeFileSync(markdownPath, renderMarkdown(merged));
    log(`wrote ${resultsPath} and ${markdownPath} after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    if (!args.smoke) fs.rmSync(scratch, { recursive: true, force: true });
  } catch (err) {
    fs.rmSync(scratch, { recursive: true, force: true });
    throw err;
  }
  for (const f of failures) process.stderr.write(`bench: ${f}\n`);
  return failures.length > 0 ? 1 : 0;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 2;
    },
  );
}
