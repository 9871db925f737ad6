import t from 'tap';
import { ATTEMPT_STATES, canTransition, isTerminal, transition } from '../../src/agent/attempt-state.ts';
import { throwsCode } from '../helpers/assert.ts';

void t.test('a new attempt can run to each end', (t) => {
  let s = transition('j.1', 'ACCEPTED', 'PULLING');
  s = transition('j.1', s, 'STARTING');
  s = transition('j.1', s, 'RUNNING');
  t.equal(transition('j.1', s, 'SUCCEEDED'), 'SUCCEEDED');
  t.equal(transition('j.1', 'RUNNING', 'FAILED'), 'FAILED');
  t.equal(transition('j.1', 'STOPPING', 'CANCELLED'), 'CANCELLED');
  t.end();
});

void t.test('ends are final and illegal moves are refused with a code', (t) => {
  for (const end of ATTEMPT_STATES.filter(isTerminal)) {
    for (const to of ATTEMPT_STATES) t.notOk(canTransition(end, to), `${end} -> ${to}`);
  }
  throwsCode(t, () => transition('job-a.2', 'SUCCEEDED', 'RUNNING'), 'ILLEGAL_TRANSITION', /job-a\.2.*SUCCEEDED to RUNNING/);
  // A running job is only cancelled through STOPPING, so the stop signal and grace always apply.
  t.notOk(canTransition('RUNNING', 'CANCELLED'));
  t.end();
});
