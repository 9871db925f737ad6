// Coordinator scale: a real coordinator process and a fleet of light agents
// (session clients in two processes, each on its own connection) registering
// and heartbeating; then 1,000 jobs submitted through the Control API and
// placed; then control commands while the fleet heartbeats and the jobs run
// and end. Measured: the time to register the fleet, the coordinator's CPU,
// the time to place the jobs, and the latency of commands.
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ControlClient } from '../src/client/control-client.ts';
import { validateJobSpec } from '../src/spec/job-spec.ts';
import { VERSION } from '../src/version.ts';
import { freePort, waitUntil } from '../test/helpers/cluster.ts';
import { cdfPlot, writePlot } from './svg.ts';
import { LightAgents, LoopMeter, type LightAgentsLine, type LoopFigures, type PhaseStats } from './coordinator-scale-agents.ts';
import { cpuSeconds } from './footprint-proc.ts';
import { listJobsElsewhere } from './coordinator-scale-lister.ts';
import { percentile, type BenchResult, type Benchmark, type BenchOptions, type Figure } from './types.ts';

const stevedoreBin = path.resolve(import.meta.dirname, '..', 'bin', 'stevedore.js');

interface ScalePlan {
  agents: number;
  processes: number;
  jobs: number;
  /** Seconds of each measured window (heartbeats only; commands). */
  windowSeconds: number;
  heartbeatSeconds: number;
  holdMs: number;
  submitters: number;
}

function plan(smoke: boolean): ScalePlan {
  return smoke
    ? { agents: 50, processes: 1, jobs: 20, windowSeconds: 2, heartbeatSeconds: 1, holdMs: 1000, submitters: 4 }
    : { agents: 2000, processes: 2, jobs: 1000, windowSeconds: 10, heartbeatSeconds: 5, holdMs: 8000, submitters: 8 };
}

function single(name: string, unit: string, value: number, better: 'lower' | 'higher' = 'lower', runs = 1): Figure {
  return { name, unit, median: value, min: value, max: value, runs, better };
}

function latencyFigures(what: string, values: number[]): Figure[] {
  const round = (v: number): number => Math.round(v * 10) / 10;
  return [
    { name: `${what} p50`, unit: 'ms', median: round(percentile(values, 50)), min: round(Math.min(...values)), max: round(Math.max(...values)), runs: values.length, better: 'lower' },
    { name: `${what} p99`, unit: 'ms', median: round(percentile(values, 99)), min: round(Math.min(...values)), max: round(Math.max(...values)), runs: values.length, better: 'lower' },
  ];
}

/** Calls fn back to back for the window; returns each call's latency in ms. */
async function timedLoop(seconds: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    const t = performance.now();
    await fn();
    out.push(performance.now() - t);
  }
  return out;
}

/** Seconds the process' threads spent runnable but waiting for a CPU (/proc/PID/schedstat, Linux); 0 elsewhere. */
function runQueueSeconds(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1] ?? 0) / 1e9;
  } catch {
    return 0;
  }
}

/**
 * The coordinator's CPU use over fn, in core-seconds per second, and the time
 * it was ready to run but waited for a CPU the other processes of the
 * machine held (per second): a busy machine, not the coordinator's own work.
 */
async function cpuOver<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; cores: number; waiting: number }> {
  const c0 = cpuSeconds(pid) ?? 0;
  const w0 = runQueueSeconds(pid);
  const t0 = Date.now();
  const result = await fn();
  const seconds = Math.max(0.001, (Date.now() - t0) / 1000);
  return { result, cores: ((cpuSeconds(pid) ?? 0) - c0) / seconds, waiting: (runQueueSeconds(pid) - w0) / seconds };
}

