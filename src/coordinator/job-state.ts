// A job's life at the coordinator, with every allowed transition in one table.
import { StevedoreError } from '../util/errors.ts';

export type JobState = 'queued' | 'scheduled' | 'running' | 'cancelling' | 'succeeded' | 'failed' | 'cancelled';

export const JOB_STATES: readonly JobState[] = ['queued', 'scheduled', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled'];

const TRANSITIONS: Readonly<Record<JobState, readonly JobState[]>> = {
  // placed on a node, or cancelled before it was
  queued: ['scheduled', 'cancelled'],
  // the node accepted and started it, refused it or lost it (back to the queue or failed), or it ended early
  scheduled: ['running', 'queued', 'cancelling', 'succeeded', 'failed', 'cancelled'],
  // it ended, or its attempt was preempted, lost or failed with a retryable exit code: back to the queue to resume
  running: ['cancelling', 'succeeded', 'failed', 'cancelled', 'queued'],
  // whatever ends the attempt, a cancelling job ends cancelled
  cancelling: ['cancelled'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

export function isTerminal(state: JobState): boolean {
  return TRANSITIONS[state].length === 0;
}

export function canTransition(from: JobState, to: JobState): boolean {
  return from === to || TRANSITIONS[from].includes(to);
}

export function assertTransition(jobId: string, from: JobState, to: JobState): void {
  if (!canTransition(from, to)) {
    throw new StevedoreError('ILLEGAL_TRANSITION', `job ${jobId} cannot go from ${from} to ${to}; this is a bug in the coordinator, please report it with its log`);
  }
}
