// The full chaos drills (`npm run chaos`, which runs this against the private
// test engine): the kill loop (50 kills), S3 faults for a whole run, a 5-minute
// coordinator outage, Docker engine restarts with and without live-restore,
// a full checkpoint volume and state directory. Each drill's figures go to the
// "## Chaos" section of docs/RELIABILITY.md (rewritten, the rest of the file
// kept) and to the "chaos" key of docs/reliability.json.
//
//   npm run chaos                                 every drill, full size
//   npm run chaos -- --only kill-loop,disk-full   some drills
//   npm run chaos -- --scale 0.2                  smaller counts and outage (a rehearsal; figures still written)
//   npm run chaos -- --no-write                   print the figures only
//
// Exit code 1 when a figure misses its target.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { figureLine, figuresPass, type DrillResult } from '../test/helpers/chaos-common.ts';
import { coordinatorOutageDrill, diskFullDrill, engineRestartDrill, killLoopDrill, s3FaultDrill, type DrillEnv } from '../test/helpers/chaos-drills.ts';
import { testEngineEnv } from '../test/helpers/engine.ts';

const root = path.resolve(import.meta.dirname, '..');
const DOC = path.join(root, 'docs', 'RELIABILITY.md');
const JSON_FILE = path.join(root, 'docs', 'reliability.json');

const { values } = parseArgs({
  options: {
    only: { type: 'string' },
    scale: { type: 'string', default: '1' },
    'no-write': { type: 'boolean', default: false },
  },
});
const scale = Number(values.scale);
if (!Number.isFinite(scale) || scale <= 0 || scale > 1) {
  process.stderr.write(`--scale ${values.scale}: give a number in (0, 1], such as 0.2\n`);
  process.exit(2);
}
const n = (full: number): number => Math.max(1, Math.round(full * scale));

const DRILLS: Record<string, (env: DrillEnv) => Promise<DrillResult>> = {
  'kill-loop': (env) => killLoopDrill(env, { kills: n(50), seed: 50 }),
  's3-faults': (env) => s3FaultDrill(env, { checkpoints: n(30), failureRate: 0.2, stallMs: 10000, seed: 20 }),
  'coordinator-outage': (env) => coordinatorOutageDrill(env, { outageMs: n(300) * 1000, jobs: 2 }),
  'engine-restart': (env) => engineRestartDrill(env, { restarts: n(3) }),
  'engine-restart-live-restore': (env) => engineRestartDrill(env, { restarts: n(2), liveRestore: true }),
  'disk-full': (env) => diskFullDrill(env, { stateFullMs: 10000 }),
};

const only = values.only?.split(',').map((s) => s.trim()).filter((s) => s !== '');
const unknown = (only ?? []).filter((name) => !(name in DRILLS));
if (unknown.length > 0) {
  process.stderr.write(`unknown drill ${unknown.join(', ')}: choose from ${Object.keys(DRILLS).join(', ')}\n`);
  process.exit(2);
}

const log = (message: string): void => {
  process.stderr.write(`[chaos ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
};

const engine = testEngineEnv();
const env: DrillEnv = { dockerHost: engine.dockerHost, trainerImage: engine.trainerImage, log };
const command = `npm run chaos${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
const started = Date.now();
const results: DrillResult[] = [];
const failures: string[] = [];
for (const [name, drill] of Object.entries(DRILLS)) {
  if (only && !only.includes(name)) continue;
  log(`${name}: starting`);
  try {
    const result = await drill(env);
    results.push(result);
    for (const figure of result.figures) log(`${name}: ${figureLine(figure)}`);
    if (!figuresPass(result)) failures.push(name);
  } catch (err) {
    log(`${name}: could not run: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    failures.push(`${name} (did not run)`);
  }
}
const totalMs = Date.now() - started;

interface DrillRecord extends DrillResult {
  pass: boolean;
  command: string;
  date: string;
  machine: string;
}

const machine = `${os.cpus().length} cores, ${os.platform()} ${os.release()}, Node.js ${process.version}`;

/** This run's drills, over the records of earlier runs of the drills not run this time. */
function merged(previous: DrillRecord[]): DrillRecord[] {
  const date = new Date().toISOString();
  const fresh = results.map((r) => ({ ...r, pass: figuresPass(r), command, date, machine }));
  const byName = new Map<string, DrillRecord>(previous.map((r) => [r.drill, r]));
  for (const r of fresh) byName.set(r.drill, r);
  const order = Object.keys(DRILLS);
  return [...byName.values()].sort((a, b) => order.indexOf(a.drill) - order.indexOf(b.drill));
}

function section(records: DrillRecord[]): string {
  const lines = [
    '## Chaos',
    '',
    'Every drill runs a real coordinator and agent as processes, real containers on a private Docker engine, and s3rver on loopback;',
    'the code is test/helpers/chaos-drills.ts and scripts/chaos.ts. `npm test` runs a short version of each (test/chaos/).',
    'Each line: what was tried and how often, then what went wrong and how often (every target is 0).',
    '',
  ];
  for (const r of records) {
    lines.push(`### ${r.drill}`, '', `\`${r.command}\` on ${r.date.slice(0, 10)} (${r.machine}): ${Math.round(r.durationMs / 1000)} s${r.pass ? '' : ', MISSED A TARGET'}`, '');
    for (const figure of r.figures) lines.push(`- ${figureLine(figure)}`);
    const details = Object.entries(r.details).map(([k, v]) => `${k} ${String(v)}`).join('; ');
    if (details !== '') lines.push(`- details: ${details}`);
    lines.push('');
  }
  return lines.join('\n');
}

/** Replaces the "## Chaos" section (up to the next "## " heading), or adds it at the end. */
function replaceSection(doc: string, text: string): string {
  const start = doc.search(/^## Chaos\s*$/m);
  if (start < 0) return `${doc.trimEnd()}\n\n${text.trimEnd()}\n`;
  const rest = doc.slice(start + 1);
  const next = rest.search(/^## /m);
  const end = next < 0 ? doc.length : start + 1 + next;
  return `${doc.slice(0, start)}${text.trimEnd()}\n${next < 0 ? '' : `\n${doc.slice(end)}`}`;
}

if (!values['no-write'] && results.length > 0) {
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(fs.readFileSync(JSON_FILE, 'utf8')) as Record<string, unknown>;
  } catch {
    // a new file
  }
  const previous = ((json.chaos as { drills?: DrillRecord[] } | undefined)?.drills ?? []);
  const records = merged(previous);
  json.chaos = { drills: records };
  fs.writeFileSync(JSON_FILE, `${JSON.stringify(json, null, 2)}\n`);
  const doc = fs.existsSync(DOC) ? fs.readFileSync(DOC, 'utf8') : '# Reliability\n\nHow Stevedore holds up under faults, load and hostile input, with the commands that produced each figure.\n';
  fs.writeFileSync(DOC, replaceSection(doc, section(records)));
  log(`wrote ${path.relative(root, DOC)} and ${path.relative(root, JSON_FILE)}`);
}
log(`done in ${Math.round(totalMs / 1000)} s${failures.length > 0 ? `; missed targets: ${failures.join(', ')}` : ''}`);
process.exitCode = failures.length > 0 ? 1 : 0;