export const coordinatorScale: Benchmark = async (opts: BenchOptions): Promise<BenchResult> => {
  const p = plan(opts.smoke);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-bench-scale-'));
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  mkdirSync(opts.workDir, { recursive: true });
  const logFile = path.join(opts.workDir, 'coordinator.log');
  const fd = openSync(logFile, 'a');
  const coordinator = spawn(process.execPath, [stevedoreBin, 'coordinator', '--insecure', '--listen', address, '--db', path.join(dir, 'coordinator.db'), '--heartbeat-seconds', String(p.heartbeatSeconds), '--lease-seconds', String(p.heartbeatSeconds * 6)], {
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  const pid = coordinator.pid;
  const client = new ControlClient({ address, deadlineMs: 60_000 });
  const fleets: LightAgents[] = [];
  const registered: number[] = [];
  const started = new Map<string, number>();
  try {
    if (pid === undefined) throw new Error('the coordinator did not start');
    await waitUntil(async () => {
      try {
        await client.listNodes();
        return true;
      } catch {
        return false;
      }
    }, 30_000, () => `the coordinator did not answer; its log:\n${readFileSync(logFile, 'utf8').slice(-2000)}`);

    // 1. The fleet registers.
    const callers = new LoopMeter();
    const callerLoop = new Map<string, LoopFigures>();
    const phase = (name: string, ended: string): void => {
      callerLoop.set(ended, callers.take());
      for (const f of fleets) f.phase(name);
    };
    const onLine = (line: LightAgentsLine): void => {
      if (line.t === 'registered') registered.push(line.ms);
      else if (line.t === 'start') started.set(line.jobId, line.ms);
    };
    const perProcess = Math.ceil(p.agents / p.processes);
    const regStart = Date.now();
    const reg = await cpuOver(pid, async () => {
      for (let i = 0; i < p.processes; i++) {
        const count = Math.min(perProcess, p.agents - i * perProcess);
        fleets.push(new LightAgents({ address, count, prefix: `node-${i}`, gpus: 8, holdMs: p.holdMs, connectPer100Ms: Math.ceil(100 / p.processes) }, onLine));
      }
      await waitUntil(() => registered.length >= p.agents, 300_000, () => `${registered.length} of ${p.agents} agents registered`);
    });
    const registerSeconds = (Math.max(...registered) - regStart) / 1000;
    opts.log(`coordinator-scale: ${p.agents} agents registered in ${registerSeconds.toFixed(1)} s (coordinator ${reg.cores.toFixed(2)} cores, waiting for a CPU ${reg.waiting.toFixed(2)} s/s; load average ${os.loadavg()[0]?.toFixed(1)})`);

    // 2. Heartbeats only.
    phase('idle', 'register');
    const idle = await cpuOver(pid, () => new Promise((r) => setTimeout(r, p.windowSeconds * 1000)));
    opts.log(`coordinator-scale: ${p.agents} agents heartbeating every ${p.heartbeatSeconds} s: coordinator ${idle.cores.toFixed(3)} cores`);

    // 3. Jobs submitted through the Control API and placed, while one caller reads jobs back to back.
    phase('placing', 'idle');
    const spec = validateJobSpec({ name: 'scale', image: 'bench/none:1', command: ['true'], resources: { gpus: 1 }, pullPolicy: 'never' });
    const submitted = new Map<string, number>();
    const submitLatency: number[] = [];
    const getWhilePlacing: number[] = [];
    const placeStart = Date.now();
    const place = await cpuOver(pid, async () => {
      let next = 0;
      let placing = true;
      const reader = (async () => {
        while (placing) {
          const ids = [...submitted.keys()];
          if (ids.length === 0) {
            await new Promise((r) => setTimeout(r, 5));
            continue;
          }
          const t = performance.now();
          await client.getJob(ids[Math.floor(Math.random() * ids.length)] ?? '');
          getWhilePlacing.push(performance.now() - t);
        }
      })();
      try {
        await Promise.all(
          Array.from({ length: p.submitters }, async () => {
            while (next < p.jobs) {
              next++;
              const t = performance.now();
              const sentMs = Date.now();
              const job = await client.submitJob(spec);
              submitLatency.push(performance.now() - t);
              submitted.set(job.jobId, sentMs);
            }
          }),
        );
        await waitUntil(() => [...submitted.keys()].every((id) => started.has(id)), 300_000, () => `${[...submitted.keys()].filter((id) => started.has(id)).length} of ${p.jobs} jobs reached their node`);
      } finally {
        placing = false;
        await reader;
      }
    });
    const placedMs = Math.max(...[...submitted.keys()].map((id) => started.get(id) ?? 0));
    const placeSeconds = (placedMs - placeStart) / 1000;
    const startLatency = [...submitted].map(([id, sent]) => (started.get(id) ?? sent) - sent);
    opts.log(`coordinator-scale: ${p.jobs} jobs submitted and placed in ${placeSeconds.toFixed(1)} s (coordinator ${place.cores.toFixed(2)} cores, waiting for a CPU ${place.waiting.toFixed(2)} s/s); SubmitJob p99 ${percentile(submitLatency, 99).toFixed(0)} ms, GetJob meanwhile p99 ${percentile(getWhilePlacing, 99).toFixed(0)} ms, submit to StartJob p99 ${percentile(startLatency, 99).toFixed(0)} ms`);

    // 4. Commands while the fleet heartbeats and the jobs report RUNNING, then SUCCEEDED.
    phase('reporting', 'placing');
    const ids = [...submitted.keys()];
    // GetJob timed here; ListJobs back to back meanwhile from a process of its own (see coordinator-scale-lister.ts).
    const commandLoops = async (): Promise<{ getJob: number[]; listJobs: number[] }> => {
      const listJobs = listJobsElsewhere(address, p.windowSeconds);
      const getJob = timedLoop(p.windowSeconds, () => client.getJob(ids[Math.floor(Math.random() * ids.length)] ?? ''));
      return { getJob: await getJob, listJobs: (await listJobs).latencyMs };
    };
    const commands = await cpuOver(pid, commandLoops);
    opts.log(`coordinator-scale: while jobs report: GetJob p99 ${percentile(commands.result.getJob, 99).toFixed(1)} ms, ListJobs (${p.jobs} jobs) p99 ${percentile(commands.result.listJobs, 99).toFixed(1)} ms (coordinator ${commands.cores.toFixed(2)} cores, waiting for a CPU ${commands.waiting.toFixed(2)} s/s; load average ${os.loadavg()[0]?.toFixed(1)})`);
    const loadDuringCommands = os.loadavg()[0] ?? 0;

    // 5. The same commands once every job has ended: the fleet only heartbeats.
    await waitUntil(async () => (await client.listJobs()).every((j) => j.state === 'succeeded'), 120_000, () => 'the jobs did not all succeed');
    phase('idle-commands', 'reporting');
    const idleCommands = await cpuOver(pid, commandLoops);
    phase('end', 'idle-commands');
    callers.stop();
    opts.log(`coordinator-scale: heartbeats only: GetJob p99 ${percentile(idleCommands.result.getJob, 99).toFixed(1)} ms, ListJobs (${p.jobs} jobs) p99 ${percentile(idleCommands.result.listJobs, 99).toFixed(1)} ms (coordinator ${idleCommands.cores.toFixed(2)} cores)`);

    const stats = await Promise.all(fleets.map((f) => f.stop()));
    fleets.length = 0;
    const sessionErrors = stats.reduce((n, s) => n + s.sessionErrors, 0);
    const rttsOf = (name: string): number[] => stats.flatMap((s) => s.phases[name]?.heartbeatRttMs ?? []);
    /** The worst of the agents' processes in that phase. */
    const agentLoop = (name: string): LoopFigures => {
      const each = stats.map((s) => s.phases[name]).filter((f): f is PhaseStats => f !== undefined);
      return {
        loopDelayP50Ms: Math.max(0, ...each.map((f) => f.loopDelayP50Ms)),
        loopDelayP99Ms: Math.max(0, ...each.map((f) => f.loopDelayP99Ms)),
        loopDelayMaxMs: Math.max(0, ...each.map((f) => f.loopDelayMaxMs)),
        cpuCores: Math.round(each.reduce((n, f) => n + f.cpuCores, 0) * 100) / 100,
      };
    };
    const phaseNames = [
      ['idle', 'heartbeats only'],
      ['placing', 'while placing'],
      ['reporting', 'while jobs report'],
      ['idle-commands', 'commands, heartbeats only'],
    ] as const;
    for (const [name, what] of phaseNames) {
      const a = agentLoop(name);
      const c = callerLoop.get(name);
      opts.log(`coordinator-scale: ${what}: heartbeat round trip p99 ${percentile(rttsOf(name), 99).toFixed(0)} ms; light agents' event-loop delay p99 ${a.loopDelayP99Ms} ms (max ${a.loopDelayMaxMs}), ${a.cpuCores} cores; callers' event-loop delay p99 ${c?.loopDelayP99Ms ?? NaN} ms`);
    }

    const plots = [
      writePlot(
        opts.plotDir,
        'coordinator-scale-latency.svg',
        cdfPlot({
          title: `Coordinator with ${p.agents} agents: latency`,
          xLabel: 'milliseconds',
          series: [
            { name: 'heartbeat round trip, heartbeats only', values: rttsOf('idle') },
            { name: 'heartbeat round trip while placing', values: rttsOf('placing') },
            { name: 'SubmitJob', values: submitLatency },
            { name: 'GetJob while placing', values: getWhilePlacing },
            { name: 'GetJob while jobs report', values: commands.result.getJob },
            { name: 'GetJob, heartbeats only', values: idleCommands.result.getJob },
            { name: `ListJobs (${p.jobs} jobs) while jobs report`, values: commands.result.listJobs },
            { name: 'SubmitJob to StartJob at the agent', values: startLatency },
          ],
          logX: true,
        }),
      ),
    ];
    const round2 = (v: number): number => Math.round(v * 100) / 100;
    const figures: Figure[] = [
      single(`time to register ${p.agents} agents`, 's', round2(registerSeconds)),
      single('coordinator CPU, heartbeats only', 'cores', round2(idle.cores)),
      single(`time to submit and place ${p.jobs} jobs`, 's', round2(placeSeconds)),
      single(`coordinator CPU while placing`, 'cores', round2(place.cores)),
      single(`coordinator CPU while jobs report (commands)`, 'cores', round2(commands.cores)),
      single(`coordinator CPU, heartbeats only (commands)`, 'cores', round2(idleCommands.cores)),
      single('coordinator waiting for a CPU while placing', 's/s', round2(place.waiting)),
      single('coordinator waiting for a CPU during commands', 's/s', round2(commands.waiting)),
      single('machine load average (1 min) during commands', 'runnable', round2(loadDuringCommands)),
      single("light agents' event-loop delay p99, heartbeats only", 'ms', agentLoop('idle').loopDelayP99Ms),
      single("light agents' event-loop delay p99 while placing", 'ms', agentLoop('placing').loopDelayP99Ms),
      single("light agents' CPU while placing", 'cores', agentLoop('placing').cpuCores),
      single("callers' event-loop delay p99 while placing", 'ms', callerLoop.get('placing')?.loopDelayP99Ms ?? NaN),
      ...latencyFigures('heartbeat round trip, heartbeats only', rttsOf('idle')),
      ...latencyFigures('heartbeat round trip while placing', rttsOf('placing')),
      ...latencyFigures('SubmitJob', submitLatency),
      ...latencyFigures('SubmitJob to StartJob at the agent', startLatency),
      ...latencyFigures('GetJob while placing', getWhilePlacing),
      ...latencyFigures('GetJob while jobs report', commands.result.getJob),
      ...latencyFigures(`ListJobs (${p.jobs} jobs) while jobs report`, commands.result.listJobs),
      ...latencyFigures('GetJob, heartbeats only', idleCommands.result.getJob),
      ...latencyFigures(`ListJobs (${p.jobs} jobs), heartbeats only`, idleCommands.result.listJobs),
    ];
    const p99 = (name: string): number => figures.find((f) => f.name === `${name} p99`)?.median ?? NaN;
    const maxCores = Math.max(idle.cores, place.cores, commands.cores, idleCommands.cores);
    const commandP99s = ['SubmitJob', 'GetJob while placing', 'GetJob while jobs report', 'GetJob, heartbeats only'];
    return {
      id: 'coordinator-scale',
      title: 'Coordinator scale',
      command: 'npm run bench -- --only coordinator-scale',
      method: [
        `A real coordinator process (\`stevedore coordinator --insecure\`, SQLite in WAL mode, its commits flushed to disk together in the background before any acknowledgement or reply that relies on them, logging at info) and ${p.agents} light agents in ${p.processes} process${p.processes === 1 ? '' : 'es'}: raw @grpc/grpc-js AgentSession clients, each on its own connection, registering with 8 GPUs and heartbeating every ${p.heartbeatSeconds} s (the interval the coordinator gives), acknowledging StartJob, reporting RUNNING at once and SUCCEEDED ${p.holdMs / 1000} s later.`,
        `The phases: registration (opened at about 100 sessions per 100 ms; a failed session is opened again after a random pause of 0.2 to 1 s); ${p.windowSeconds} s of heartbeats only; ${p.jobs} jobs of 1 GPU submitted through the Control API by ${p.submitters} concurrent callers, until every StartJob reached its agent, while one more caller reads a random submitted job (GetJob) back to back; ${p.windowSeconds} s of GetJob (a random job) back to back while the jobs report RUNNING and then SUCCEEDED, and ListJobs back to back from a process of its own (decoding ${p.jobs} jobs takes a caller's event loop for tens of milliseconds, which would otherwise be counted in GetJob); once every job has succeeded, the same ${p.windowSeconds} s of GetJob and ListJobs with the fleet only heartbeating.`,
        "CPU is the coordinator process' utime + stime over each phase, per second of wall time (1.0 = one core); \"waiting for a CPU\" is the time its threads were ready to run but every core was busy with other processes (/proc/PID/schedstat), per second: above a few tenths the machine, not the coordinator, sets the latencies. Latencies are measured at the caller; percentiles by nearest rank. The light agents' processes and the callers' process measure their own event-loop delay per phase (monitorEventLoopDelay, 10 ms resolution; the agents' figure is the worse of their processes): a round trip a process measures includes its own delay, which is not the coordinator's.",
        `Session errors seen by the agents: ${sessionErrors}.`,
      ].join(' '),
      cases: [
        {
          name: `${p.agents} agents, ${p.jobs} jobs`,
          subjects: [{ name: 'stevedore', version: VERSION, figures }],
          ratios: [],
          mediansOver: 'One run; each latency figure is a percentile (p50, p99) of the calls timed in its phase, shown with the fastest and slowest call; times and CPU figures are single values',
          targets: [
            { text: `one core holds ${p.agents} agents`, met: maxCores < 1, detail: `coordinator CPU ${round2(idle.cores)} cores with heartbeats only, ${round2(place.cores)} while placing, ${round2(commands.cores)} during commands while jobs report, ${round2(idleCommands.cores)} during commands with heartbeats only` },
            {
              text: 'p99 of a command under 100 ms',
              met: commandP99s.every((name) => p99(name) < 100),
              detail: `${commandP99s.map((name) => `${name} p99 ${p99(name)} ms`).join(', ')}; heartbeat round trip p99 ${p99('heartbeat round trip, heartbeats only')} ms with heartbeats only, ${p99('heartbeat round trip while placing')} ms while placing; ListJobs of ${p.jobs} jobs p99 ${p99(`ListJobs (${p.jobs} jobs) while jobs report`)} ms while jobs report, ${p99(`ListJobs (${p.jobs} jobs), heartbeats only`)} ms with heartbeats only`,
            },
          ],
        },
      ],
      plots,
      notes: COORDINATOR_SCALE_NOTES,
    };
  } finally {
    await Promise.all(fleets.map((f) => f.stop()));
    client.close();
    coordinator.kill('SIGTERM');
    await new Promise<void>((resolve) => {
      if (coordinator.exitCode !== null || coordinator.signalCode !== null) resolve();
      else coordinator.once('exit', () => resolve());
    });
    rmSync(dir, { recursive: true, force: true });
  }
};

const COORDINATOR_SCALE_NOTES = [
  'The coordinator\'s own CPU per phase is what the "one core" target measures. The latencies are measured at the callers, on the same 2 cores as the coordinator, the light agents\' processes, the callers and the machine\'s other work: "waiting for a CPU" is how long the coordinator was ready to run with no core free. When it is above a few tenths of a second per second (and the load average is well above the 2 cores), most of a command\'s latency is that wait, not the coordinator\'s work, and the 100 ms target is not judged fairly on this machine. The light agents\' and the callers\' own event-loop delay is reported per phase for the same reason: it was 13 to 45 ms at p99 in the runs below (up to 300 ms at worst on a machine at load average 10), so the agents\' processes were not what held the heartbeat round trips back. ListJobs is called from a process of its own: in the callers\' process, decoding a reply of 1,000 jobs held the loop that timed GetJob, and GetJob\'s p50 equalled ListJobs\' (about 50 ms); alone, GetJob\'s p50 is 2 ms.',
  '',
  'What the profile showed (`node --cpu-prof` on the coordinator over a whole run, self time, before the fixes): 25% in reading the largest node\'s GPU count, a scan of every node\'s inventory JSON in SQLite at every SubmitJob; 17% in parsing nodes (every placement pass, and the lease check once a second, parsed all 2,000 inventories: the once-a-second parse alone stalled the event loop enough for a heartbeat round trip p99 of about 200 ms with nothing else going on); 14% in the five per-job queries of each job view (GetJob, and 1,000 times per ListJobs), each statement compiled again at every call; 7% garbage collection.',
  '',
  'What was fixed: statements are compiled once; the nodes are parsed once and kept in memory in step with every write (a rolled-back transaction drops them); the lease check reads ids, states and last contact only; the largest GPU count is kept between submissions; ListJobs reads every job\'s attempts and reports with one query per table; a job\'s spec is parsed once; a placement pass reads free GPUs from the nodes and the active attempts instead of building every node\'s full view, and waits for the flush under way (what it places can only be sent after the next flush anyway), so one pass covers every job submitted meanwhile. The durability rule is unchanged: every reply and acknowledgement still waits for the flush that covers its commits.',
  '',
  'A/B, the old and the new coordinator run alternately with the same benchmark, twice each, on a machine shared with other work (load average 7 to 11, the coordinator waiting for a CPU 0.3 to 0.6 s/s): placing 1,000 jobs took 52 and 37 s before and 11 and 5.0 s after, and its CPU fell from 24 and 22 core-seconds to 3.9 and 3.6 (about 4 ms per job from submission to RUNNING, the GetJob reader\'s calls included); CPU with heartbeats only 0.11 and 0.13 cores before, 0.07 and 0.09 after; the heartbeat round trip p99 with heartbeats only 394 and 51 ms before, 74 and 7 ms after, and while placing 831 and 516 ms before, 227 and 68 ms after; SubmitJob p99 1,333 and 766 ms before, 436 and 145 ms after; GetJob p99 while placing 1,254 and 759 ms before, 436 and 96 ms after, and with heartbeats only (ListJobs looping meanwhile) 809 and 207 ms before, 87 and 102 ms after. In an earlier pair on a quieter machine (load average 3 to 4) placing took 28 and 23 s before and 7.0 and 5.9 s after.',
  '',
  'Why the 100 ms target is still missed in some phases: first, the machine: with the coordinator waiting for a CPU for a third to a half of each second, its p99s are mostly that wait. Second, ListJobs of 1,000 jobs: about 75 ms of the coordinator\'s single thread per call, most of it encoding the 290 KB reply (@grpc/proto-loader\'s fromObject and protobufjs\' encode: 58 to 73 ms measured in-process, against 13 ms to read and build the views). With a caller listing back to back, every other command and heartbeat that arrives meanwhile waits behind it: GetJob p99 about 100 to 200 ms while ListJobs loops, against a p50 of 2 ms. A paged or summary ListJobs (a protocol change) would bound that; it is not done. Third, 8 callers submitting back to back at about 4 ms of coordinator CPU per job keep SubmitJob\'s p50 near 40 ms, and its p99 is where the machine\'s other work lands on top.',
  '',
  'Every Control reply, reads included, and every acknowledgement to an agent goes out only once the commits made before it are on disk. The commits are flushed together, in the background, once per turn of the event loop with at most one flush at a time (commit ea1fed6), so a reply waits for the flush under way and at most one more, not for a flush of its own; a slow disk shows in every latency of the run.',
].join('\n');
