// The life of one attempt of a job on this agent, as an explicit state machine.
// Every transition goes through `transition`, which refuses anything not in
// the table: a bug shows up as an ILLEGAL_TRANSITION error, not as a job in a
// state nobody planned for.
import type { AttemptState__Output as WireAttemptState } from '../gen/stevedore/v1/AttemptState.ts';
import { StevedoreError } from '../util/errors.ts';

export type AttemptState =
  | 'ACCEPTED'  // command accepted, GPUs reserved, job directory made
  | 'PULLING'   // image being pulled
  | 'STARTING'  // container created, being started
  | 'RUNNING'
  | 'STOPPING'  // stop signal sent, grace period running
  | 'SUCCEEDED' // exited 0
  | 'FAILED'    // exited non-zero, or could not be started
  | 'CANCELLED' // stopped on request
  | 'PREEMPTED'; // stopped because the node is going away (after its final checkpoint)

const TRANSITIONS: Readonly<Record<AttemptState, readonly AttemptState[]>> = {
  ACCEPTED: ['PULLING', 'STARTING', 'STOPPING', 'FAILED', 'CANCELLED', 'PREEMPTED'],
  PULLING: ['STARTING', 'STOPPING', 'FAILED', 'CANCELLED', 'PREEMPTED'],
  STARTING: ['RUNNING', 'STOPPING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'PREEMPTED'],
  // A running job asked for its final checkpoint may exit on its own: PREEMPTED without STOPPING.
  RUNNING: ['STOPPING', 'SUCCEEDED', 'FAILED', 'PREEMPTED'],
  STOPPING: ['SUCCEEDED', 'FAILED', 'CANCELLED', 'PREEMPTED'],
  SUCCEEDED: [],
  FAILED: [],
  CANCELLED: [],
  PREEMPTED: [],
};

export const TERMINAL_STATES: ReadonlySet<AttemptState> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'PREEMPTED']);

export function isTerminal(state: AttemptState): boolean {
  return TERMINAL_STATES.has(state);
}

export function canTransition(from: AttemptState, to: AttemptState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Returns `to`, or throws ILLEGAL_TRANSITION naming the attempt. */
export function transition(attemptKey: string, from: AttemptState, to: AttemptState): AttemptState {
  if (!canTransition(from, to)) {
    throw new StevedoreError('ILLEGAL_TRANSITION', `attempt ${attemptKey} cannot go from ${from} to ${to}`);
  }
  return to;
}

/** The protocol's name for a state (proto AttemptState). */
export function toWireState(state: AttemptState): WireAttemptState {
  return `ATTEMPT_STATE_${state}`;
}

export const ATTEMPT_STATES = Object.keys(TRANSITIONS) as AttemptState[];
