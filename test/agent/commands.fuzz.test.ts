// Hostile coordinators: generated commands (starts with mutated specs, hostile
// job ids and attempt numbers, stops of attempts the agent never had, commands
// without a known instruction, repeated command ids, messages that are no
// command at all, then drains with absurd deadlines) reach a real agent over
// its real session, against the test engine. The agent never goes down (its
// local API answers, a valid job runs afterwards), every bad command gets a
// refusal with a clear error naming what was wrong, and no refused command
// leaves a container.
import t from 'tap';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import type * as grpc from '@grpc/grpc-js';
import { fetchAgentStatus } from '../../src/agent/local-api.ts';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { v1, type AgentMessage__Output, type CoordinatorMessage, type CoordinatorMessage__Output } from '../../src/proto/load.ts';
import type { Command } from '../../src/gen/stevedore/v1/Command.ts';
import { fromSpecMessage, validateJobSpec } from '../../src/spec/job-spec.ts';
import { isStevedoreError } from '../../src/util/errors.ts';
import { FIELD_MUTATIONS, FuzzTally, fuzzParams, fuzzRuns, nastyString, validSpecDoc } from '../helpers/arbitraries.ts';
import { setupAgent, trainerSpec, type AgentSetup } from '../helpers/agent-harness.ts';
import { testEngineEnv } from '../helpers/engine.ts';

const RUNS = fuzzRuns(200, 0.1);
/** An acknowledgement slower than this is a hang (the machine is shared). */
const HANG_MS = 5000;
/** Not on the test engine, never pulled: an accepted generated start fails before any container exists. */
const ABSENT_IMAGE = 'stevedore-fuzz/absent:1';

const engine = new DockerEngine({ dockerHost: testEngineEnv().dockerHost });

/** The codes of src/util/errors.ts: a refusal carries one of them. */
const KNOWN_CODES = new Set([...readFileSync(new URL('../../src/util/errors.ts', import.meta.url), 'utf8').matchAll(/^\s*\| '([A-Z_]+)'/gm)].map((m) => m[1]));

// The session's own serializer: what a coordinator can put on the wire, as the agent will read it.
const connect = (v1.AgentSession.service as unknown as Record<string, grpc.MethodDefinition<unknown, CoordinatorMessage>>).Connect;
function overTheWire(msg: CoordinatorMessage): CoordinatorMessage__Output {
  if (!connect) throw new Error('no Connect method in the session service');
  return connect.responseDeserialize(connect.responseSerialize(msg)) as CoordinatorMessage__Output;
}

function serializes(msg: CoordinatorMessage): boolean {
  try {
    overTheWire(msg);
    return true;
  } catch {
    return false;
  }
}

type Ack = NonNullable<AgentMessage__Output['commandAck']>;

/** Sends a command and waits for the next acknowledgement with its id (ids may repeat: earlier acks do not count). */
async function send(s: AgentSetup, command: Command, timeoutMs = 15000): Promise<Ack> {
  const id = command.commandId ?? '';
  const before = s.coordinator.received.filter((m) => m.msg === 'commandAck' && m.commandAck?.commandId === id).length;
  let seen = 0;
  const ack = s.coordinator.waitFor((m) => m.msg === 'commandAck' && m.commandAck?.commandId === id && ++seen > before, timeoutMs);
  s.coordinator.send({ command });
  const msg = await ack;
  if (!msg.commandAck) throw new Error('ack without body');
  return msg.commandAck;
}

/** A refusal a person can act on: a known code (not INTERNAL), a sentence, no serialization debris. */
function isClear(ack: Ack): boolean {
  const code = ack.error?.code ?? '';
  const message = ack.error?.message ?? '';
  return !ack.accepted && KNOWN_CODES.has(code) && code !== 'INTERNAL' && message.length >= 15 && !/\[object Object\]|undefined:|: Invalid input$/m.test(message);
}

/** What the parser says of a spec as the agent receives it: undefined when valid. */
function parserVerdict(spec: unknown): { code: string; message: string } | undefined {
  try {
    fromSpecMessage(spec);
    return undefined;
  } catch (err) {
    if (!isStevedoreError(err)) throw new Error(`the parser threw ${String(err)}`, { cause: err });
    return { code: err.code, message: err.message };
  }
}

