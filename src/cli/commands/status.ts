// `stevedore status [JOB]`: nodes and jobs as the coordinator sees them, or one
// job with its attempts. `--agent` asks the agent on this host instead.
import type { Command } from 'commander';
import { COORDINATOR_OPTION_HELP, withControlClient } from '../../client/control-client.ts';
import type { CheckpointInfo, ControlClient, JobInfo, NodeInfo } from '../../client/control-client.ts';
import { messageOf } from '../../util/errors.ts';
import { formatTable, parsePollSeconds, printJson, UsageError } from '../output.ts';
import { formatProgressLine, formatProgressShort, outputMode, useColor } from '../progress.ts';
import { watchJob } from '../watch.ts';

const ACTIVE_JOB_STATES = new Set(['scheduled', 'running', 'cancelling']);

/** An attempt state as people read it: "running", "scheduled". */
export function attemptStateLabel(state: string): string {
  return state.replace('ATTEMPT_STATE_', '').toLowerCase();
}

/** A duration as a short age: 42s, 5m, 3h, 2d. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

function currentAttempt(job: JobInfo): JobInfo['attempts'][number] | undefined {
  return job.attempts[job.attempts.length - 1];
}

/** GPUs in use on each node: by active jobs (their GPUs, or their request until known). */
function usedGpus(jobs: JobInfo[]): Map<string, number> {
  const used = new Map<string, number>();
  for (const job of jobs) {
    const a = currentAttempt(job);
    if (!a || !ACTIVE_JOB_STATES.has(job.state)) continue;
    const n = a.gpuUuids.length > 0 ? a.gpuUuids.length : (job.spec?.resources?.gpus ?? 0);
    used.set(a.nodeId, (used.get(a.nodeId) ?? 0) + n);
  }
  return used;
}

type GpuInfo = NonNullable<NodeInfo['inventory']>['gpus'][number];

/** A GPU whose last health check found problems (unset health: not checked, counted as healthy). */
function isUnhealthy(g: GpuInfo): boolean {
  return g.health !== null && g.health !== undefined && !g.health.healthy;
}

/** "healthy/allocated/total"; healthy is "-" while no GPU of the node has been checked. */
export function gpuCounts(n: NodeInfo, allocated: number): string {
  const gpus = n.inventory?.gpus ?? [];
  const checked = gpus.some((g) => g.health !== null && g.health !== undefined);
  const healthy = checked ? String(gpus.filter((g) => !isUnhealthy(g)).length) : '-';
  return `${healthy}/${allocated}/${gpus.length}`;
}

/** The nodes table; with verbose, every GPU that is not healthy with its problems (and, with all, every GPU). */
export function formatNodes(nodes: NodeInfo[], jobs: JobInfo[], now: number, opts: { verbose?: boolean } = {}): string {
  if (nodes.length === 0) return 'no nodes have registered yet';
  const used = usedGpus(jobs);
  const table = formatTable(
    ['NODE', 'STATE', 'ZONE', 'GPUS OK/USED/TOTAL', 'LABELS', 'LAST SEEN'],
    nodes.map((n) => [
      n.nodeId,
      n.state,
      n.labels.zone || n.labels.region || '-',
      gpuCounts(n, Math.max(n.allocatedGpuUuids.length, used.get(n.nodeId) ?? 0)),
      Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-',
      n.lastSeenMs ? `${formatAge(now - n.lastSeenMs)} ago` : '-',
    ]),
  );
  const unhealthy = nodes.flatMap((n) => (n.inventory?.gpus ?? []).filter(isUnhealthy).map((g) => ({ node: n, gpu: g })));
  if (unhealthy.length === 0) return table;
  if (!opts.verbose) {
    const where = [...new Set(unhealthy.map((u) => u.node.nodeId))].join(', ');
    const one = unhealthy.length === 1;
    return `${table}\n\n${unhealthy.length} GPU${one ? ' is' : 's are'} not healthy (on ${where}) and ${one ? 'gets' : 'get'} no new jobs: \`stevedore status --nodes -v\` shows why`;
  }
  const gpuTable = formatTable(
    ['NODE', 'GPU', 'UUID', 'TEMP', 'PROBLEMS'],
    unhealthy.map(({ node, gpu }) => [
      node.nodeId,
      String(gpu.index),
      gpu.uuid,
      gpu.health && gpu.health.temperatureC >= 0 ? `${gpu.health.temperatureC} C` : '-',
      gpu.health?.problems.join('; ') || 'unhealthy',
    ]),
  );
  return `${table}\n\nGPUs not healthy (they get no new jobs):\n${gpuTable}`;
}

