// The Control service: the operator API the CLI uses. Every handler turns its
// errors into a gRPC status with a clear message; the stable Stevedore error
// code travels in the trailing metadata key `stevedore-error-code`.
import * as grpc from '@grpc/grpc-js';
import type { ControlHandlers } from '../gen/stevedore/v1/Control.ts';
import type { Job } from '../gen/stevedore/v1/Job.ts';
import type { Node } from '../gen/stevedore/v1/Node.ts';
import type { JobLogLine } from '../gen/stevedore/v1/JobLogLine.ts';
import type { Checkpoint } from '../gen/stevedore/v1/Checkpoint.ts';
import type { Logger } from '../util/logger.ts';
import { isStevedoreError, messageOf } from '../util/errors.ts';
import type { ErrorCode } from '../util/errors.ts';
import { isResume } from './engine.ts';
import type { Engine, JobView, NodeView } from './engine.ts';
import type { CheckpointRecord, Store } from './store.ts';
import type { JobBus } from './job-bus.ts';
import { isTerminal } from './job-state.ts';

export const ERROR_CODE_METADATA_KEY = 'stevedore-error-code';

const STATUS_OF: Partial<Record<ErrorCode, grpc.status>> = {
  SPEC_INVALID: grpc.status.INVALID_ARGUMENT,
  JOB_NOT_FOUND: grpc.status.NOT_FOUND,
  JOB_NOT_CANCELLABLE: grpc.status.FAILED_PRECONDITION,
  GPUS_UNSATISFIABLE: grpc.status.FAILED_PRECONDITION,
  NODE_NOT_FOUND: grpc.status.NOT_FOUND,
  NODE_NOT_CONNECTED: grpc.status.FAILED_PRECONDITION,
};

export function toServiceError(err: unknown): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  if (isStevedoreError(err)) {
    metadata.set(ERROR_CODE_METADATA_KEY, err.code);
    return { code: STATUS_OF[err.code] ?? grpc.status.INTERNAL, details: err.message, metadata };
  }
  metadata.set(ERROR_CODE_METADATA_KEY, 'INTERNAL');
  return { code: grpc.status.INTERNAL, details: `the coordinator failed: ${messageOf(err)}; see its log` };
}

export function jobMessage(job: JobView): Job {
  return {
    jobId: job.jobId,
    state: job.state,
    spec: job.spec,
    message: job.message,
    createdMs: job.createdMs,
    updatedMs: job.updatedMs,
    preemptions: job.restarts.preemptions,
    failures: job.restarts.failures,
    attempts: job.attempts.map((a) => ({
      attempt: a.attempt,
      nodeId: a.nodeId,
      state: a.state,
      gpuUuids: a.gpuUuids,
      exitCode: a.exitCode ?? 0,
      hasExitCode: a.exitCode !== null,
      message: a.message,
      startedMs: a.startedMs,
      endedMs: a.endedMs,
      restoreReported: a.restore !== null,
      restoredCheckpointId: a.restore?.checkpointId ?? '',
      restoredStep: a.restore?.step ?? -1,
      restoredBytes: a.restore?.bytes ?? 0,
      restoreDurationMs: a.restore?.durationMs ?? 0,
      restoreSkipped: a.restore?.skipped ?? [],
      resume: isResume(a.attempt),
      hostname: a.placement?.hostname ?? '',
      zone: a.placement?.zone ?? '',
      region: a.placement?.region ?? '',
      preemptionNoticeId: a.notice?.noticeId ?? '',
      preemptionSource: a.notice?.source ?? '',
      preemptionKind: a.notice?.kind ?? '',
      preemptionDeadlineMs: a.notice?.deadlineMs ?? 0,
      drainReported: a.drain !== null,
      finalCheckpointId: a.drain?.finalCheckpointId ?? '',
      finalStep: a.drain?.finalStep ?? -1,
      finalCheckpointIsNew: a.drain?.finalCheckpointIsNew ?? false,
      finalCommittedMs: a.drain?.committedMs ?? 0,
      drainMarginMs: a.drain?.marginMs ?? 0,
      progress: a.progress,
    })),
  };
}

export function checkpointMessage(c: CheckpointRecord): Checkpoint {
  return { ...c };
}