type Case =
  | { kind: 'mutated-spec'; field: string; doc: Record<string, unknown> }
  | { kind: 'hostile-id'; jobId: string; attempt: number }
  | { kind: 'stop-unknown'; jobId: string; attempt: number; reason: string }
  | { kind: 'no-instruction' }
  | { kind: 'not-a-command'; msg: CoordinatorMessage };

const absurdInt = fc.oneof(fc.constantFrom(0, 1, 2, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -1, -(2 ** 31)), fc.integer({ min: -5, max: 5 }));
const hostileId = fc.oneof(nastyString, fc.constantFrom('', '.', '..', '../x', 'a/b', 'UPPER', 'job id', `j${'a'.repeat(200)}`, 'x'.repeat(100_000)), fc.constant('ok-job'));

const caseArb: fc.Arbitrary<Case> = fc.oneof(
  {
    weight: 5,
    // A valid spec in the form the coordinator sends (validated), with one field made wrong.
    arbitrary: fc.tuple(validSpecDoc, fc.constantFrom(...FIELD_MUTATIONS)).chain(([doc, mutation]) => mutation.bad.map((value): Case => {
      // Never a container even when accepted: an image absent from the engine, never pulled; no download from the network.
      const copy: Record<string, unknown> = { ...structuredClone(validateJobSpec(doc)), image: ABSENT_IMAGE, pullPolicy: 'never' };
      delete copy.mounts;
      delete copy.input;
      mutation.apply(copy, value);
      return { kind: 'mutated-spec', field: mutation.path, doc: copy };
    // What no coordinator can send (the serializer throws: a string where a list goes) is left out.
    })).filter((c) => c.kind !== 'mutated-spec' || serializes({ command: { startJob: { jobId: 'x', attempt: 1, spec: c.doc } } })),
  },
  { weight: 2, arbitrary: fc.record({ jobId: hostileId, attempt: absurdInt }).map((r): Case => ({ kind: 'hostile-id', ...r })) },
  { weight: 1, arbitrary: fc.record({ jobId: hostileId, attempt: absurdInt, reason: nastyString }).map((r): Case => ({ kind: 'stop-unknown', ...r })) },
  { weight: 1, arbitrary: fc.constant<Case>({ kind: 'no-instruction' }) },
  { weight: 1, arbitrary: fc.constantFrom<CoordinatorMessage>({}, { eventAck: { upToEventId: 2 ** 53 - 1 } }, { eventAck: { upToEventId: -1 } }, { heartbeatAck: { receivedAtMs: -1 } }, { error: { error: { code: 'X', message: 'x'.repeat(100_000) } } }, { registered: { sessionId: 'again', heartbeatIntervalMs: 0, leaseMs: 0 } }).map((msg): Case => ({ kind: 'not-a-command', msg })) },
);

/** The last segment of a field path, as a message names it: "mounts[0].target" -> "target". */
function fieldName(path: string): string {
  return path.replace(/\[\d+\]/g, '').split('.').pop() ?? path;
}

/** The first test's agent log: its journal and session are written beside it at teardown. */
let fuzzLogFile = '';

