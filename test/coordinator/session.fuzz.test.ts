// Hostile agents: generated AgentMessage sequences (any order, no register,
// repeated or decreasing event ids, unknown jobs, absurd numbers, huge strings,
// unknown enum values) over real gRPC never bring the coordinator down, and a
// well-behaved agent is served normally afterwards.
import t from 'tap';
import fc from 'fast-check';
import * as grpc from '@grpc/grpc-js';
import type { AgentMessage } from '../../src/proto/load.ts';
import { MAX_MESSAGE_BYTES } from '../../src/coordinator/coordinator.ts';
import { fuzzParams, fuzzRuns, nastyString } from '../helpers/arbitraries.ts';
import { setup, spec } from './fake-agent.ts';

const NODES = ['node-a', 'node-b', 'n', 'bad id', ''];
const JOBS = ['', 'job-1', 'job-2', 'unknown', '../x'];

const absurd = fc.oneof(fc.constantFrom(0, -1, 1, 2, 3, 2 ** 31, 2 ** 53 - 1, 2 ** 63, -(2 ** 63), Number.MAX_SAFE_INTEGER), fc.integer({ min: -10, max: 10 }));
const text = fc.oneof(nastyString, fc.constant('x'.repeat(100_000)));
const state = fc.oneof(fc.constantFrom('ATTEMPT_STATE_RUNNING', 'ATTEMPT_STATE_SUCCEEDED', 'ATTEMPT_STATE_FAILED', 'ATTEMPT_STATE_PREEMPTED', 'ATTEMPT_STATE_UNSPECIFIED', 'ATTEMPT_STATE_LOST'), fc.integer({ min: -5, max: 99 }));

const event: fc.Arbitrary<AgentMessage> = fc.record({
  eventId: absurd,
  timeMs: absurd,
  jobId: fc.constantFrom(...JOBS),
  attempt: absurd,
  body: fc.oneof(
    fc.record({ stateChanged: fc.record({ state, message: text, gpuUuids: fc.array(text, { maxLength: 3 }), containerId: text }) }),
    fc.record({ exited: fc.record({ state, exitCode: absurd, message: text }) }),
    fc.record({ logs: fc.record({ lines: fc.array(fc.record({ timeMs: absurd, stream: text, text }), { maxLength: 3 }).chain((few) => fc.constantFrom(few, Array.from({ length: 3000 }, (_, i) => ({ timeMs: i, stream: 'stdout', text: `line ${i}` })))) }) }),
    fc.record({ checkpointCommitted: fc.record({ checkpointId: text, name: text, step: absurd, totalBytes: absurd, uploadedBytes: absurd, files: absurd, lastWriteMs: absurd, committedMs: absurd, timeToCommitMs: absurd, manifestKey: text }) }),
    fc.record({ checkpointRestored: fc.record({ checkpointId: text, step: absurd, bytes: absurd, durationMs: absurd }) }),
    fc.record({ preemptionNotice: fc.record({ noticeId: text, source: text, kind: text, deadlineMs: absurd, receivedMs: absurd }) }),
    fc.record({ drainReport: fc.record({ noticeId: text, finalCheckpointId: text, outcome: text }) }),
    fc.record({ progress: fc.record({ phase: text, doneBytes: absurd, totalBytes: absurd, finished: fc.boolean() }) }),
    fc.constant({}),
  ),
}).map(({ body, ...head }) => ({ event: { ...head, ...body } as NonNullable<AgentMessage['event']> }));

const message: fc.Arbitrary<AgentMessage> = fc.oneof(
  fc.record({ nodeId: fc.constantFrom(...NODES), protocolVersion: fc.constantFrom(1, 1, 1, 0, 2, -1), attempts: fc.array(fc.record({ jobId: fc.constantFrom(...JOBS), attempt: absurd, state }), { maxLength: 3 }), lastEventId: absurd, labels: fc.dictionary(text, text, { maxKeys: 2 }) })
    .map((register) => ({ register: { agentVersion: 'fuzz', ...register } as NonNullable<AgentMessage['register']> })),
  fc.record({ heartbeat: fc.record({ sentAtMs: absurd, runningAttempts: absurd }) }),
  event,
  fc.record({ commandAck: fc.record({ commandId: fc.oneof(text, fc.uuid()), accepted: fc.boolean(), error: fc.option(fc.record({ code: text, message: text }), { nil: undefined }) }) }),
  fc.constant({}),
);