/** The newest committed checkpoint step of each job that has a checkpoint section ("?" when the list failed). */
export type CheckpointSteps = Map<string, string>;

export function formatJobs(jobs: JobInfo[], now: number, steps: CheckpointSteps = new Map()): string {
  if (jobs.length === 0) return 'no jobs yet: submit one with `stevedore submit SPEC.yaml`';
  return formatTable(
    ['JOB', 'NAME', 'STATE', 'NODE', 'ATTEMPT', 'GPUS', 'AGE', 'CHECKPOINT', 'PROGRESS', 'MESSAGE'],
    jobs.map((j) => {
      const a = currentAttempt(j);
      return [
        j.jobId,
        j.spec?.name ?? '-',
        j.state,
        a?.nodeId ?? '-',
        a ? String(a.attempt) : '-',
        String(j.spec?.resources?.gpus ?? 0),
        formatAge(now - j.createdMs),
        steps.get(j.jobId) ?? '-',
        ACTIVE_JOB_STATES.has(j.state) ? formatProgressShort(a?.progress) : '-',
        j.message,
      ];
    }),
  );
}

export function formatOverview(nodes: NodeInfo[], jobs: JobInfo[], now: number, steps: CheckpointSteps = new Map()): string {
  return `${formatNodes(nodes, jobs, now)}\n\n${formatJobs(jobs, now, steps)}\n`;
}

/** Asks for the checkpoints of the jobs that have a checkpoint section, a few at a time. */
async function checkpointSteps(client: ControlClient, jobs: JobInfo[]): Promise<CheckpointSteps> {
  const steps: CheckpointSteps = new Map();
  const todo = jobs.filter((j) => j.spec?.checkpoint);
  const worker = async (): Promise<void> => {
    for (let job = todo.shift(); job; job = todo.shift()) {
      const id = job.jobId;
      try {
        const newest = (await client.listCheckpoints(id))[0];
        steps.set(id, newest ? (newest.step >= 0 ? `step ${newest.step}` : newest.checkpointId) : 'none');
      } catch {
        steps.set(id, '?');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, todo.length) }, worker));
  return steps;
}

type AttemptInfo = JobInfo['attempts'][number];

/** A checkpoint as people name it: its id, with its step when it has one. */
function checkpointName(id: string, step: number): string {
  return step >= 0 ? `${id} (step ${step})` : id;
}

/** What an attempt started from: a checkpoint, "fresh", or "-" when not reported. */
export function restoredFrom(a: AttemptInfo): string {
  if (!a.restoreReported) return '-';
  if (!a.restoredCheckpointId) return 'fresh';
  const skipped = a.restoreSkipped.length > 0 ? `, ${a.restoreSkipped.length} newer skipped` : '';
  return `${checkpointName(a.restoredCheckpointId, a.restoredStep)}${skipped}`;
}

/** The checkpoints line: how many are committed and the newest, or why there are none. */
export function checkpointSummary(job: JobInfo, checkpoints: CheckpointInfo[] | Error, now: number): string {
  if (checkpoints instanceof Error) return `unknown (${checkpoints.message})`;
  const newest = checkpoints[0];
  if (!newest) return job.spec?.checkpoint ? 'none committed yet' : 'not managed (the spec has no checkpoint section)';
  const age = newest.committedMs ? `, committed ${formatAge(now - newest.committedMs)} ago` : '';
  return `${checkpoints.length} committed; newest ${checkpointName(newest.checkpointId, newest.step)}${age}`;
}