void t.test('generated hostile commands: the agent refuses each clearly, creates no container for it, and goes on serving', async (t) => {
  const s = await setupAgent(t, 4);
  fuzzLogFile = s.log.file;
  const tally = new FuzzTally();
  const counts = { start: 0, refusedStarts: 0, acceptedStarts: 0, specsValidAfterWire: 0, stops: 0, noInstruction: 0, notCommands: 0, duplicates: 0 };
  const accepted = new Set<string>();
  const refused = new Set<string>();
  let n = 0;

  await fc.assert(
    fc.asyncProperty(caseArb, fc.boolean(), async (c, repeatId) => {
      n++;
      const commandId = `fuzz-${n}`;
      const start = performance.now();
      try {
        if (c.kind === 'not-a-command') {
          counts.notCommands++;
          s.coordinator.send(overTheWire(c.msg));
          return;
        }
        let command: Command;
        let expect: (ack: Ack) => string | undefined;
        if (c.kind === 'mutated-spec') {
          counts.start++;
          const jobId = `fz-${n}`;
          const wire = overTheWire({ command: { commandId, startJob: { jobId, attempt: 1, spec: c.doc } } }).command;
          if (!wire) throw new Error('command lost in serialization');
          command = wire;
          const verdict = parserVerdict(wire.startJob?.spec);
          // The wire can turn a wrong value into a right one ("yes" into true): the parser's word on what arrives decides.
          if (!verdict) counts.specsValidAfterWire++;
          expect = (ack) => {
            (ack.accepted ? accepted : refused).add(jobId);
            if (verdict) {
              // The agent passes the parser's refusal on as it is: the code and the message naming the field.
              if (ack.accepted) return `accepted a spec the parser refuses (${verdict.message})`;
              if (ack.error?.code !== verdict.code || ack.error.message !== verdict.message) return `refusal differs from the parser's: ${JSON.stringify(ack.error)} vs ${JSON.stringify(verdict)}`;
              if (!ack.error.message.includes(fieldName(c.field))) return `refusal does not name ${c.field}: ${ack.error.message}`;
            }
            return undefined;
          };
        } else if (c.kind === 'hostile-id') {
          counts.start++;
          command = { commandId, startJob: { jobId: c.jobId, attempt: c.attempt, spec: trainerSpec('fuzz-id', { image: ABSENT_IMAGE }) } };
          const wireAttempt = overTheWire({ command }).command?.startJob?.attempt ?? 0;
          const validId = /^[a-z0-9][a-z0-9._-]{0,127}$/.test(c.jobId) && !c.jobId.includes('..');
          expect = (ack) => {
            (ack.accepted ? accepted : refused).add(c.jobId);
            if (!validId && (ack.accepted || !/job id/.test(ack.error?.message ?? ''))) return `job id ${JSON.stringify(c.jobId.slice(0, 40))}: ${JSON.stringify(ack)}`;
            if (validId && wireAttempt < 1 && (ack.accepted || !/attempt/.test(ack.error?.message ?? ''))) return `attempt ${wireAttempt}: ${JSON.stringify(ack)}`;
            return undefined;
          };
        } else if (c.kind === 'stop-unknown') {
          counts.stops++;
          command = { commandId, stopJob: { jobId: c.jobId, attempt: c.attempt, reason: c.reason } };
          // Idempotent: a stop for an attempt the agent does not hold is acknowledged without effect.
          expect = (ack) => (ack.accepted ? undefined : `stop refused: ${JSON.stringify(ack.error)}`);
        } else {
          counts.noInstruction++;
          command = { commandId };
          expect = (ack) => (!ack.accepted && ack.error?.code === 'SESSION_PROTOCOL' && /no known instruction/.test(ack.error.message) ? undefined : `a command without an instruction: ${JSON.stringify(ack)}`);
        }
        const ack = await send(s, command);
        if (!ack.accepted && !isClear(ack)) {
          tally.unclear++;
          throw new Error(`unclear refusal: ${JSON.stringify(ack.error)}`);
        }
        if (ack.accepted && (c.kind === 'mutated-spec' || c.kind === 'hostile-id')) counts.acceptedStarts++;
        if (!ack.accepted && (c.kind === 'mutated-spec' || c.kind === 'hostile-id')) counts.refusedStarts++;
        const wrong = expect(ack);
        if (wrong) {
          tally.unclear++;
          throw new Error(wrong);
        }
        if (repeatId) {
          // The same command id again: answered again, the same way.
          counts.duplicates++;
          const again = await send(s, command);
          if (again.accepted !== ack.accepted || (again.error?.code ?? '') !== (ack.error?.code ?? '')) {
            // A start accepted once is accepted again (idempotent); a refusal stays the same refusal, though GPUs may have been freed meanwhile.
            if (ack.error?.code !== 'GPUS_UNAVAILABLE') {
              tally.unclear++;
              throw new Error(`the repeated command ${commandId} was answered ${JSON.stringify(again)}, first ${JSON.stringify(ack)}`);
            }
          }
        }
      } finally {
        tally.tried++;
        const ms = performance.now() - start;
        if (ms > tally.slowestMs) tally.slowestMs = ms;
        if (ms > HANG_MS) tally.hung++;
      }
    }),
    fuzzParams(RUNS),
  );

  // An acknowledgement of an id past 2^53 (found by this property: it left every later event with one id, all but one lost)
  // is ignored, whatever the cases above were.
  s.coordinator.send({ eventAck: { upToEventId: 2 ** 53 - 1 } });
  // Still up: the local API answers and a valid job runs to its end, its events delivered.
  const status = await fetchAgentStatus(s.config.socketPath);
  t.equal(status.nodeId, s.agent.nodeId, 'the local API answers after the hostile commands');
  const ok = await send(s, { commandId: 'valid-after', startJob: { jobId: 'valid-after', attempt: 1, spec: trainerSpec('valid-after') } });
  t.ok(ok.accepted, `a valid start is accepted afterwards ${JSON.stringify(ok.error)}`);
  const exited = await s.coordinator.waitFor((m) => m.msg === 'event' && m.event?.jobId === 'valid-after' && m.event.body === 'exited', 60000);
  t.equal(exited.event?.exited?.state, 'ATTEMPT_STATE_SUCCEEDED', 'and runs to success');

  // No container for anything refused; none at all for the generated starts (their image is absent).
  const containers = await engine.list({ [LABELS.nodeId]: s.agent.nodeId });
  const jobs = containers.map((c) => c.labels[LABELS.jobId] ?? '');
  t.same(jobs.filter((j) => refused.has(j) && !accepted.has(j)), [], 'no container for a refused command');
  t.same(jobs.filter((j) => j !== 'valid-after'), [], 'no container for any generated command');
  t.equal(tally.crashed + tally.hung + tally.unclear, 0, tally.line('hostile commands'));
  t.comment(`${tally.line('hostile commands')}; starts ${counts.start} (refused ${counts.refusedStarts}, accepted ${counts.acceptedStarts}; specs valid after the wire ${counts.specsValidAfterWire}), stops of unknown attempts ${counts.stops}, commands without an instruction ${counts.noInstruction}, messages that are no command ${counts.notCommands}, repeated command ids ${counts.duplicates}; containers for refused commands 0`);
});

