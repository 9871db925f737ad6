// `stevedore status [JOB]`: nodes and jobs as the coordinator sees them, or one
// job with its attempts. `--agent` asks the agent on this host instead.
import type { Command } from 'commander';
import { COORDINATOR_OPTION_HELP, withControlClient } from '../../client/control-client.ts';
import type { CheckpointInfo, JobInfo, NodeInfo } from '../../client/control-client.ts';
import { messageOf } from '../../util/errors.ts';
import { formatTable, printJson } from '../output.ts';

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

export function formatOverview(nodes: NodeInfo[], jobs: JobInfo[], now: number): string {
  const used = usedGpus(jobs);
  const nodeTable = nodes.length === 0
    ? 'no nodes have registered yet'
    : formatTable(
      ['NODE', 'STATE', 'GPUS FREE/TOTAL', 'LABELS', 'LAST SEEN'],
      nodes.map((n) => {
        const total = n.inventory?.gpus.length ?? 0;
        return [
          n.nodeId,
          n.state,
          `${Math.max(0, total - (used.get(n.nodeId) ?? 0))}/${total}`,
          Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(',') || '-',
          n.lastSeenMs ? `${formatAge(now - n.lastSeenMs)} ago` : '-',
        ];
      }),
    );
  const jobTable = jobs.length === 0
    ? 'no jobs yet: submit one with `stevedore submit SPEC.yaml`'
    : formatTable(
      ['JOB', 'STATE', 'NODE', 'ATTEMPT', 'GPUS', 'AGE', 'MESSAGE'],
      jobs.map((j) => {
        const a = currentAttempt(j);
        return [j.jobId, j.state, a?.nodeId ?? '-', a ? String(a.attempt) : '-', String(j.spec?.resources?.gpus ?? 0), formatAge(now - j.createdMs), j.message];
      }),
    );
  return `${nodeTable}\n\n${jobTable}\n`;
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
}

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description('show nodes and jobs, or one job and its attempts')
    .argument('[job]', 'job id')
    .option('--coordinator <host:port>', COORDINATOR_OPTION_HELP)
    .option('--agent [socket]', "ask the agent on this host (its local socket) instead of the coordinator")
    .option('--json', 'print JSON')
    .action(async (jobId: string | undefined, flags: StatusFlags) => {
      if (flags.agent !== undefined) {
        const socket = flags.agent;
        await import('./agent-status.ts').then((m) => m.printAgentStatus(socket, Boolean(flags.json)));
        return;
      }
      await withControlClient(flags.coordinator, async (client) => {
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
        if (flags.json) printJson({ nodes, jobs });
        else process.stdout.write(formatOverview(nodes, jobs, Date.now()));
      });
    });
}