/** How often the job was started again, against its restart policy. */
export function restartSummary(job: JobInfo): string {
  const restart = job.spec?.restart;
  return `${job.preemptions} of max ${restart?.maxPreemptions ?? 10}; failures: ${job.failures} of max ${restart?.maxFailures ?? 0}`;
}

/** Where an attempt ran: its zone label, else its region label. */
function locationOf(a: AttemptInfo): string {
  return a.zone || a.region || '-';
}

function seconds(ms: number): string {
  return `${Math.round(Math.abs(ms) / 1000)} s`;
}

/** Why a preempted or lost attempt ended, and what its drain saved; undefined for other attempts. */
export function preemptionLine(a: AttemptInfo): string | undefined {
  if (a.state === 'ATTEMPT_STATE_LOST') {
    return `attempt ${a.attempt} lost: no notice, ${a.nodeId} stopped answering or lost it; counted as a preemption`;
  }
  if (a.state !== 'ATTEMPT_STATE_PREEMPTED') return undefined;
  const notice = a.preemptionSource
    ? `${a.preemptionSource} notice${a.preemptionKind ? ` ${a.preemptionKind}` : ''}${a.preemptionDeadlineMs ? `, deadline ${new Date(a.preemptionDeadlineMs).toISOString()}` : ''}`
    : 'no notice recorded';
  let drain: string;
  if (!a.drainReported) drain = 'no drain report';
  else if (!a.finalCheckpointId) drain = 'no checkpoint committed: the job resumes from the start';
  else if (a.finalCheckpointIsNew) {
    const margin = a.drainMarginMs >= 0 ? `${seconds(a.drainMarginMs)} before the deadline` : `${seconds(a.drainMarginMs)} after the deadline`;
    drain = `final checkpoint ${checkpointName(a.finalCheckpointId, a.finalStep)} committed during the drain, ${margin}`;
  } else {
    drain = `final checkpoint ${checkpointName(a.finalCheckpointId, a.finalStep)}, committed before the notice (the drain's own did not make it)`;
  }
  return `attempt ${a.attempt} preempted: ${notice}; ${drain}`;
}

/** The current attempt's latest long operation, when it reported one: "progress:    pulling ...  (3s ago)". */
export function progressLines(job: JobInfo, now: number): string[] {
  const p = currentAttempt(job)?.progress;
  if (!p) return [];
  return [`progress:    ${formatProgressLine(p)}  (${formatAge(now - p.updatedMs)} ago)`];
}