void t.test('drains with absurd deadlines: each acknowledged, the running job reported once, the agent serving and refusing new jobs clearly', async (t) => {
  const s = await setupAgent(t, 2);
  const running = await send(s, { commandId: 'long', startJob: { jobId: 'long', attempt: 1, spec: trainerSpec('long', {}, { TRAIN_STEPS: '1000', TRAIN_STEP_SECONDS: '0.1' }) } });
  t.ok(running.accepted, 'a long job is running');
  await s.coordinator.waitFor((m) => m.msg === 'event' && m.event?.jobId === 'long' && m.event.stateChanged?.state === 'ATTEMPT_STATE_RUNNING', 30000);
  const deadlines = [0, -1, 1, -(2 ** 53 - 1), 2 ** 53 - 1, 2 ** 63, Date.now() - 1e9, Date.now() + 2 ** 31 + 5, Date.now() + 86_400_000 * 365 * 1000];
  const reasons = fc.sample(nastyString, deadlines.length);
  for (const [i, deadlineMs] of deadlines.entries()) {
    const ack = await send(s, overTheWire({ command: { commandId: `drain-${i}`, drain: { reason: reasons[i] ?? '', deadlineMs } } }).command ?? {});
    t.ok(ack.accepted, `drain with deadline ${deadlineMs} acknowledged ${JSON.stringify(ack.error)}`);
  }
  const status = await fetchAgentStatus(s.config.socketPath);
  t.ok(status.draining, 'the local API answers and says the node drains');
  const refusedStart = await send(s, { commandId: 'after-drain', startJob: { jobId: 'after-drain', attempt: 1, spec: trainerSpec('after-drain', { image: ABSENT_IMAGE }) } });
  t.match(refusedStart, { accepted: false, error: { code: 'NODE_DRAINING', message: /draining and takes no new jobs/ } }, 'a new job is refused clearly');
  const exited = await s.coordinator.waitFor((m) => m.msg === 'event' && m.event?.jobId === 'long' && m.event.body === 'exited', 60000);
  t.ok(exited.event?.exited?.state, `the running job ended and was reported: ${exited.event?.exited?.state}`);
  await new Promise((r) => setTimeout(r, 500));
  t.equal(s.coordinator.events('long').filter((e) => e.body === 'exited').length, 1, 'once');
  t.equal((await fetchAgentStatus(s.config.socketPath)).nodeId, s.agent.nodeId, 'the agent still serves its local API');
});

void t.test('the agent\'s journal and every message it sent, refusals included, are written as text for the scan for secrets', (t) => {
  const session = readFileSync(fuzzLogFile.replace(/\.log$/, '-session.txt'), 'utf8');
  t.match(session, /"commandAck":\{"commandId":"fuzz-\d+","accepted":false,"error":\{"code":"[A-Z_]+","message":"/, 'the acknowledgements, with their errors');
  t.match(readFileSync(fuzzLogFile.replace(/\.log$/, '-journal.txt'), 'utf8'), /"jobId":"valid-after"/, 'the journal');
  t.end();
});
