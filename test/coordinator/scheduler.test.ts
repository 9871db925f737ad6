import t from 'tap';
import { planPlacement } from '../../src/coordinator/scheduler.ts';

void t.test('best fit: the fewest free GPUs that fit, then the fewest active attempts', (t) => {
  const plan = planPlacement(
    [{ jobId: 'a', gpus: 2 }, { jobId: 'b', gpus: 1 }],
    [
      { nodeId: 'n1', freeGpus: 8, activeAttempts: 0 },
      { nodeId: 'n2', freeGpus: 2, activeAttempts: 3 },
      { nodeId: 'n3', freeGpus: 2, activeAttempts: 1 },
    ],
  );
  t.same(plan.placed, [{ jobId: 'a', nodeId: 'n3' }, { jobId: 'b', nodeId: 'n2' }]);
  t.same(plan.waiting, []);
  t.end();
});

void t.test('capacity taken by earlier jobs in the same pass is not handed out twice', (t) => {
  const plan = planPlacement(
    [{ jobId: 'a', gpus: 3 }, { jobId: 'b', gpus: 3 }, { jobId: 'c', gpus: 1 }],
    [{ nodeId: 'n1', freeGpus: 4, activeAttempts: 0 }],
  );
  t.same(plan.placed, [{ jobId: 'a', nodeId: 'n1' }, { jobId: 'c', nodeId: 'n1' }]);
  t.same(plan.waiting, [{ jobId: 'b', message: 'waiting for 3 free GPUs; free now: n1 0' }]);
  t.end();
});

void t.test('a node that just refused a job is avoided for it, and the reason says so', (t) => {
  const plan = planPlacement([{ jobId: 'a', gpus: 1, avoid: new Set(['n1']) }], [{ nodeId: 'n1', freeGpus: 4, activeAttempts: 0 }]);
  t.same(plan.placed, []);
  t.same(plan.waiting, [{ jobId: 'a', message: 'waiting for 1 free GPU; free now: n1 4 (just refused it)' }]);
  const none = planPlacement([{ jobId: 'z', gpus: 0 }], []);
  t.same(none.waiting, [{ jobId: 'z', message: 'waiting for a node; no node is online' }]);
  t.end();
});