/** One job with its attempts; checkpoints as ListCheckpoints answered (an Error when it failed). */
export function formatJob(job: JobInfo, now: number, checkpoints: CheckpointInfo[] | Error = []): string {
  const spec = job.spec;
  const lines = [
    `job:         ${job.jobId}`,
    `state:       ${job.state}`,
    `message:     ${job.message || '-'}`,
    `image:       ${spec?.image ?? '-'}`,
    `command:     ${spec?.command.length ? spec.command.join(' ') : '(image default)'}`,
    `gpus:        ${spec?.resources?.gpus ?? 0}`,
    `checkpoints: ${checkpointSummary(job, checkpoints, now)}`,
    `preemptions: ${restartSummary(job)}`,
    ...progressLines(job, now),
    `created:     ${new Date(job.createdMs).toISOString()} (${formatAge(now - job.createdMs)} ago)`,
    `updated:     ${new Date(job.updatedMs).toISOString()} (${formatAge(now - job.updatedMs)} ago)`,
    '',
  ];
  if (job.attempts.length === 0) {
    lines.push('attempts: none yet');
  } else {
    lines.push('attempts:');
    lines.push(formatTable(
      ['ATTEMPT', 'NODE', 'HOST', 'ZONE', 'STATE', 'GPUS', 'EXIT', 'STARTED', 'ENDED', 'RESTORED FROM', 'MESSAGE'],
      job.attempts.map((a) => [
        String(a.attempt),
        a.nodeId,
        a.hostname || '-',
        locationOf(a),
        attemptStateLabel(a.state),
        a.gpuUuids.join(',') || '-',
        a.hasExitCode ? String(a.exitCode) : '-',
        a.startedMs ? `${formatAge(now - a.startedMs)} ago` : '-',
        a.endedMs ? `${formatAge(now - a.endedMs)} ago` : '-',
        restoredFrom(a),
        a.message || '-',
      ]),
    ));
    for (const a of job.attempts) {
      const preempted = preemptionLine(a);
      if (preempted) lines.push(preempted);
      for (const skipped of a.restoreSkipped) lines.push(`attempt ${a.attempt} skipped ${skipped}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

interface StatusFlags {
  coordinator?: string;
  json?: boolean;
  agent?: string | true;
  watch?: boolean;
  nodes?: boolean;
  verbose?: boolean;
  pollSeconds: string;
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show nodes and jobs, or one job and its attempts')
    .argument('[job]', 'job id')
    .option('--coordinator <host:port>', COORDINATOR_OPTION_HELP)
    .option('--agent [socket]', "ask the agent on this host (its local socket) instead of the coordinator")
    .option('--nodes', 'show the nodes only')
    .option('-v, --verbose', 'with --nodes (or the overview): the GPUs that are not healthy, and why')
    .option('-w, --watch', 'with JOB: follow its long operations (pull, restore, input, upload) until it ends; exit 0 only if it succeeded')
    .option('--poll-seconds <n>', 'how often --watch asks for the job', '1')
    .option('--json', 'print JSON (with --watch: one object per line for each change)')
    .action(async (jobId: string | undefined, flags: StatusFlags) => {
      if (flags.agent !== undefined) {
        const socket = flags.agent;
        await import('./agent-status.ts').then((m) => m.printAgentStatus(socket, Boolean(flags.json)));
        return;
      }
      if (flags.watch && jobId === undefined) throw new UsageError('--watch follows one job: give its id, as in `stevedore status JOB --watch`');
      if (flags.nodes && jobId !== undefined) throw new UsageError('--nodes shows the nodes of the fleet; leave out the job id, or leave out --nodes');
      const pollMs = parsePollSeconds(flags.pollSeconds);
      await withControlClient(flags.coordinator, async (client) => {
        if (jobId !== undefined && flags.watch) {
          const env = process.env;
          const isTTY = Boolean(process.stdout.isTTY);
          const job = await watchJob(client, jobId, { mode: outputMode({ json: Boolean(flags.json), isTTY, env }), color: useColor({ isTTY, env }), pollMs, out: process.stdout });
          process.exitCode = job.state === 'succeeded' ? 0 : 1;
          return;
        }
        if (jobId !== undefined) {
          const job = await client.getJob(jobId);
          // The checkpoints are a secondary part of the answer: a failure to list them is shown, not fatal.
          const checkpoints = await client.listCheckpoints(jobId).catch((err: unknown) => new Error(messageOf(err)));
          if (flags.json) {
            const summary = checkpoints instanceof Error
              ? { error: checkpoints.message }
              : { committed: checkpoints.length, newest: checkpoints[0] ?? null };
            printJson({ ...job, checkpoints: summary });
          } else {
            process.stdout.write(formatJob(job, Date.now(), checkpoints));
          }
          return;
        }
        const [nodes, jobs] = await Promise.all([client.listNodes(), client.listJobs()]);
        if (flags.nodes) {
          if (flags.json) printJson({ nodes });
          else process.stdout.write(`${formatNodes(nodes, jobs, Date.now(), { verbose: Boolean(flags.verbose) })}\n`);
          return;
        }
        if (flags.json) {
          printJson({ nodes, jobs });
          return;
        }
        const steps = await checkpointSteps(client, jobs);
        const now = Date.now();
        process.stdout.write(`${formatNodes(nodes, jobs, now, { verbose: Boolean(flags.verbose) })}\n\n${formatJobs(jobs, now, steps)}\n`);
      });
    });
}
