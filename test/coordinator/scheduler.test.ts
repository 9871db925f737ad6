import t from 'tap';
import { isElsewhere, planPlacement } from '../../src/coordinator/scheduler.ts';

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

void t.test('a job away from its preempted zone goes elsewhere first, then anywhere that fits', (t) => {
  const nodes = [
    { nodeId: 'a1', freeGpus: 2, activeAttempts: 0, zone: 'us-east-1a', region: 'us-east-1' },
    { nodeId: 'b1', freeGpus: 4, activeAttempts: 2, zone: 'us-east-1b', region: 'us-east-1' },
  ];
  const away = { zone: 'us-east-1a', region: 'us-east-1' };
  t.same(planPlacement([{ jobId: 'j', gpus: 2, awayFrom: away }], nodes).placed, [{ jobId: 'j', nodeId: 'b1' }], 'another zone beats a better fit');
  t.same(planPlacement([{ jobId: 'j', gpus: 2 }], nodes).placed, [{ jobId: 'j', nodeId: 'a1' }], 'without a preemption: best fit');
  t.same(planPlacement([{ jobId: 'j', gpus: 4, awayFrom: away }], [nodes[0]!, { ...nodes[1]!, freeGpus: 1 }]).placed, [], 'nothing fits');
  t.same(planPlacement([{ jobId: 'j', gpus: 2, awayFrom: away }], [nodes[0]!, { ...nodes[1]!, freeGpus: 1 }]).placed, [{ jobId: 'j', nodeId: 'a1' }], 'the same zone when nothing else fits');
  t.end();
});

void t.test('locality: zone labels first, region labels when a zone is missing; unknown is not elsewhere', (t) => {
  t.equal(isElsewhere({ zone: 'z1', region: 'r1' }, { zone: 'z2', region: 'r1' }), true);
  t.equal(isElsewhere({ zone: 'z1', region: 'r1' }, { zone: 'z1', region: 'r2' }), false, 'the zone decides when both have one');
  t.equal(isElsewhere({ zone: '', region: 'r1' }, { zone: 'z1', region: 'r2' }), true, 'no zone: the region decides');
  t.equal(isElsewhere({ zone: '', region: '' }, { zone: 'z1', region: 'r2' }), false);
  t.equal(isElsewhere(undefined, { zone: 'z1' }), false);
  t.end();
});

void t.test('an excluded node is never used for that job, and the reason says so', (t) => {
  const plan = planPlacement(
    [{ jobId: 'j', gpus: 1, exclude: new Set(['n1']) }, { jobId: 'k', gpus: 1 }],
    [{ nodeId: 'n1', freeGpus: 1, activeAttempts: 0 }],
  );
  t.same(plan.placed, [{ jobId: 'k', nodeId: 'n1' }]);
  t.same(plan.waiting, [{ jobId: 'j', message: 'waiting for 1 free GPU; free now: n1 0 (preempted it)' }]);
  t.end();
});
