// The coordinator store's reads that are kept in memory (nodes, the largest
// node, job specs) and the bulk read of every job's history agree with the
// database, also after a transaction that was rolled back.
import t from 'tap';
import path from 'node:path';
import { Store } from '../../src/coordinator/store.ts';
import type { NodeRecord } from '../../src/coordinator/store.ts';
import { validateJobSpec } from '../../src/spec/job-spec.ts';
import type { Inventory__Output } from '../../src/proto/load.ts';

function inventory(gpus: number): Inventory__Output {
  return {
    hostname: 'h', cpuModel: 'c', cpuCores: 8, memoryBytes: 1024, os: 'linux', kernel: '6', arch: 'x64',
    gpus: Array.from({ length: gpus }, (_, i) => ({ index: i, uuid: `GPU-${i}`, name: 'g', memoryMib: 1, driverVersion: '1', pciBusId: `0000:0${i}:00.0`, health: null })),
  } as unknown as Inventory__Output;
}

function node(nodeId: string, gpus: number): Omit<NodeRecord, 'highestEventId'> {
  return { nodeId, hostname: nodeId, agentVersion: '1', labels: { zone: 'z' }, inventory: inventory(gpus), state: 'online', draining: false, lastSeenMs: 1 };
}

void t.test('nodes read back as written, in node id order, and a rolled-back transaction leaves no trace in them', (t) => {
  const dbPath = path.join(t.testdir({}), 'c.db');
  const store = new Store(dbPath);
  t.teardown(() => store.close());
  t.equal(store.largestGpuCount(), undefined, 'no node: no largest');
  store.upsertNode(node('node-b', 2));
  store.upsertNode(node('node-a', 4));
  t.same(store.listNodes().map((n) => n.nodeId), ['node-a', 'node-b']);
  t.equal(store.largestGpuCount(), 4);

  t.throws(() =>
    store.transaction(() => {
      store.setNodeState('node-a', 'lost');
      store.setNodeDraining('node-b', true);
      store.upsertNode(node('node-c', 8));
      t.equal(store.largestGpuCount(), 8, 'inside the transaction its writes show');
      throw new Error('boom');
    }),
  );
  t.equal(store.getNode('node-a')?.state, 'online', 'the state written in the rolled-back transaction is gone');
  t.equal(store.getNode('node-b')?.draining, false);
  t.equal(store.getNode('node-c'), undefined, 'the node inserted in it is gone');
  t.equal(store.largestGpuCount(), 4, 'and so is its GPU count');

  store.transaction(() => {
    store.touchNode('node-b', 42);
    store.setHighestEventId('node-b', 7);
    store.setNodeInventory('node-b', inventory(6));
  });
  const mine = store.getNode('node-b');
  if (mine) mine.state = 'lost';
  t.equal(store.getNode('node-b')?.state, 'online', 'a caller changing its copy does not change the store');
  store.close();

  // What another store reads from the file is what this one kept in memory.
  const again = new Store(dbPath);
  t.teardown(() => again.close());
  t.same(again.listNodes(), [
    { ...node('node-a', 4), highestEventId: 0 },
    { ...node('node-b', 6), lastSeenMs: 42, highestEventId: 7 },
  ]);
  t.equal(again.largestGpuCount(), 6);
  t.end();
});

void t.test("every job's history read at once is each job's history read alone", (t) => {
  const store = new Store(path.join(t.testdir({}), 'c.db'));
  t.teardown(() => store.close());
  const spec = validateJobSpec({ name: 'j', image: 'x:1', command: ['true'], resources: { gpus: 1 } });
  for (const jobId of ['j-1', 'j-2', 'j-3']) store.insertJob({ jobId, spec, state: 'queued', message: '', createdMs: 1, updatedMs: 1, currentAttempt: 0 });
  for (const attempt of [1, 2]) {
    store.insertAttempt({ jobId: 'j-1', attempt, nodeId: 'n', state: 'ATTEMPT_STATE_FAILED', gpuUuids: ['GPU-0'], exitCode: 1, message: 'm', containerId: 'c', startedMs: 1, endedMs: 2 });
    store.setPlacement({ jobId: 'j-1', attempt, hostname: 'h', zone: 'z', region: 'r' });
  }
  store.insertAttempt({ jobId: 'j-2', attempt: 1, nodeId: 'n', state: 'ATTEMPT_STATE_RUNNING', gpuUuids: [], exitCode: null, message: '', containerId: '', startedMs: 1, endedMs: 0 });
  store.setRestore({ jobId: 'j-2', attempt: 1, checkpointId: 'ck', step: 3, bytes: 10, durationMs: 5, skipped: ['a'], reportedMs: 9 });
  store.setDrainReport({ jobId: 'j-2', attempt: 1, nodeId: 'n', noticeId: 'x', finalCheckpointId: 'ck', finalStep: 3, finalCheckpointIsNew: true, committedMs: 1, deadlineMs: 2, marginMs: 1, reportedMs: 3 });
  store.countRestart('j-1', 'failures');
  store.countRestart('j-2', 'preemptions');
  const all = store.allJobHistories();
  for (const jobId of ['j-1', 'j-2']) t.same(all.get(jobId), store.jobHistory(jobId), jobId);
  t.equal(all.get('j-3'), undefined, 'a job with no attempt has no history');
  t.same(store.jobHistory('j-3').attempts, []);
  t.equal(store.getJob('j-1')?.spec, store.listJobs().find((j) => j.jobId === 'j-1')?.spec, 'the spec is parsed once per job');
  t.same(store.getJob('j-1')?.spec, spec);
  t.end();
});