export function nodeMessage(node: NodeView): Node {
  return {
    nodeId: node.nodeId,
    hostname: node.hostname,
    state: node.viewState,
    labels: node.labels,
    inventory: node.inventory,
    lastSeenMs: node.lastSeenMs,
    agentVersion: node.agentVersion,
    allocatedGpuUuids: node.allocatedGpuUuids,
  };
}

export interface ControlDeps {
  engine: () => Engine;
  store: () => Store;
  bus: JobBus;
  logger: Logger;
  /** Open StreamLogs followers, ended on shutdown. */
  followers: Set<() => void>;
}

export function controlHandlers(deps: ControlDeps): ControlHandlers {
  /**
   * `act` runs at once; the reply is made and sent once every commit so far is
   * durable (Engine.afterDurable), so that a caller never hears of a change a
   * power loss could undo, and a reply made then includes the placement that
   * the same batch made.
   */
  const acting = <Req, Res, T>(name: string, act: (req: Req) => T, reply: (req: Req, done: T) => Res): grpc.handleUnaryCall<Req, Res> => (call, callback) => {
    const fail = (err: unknown): void => {
      if (!isStevedoreError(err)) deps.logger.error({ method: name, err: messageOf(err) }, 'Control call failed');
      callback(toServiceError(err));
    };
    let done: T;
    try {
      done = act(call.request);
    } catch (err) {
      fail(err);
      return;
    }
    deps.engine().afterDurable(() => {
      try {
        callback(null, reply(call.request, done));
      } catch (err) {
        fail(err);
      }
    });
  };
  const unary = <Req, Res>(name: string, fn: (req: Req) => Res): grpc.handleUnaryCall<Req, Res> => acting(name, fn, (_req, res: Res) => res);

  return {
    SubmitJob: acting('SubmitJob', (req) => deps.engine().submit(req.spec), (_req, job) => jobMessage(deps.engine().getJob(job.jobId))),
    GetJob: unary('GetJob', (req) => jobMessage(deps.engine().getJob(req.jobId))),
    ListJobs: unary('ListJobs', () => ({ jobs: deps.engine().listJobs().map(jobMessage) })),
    ListNodes: unary('ListNodes', () => ({ nodes: deps.engine().listNodes().map(nodeMessage) })),
    CancelJob: acting('CancelJob', (req) => deps.engine().cancel(req.jobId), (req) => jobMessage(deps.engine().getJob(req.jobId))),
    DrainNode: unary('DrainNode', (req) => nodeMessage(deps.engine().drainNode(req.nodeId, req.reason, req.deadlineSeconds))),
    ListCheckpoints: unary('ListCheckpoints', (req) => ({ checkpoints: deps.engine().listCheckpoints(req.jobId).map(checkpointMessage) })),
    StreamLogs: (call) => {
      try {
        streamLogs(call, deps);
      } catch (err) {
        if (!isStevedoreError(err)) deps.logger.error({ method: 'StreamLogs', err: messageOf(err) }, 'Control call failed');
        call.emit('error', toServiceError(err));
      }
    },
  };
}

function streamLogs(call: grpc.ServerWritableStream<{ jobId: string; follow: boolean }, JobLogLine>, deps: ControlDeps): void {
  const { jobId, follow } = call.request;
  const store = deps.store();
  deps.engine().requireJob(jobId);
  let lastId = 0;
  let done = false;

  const drain = (): void => {
    for (;;) {
      const lines = store.logsAfter(jobId, lastId, 500);
      for (const l of lines) {
        call.write({ attempt: l.attempt, line: { timeMs: l.timeMs, stream: l.stream, text: l.text } });
        lastId = l.id;
      }
      if (lines.length < 500) return;
    }
  };

  const finish = (end: () => void): void => {
    if (done) return;
    done = true;
    unsubscribe();
    deps.followers.delete(shutdown);
    end();
  };
  const shutdown = (): void => finish(() => call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'the coordinator is shutting down; follow the logs again when it is back' }));

  const onChange = (): void => {
    if (done) return;
    try {
      drain();
      const job = store.getJob(jobId);
      if (!follow || !job || isTerminal(job.state)) finish(() => call.end());
    } catch (err) {
      deps.logger.error({ jobId, err: messageOf(err) }, 'log stream failed');
      finish(() => call.emit('error', toServiceError(err)));
    }
  };

  const unsubscribe = deps.bus.subscribe(jobId, onChange);
  deps.followers.add(shutdown);
  call.on('cancelled', () => finish(() => undefined));
  onChange();
}