/** Waits for the stream to say something (or end): the coordinator took everything sent so far. */
async function settle(agent: ReturnType<Awaited<ReturnType<typeof setup>>['agent']>): Promise<void> {
  await Promise.race([agent.status, agent.next(() => true, 3000).catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
}

void t.test('generated message sequences from hostile agents: the coordinator keeps serving, state stays consistent', async (t) => {
  const s = await setup(t);
  // Real jobs for the hostile agents' events to hit.
  for (const name of ['job-1', 'job-2']) await s.client.submitJob(spec(name, 0));
  let sequences = 0;
  let messages = 0;
  const closedWith = new Map<string, number>();
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...NODES), fc.boolean(), fc.array(message, { minLength: 1, maxLength: 12 }), async (nodeId, registerFirst, sequence) => {
      sequences++;
      const agent = s.agent(nodeId || 'x');
      // Most sequences start as a real agent does, so that the rest reaches the engine.
      if (registerFirst) sequence.unshift({ register: { nodeId: 'node-a', protocolVersion: 1, agentVersion: 'fuzz' } });
      for (const m of sequence) {
        messages++;
        agent.send(m);
      }
      agent.send({ heartbeat: { sentAtMs: 1 } });
      await settle(agent);
      const ended = await Promise.race([agent.status, new Promise<undefined>((r) => setTimeout(r, 50, undefined))]);
      if (ended) {
        const name = grpc.status[ended.code] ?? String(ended.code);
        closedWith.set(name, (closedWith.get(name) ?? 0) + 1);
        // A bad stream is closed with a status that says why, never a crash.
        if (ended.code === grpc.status.INTERNAL || ended.code === grpc.status.UNKNOWN) throw new Error(`stream ended with ${name}: ${ended.details}`);
        if (!ended.details) throw new Error(`stream ended with ${name} and no details`);
      }
      agent.kill();
    }),
    fuzzParams(fuzzRuns(100, 1 / 10)),
  );
  t.comment(`tried ${sequences} hostile sequences (${messages} messages); streams closed by the coordinator: ${JSON.stringify(Object.fromEntries(closedWith))}`);

  // A well-behaved agent is served as usual afterwards.
  const good = s.agent('good-node');
  const reg = await good.register({ gpus: 2 });
  t.ok(reg.registered?.sessionId, 'a good agent registers');
  t.ok(await good.heartbeat(), 'and gets its heartbeat acknowledged');
  const id = await good.logs('', 0, [{ text: 'hello' }]);
  t.ok(id > 0, 'and its event is acknowledged');
  // Consistent state: every job in exactly one state, each node listed once.
  const jobs = await s.client.listJobs();
  t.same(jobs.map((j) => j.jobId).length, new Set(jobs.map((j) => j.jobId)).size, 'no job listed twice');
  const nodes = await s.client.listNodes();
  t.equal(nodes.length, new Set(nodes.map((n) => n.nodeId)).size, 'no node listed twice');
  t.ok(nodes.every((n) => /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(n.nodeId)), 'no invalid node id was stored');
});

void t.test('repeated and decreasing event ids are stored once', async (t) => {
  const s = await setup(t);
  const a = s.agent('node-a');
  await a.register();
  const ids = fc.sample(fc.integer({ min: 1, max: 30 }), { numRuns: 200, ...fuzzParams(200) });
  let highest = 0;
  for (const id of ids) {
    const acked = await a.logs('', 0, [{ text: `e${id}` }], id);
    // The ack never goes back, and skips to an id only when it is new.
    highest = Math.max(highest, id);
    if (acked !== highest) t.fail(`event ${id}: acknowledged ${acked}, expected ${highest}`);
  }
  const distinct = ids.filter((id, i) => ids.findIndex((x, j) => x === id && j <= i) === i && ids.slice(0, i).every((x) => x < id)).length;
  t.equal(s.coordinator.duplicateEvents, ids.length - distinct, `${ids.length - distinct} resent or older ids counted as duplicates, never applied twice`);
});

void t.test(`a message over ${MAX_MESSAGE_BYTES} bytes ends that stream with RESOURCE_EXHAUSTED; other agents are unaffected`, async (t) => {
  const s = await setup(t);
  const bystander = s.agent('node-b');
  await bystander.register();
  const big = s.agent('node-a');
  await big.register();
  big.send({ event: { eventId: 1, jobId: '', attempt: 0, logs: { lines: [{ timeMs: 1, stream: 'stdout', text: 'x'.repeat(MAX_MESSAGE_BYTES) }] } } });
  const st = await big.status;
  t.equal(st.code, grpc.status.RESOURCE_EXHAUSTED, `the big stream: ${grpc.status[st.code]} ${st.details}`);
  t.match(st.details, /larger than max/i);
  t.ok(await bystander.heartbeat(), 'the other agent still gets its heartbeat acknowledged');
  // Just under the limit is taken.
  const ok = s.agent('node-c');
  await ok.register();
  const acked = await ok.logs('', 0, [{ text: 'y'.repeat(MAX_MESSAGE_BYTES - 1024) }]);
  t.equal(acked, 1, 'a message just under the limit is taken');
  const again = s.agent('node-a');
  await again.register();
  t.ok(await again.heartbeat(), 'the agent that sent too much can connect again');
});
