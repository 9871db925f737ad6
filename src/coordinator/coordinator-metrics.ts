// The coordinator's Prometheus metrics, in a registry of its own. Jobs, nodes,
// GPUs and sessions are computed from the engine's state when Prometheus
// scrapes; events, placements and Control requests are counted as they
// happen. docs/operations.md lists every metric and what it means.
import * as grpc from '@grpc/grpc-js';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ControlHandlers } from '../gen/stevedore/v1/Control.ts';
import { collectProcessMetrics } from '../util/status-http-server.ts';
import type { NodeView, NodeViewState } from './engine.ts';
import { JOB_STATES, type JobState } from './job-state.ts';

/** What the metrics read from the coordinator at scrape time; empty while it is not running. */
export interface CoordinatorMetricsSource {
  jobStates(): Iterable<JobState>;
  nodes(): readonly NodeView[];
  /** Nodes with an open session. */
  sessions(): number;
}

/** What the engine reports as it works. */
export interface EngineMetrics {
  /** A new (not duplicate) event from an agent, by its body (stateChanged, exited, logs, ...). */
  event(type: string): void;
  /** An attempt placed, after waiting this long in the queue. */
  placed(queueWaitMs: number): void;
}

export interface CoordinatorMetricsOptions {
  version: string;
  /** Process metrics (memory, CPU, event loop, GC) as well. Default true. */
  processMetrics?: boolean;
}

const NODE_STATES: readonly NodeViewState[] = ['online', 'offline', 'lost', 'draining', 'preempting'];
/** States whose node has a session and counts for the fleet's GPUs. */
const CONNECTED: ReadonlySet<NodeViewState> = new Set(['online', 'draining', 'preempting']);
/** Submission (or the previous attempt's end) to placement: 0.1 s to an hour. */
export const QUEUE_WAIT_BUCKETS = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600];
/** Unary Control calls: 1 ms to 10 s. */
export const CONTROL_LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class CoordinatorMetrics implements EngineMetrics {
  readonly registry = new Registry();
  private readonly events: Counter<'type'>;
  private readonly placements: Counter;
  private readonly queueWait: Histogram;
  private readonly controlRequests: Counter<'method' | 'code'>;
  private readonly controlLatency: Histogram<'method'>;

  constructor(source: CoordinatorMetricsSource, opts: CoordinatorMetricsOptions) {
    const registers = [this.registry];
    if (opts.processMetrics ?? true) collectProcessMetrics(this.registry);

    new Gauge({
      name: 'stevedore_build_info',
      help: 'Always 1; the coordinator version in the label.',
      labelNames: ['version'],
      registers,
    }).set({ version: opts.version }, 1);

    new Gauge({
      name: 'stevedore_coordinator_jobs',
      help: 'Jobs by state.',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<JobState, number>(JOB_STATES.map((s) => [s, 0]));
        for (const state of source.jobStates()) counts.set(state, (counts.get(state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'stevedore_coordinator_nodes',
      help: 'Nodes by state: online, offline (session ended, lease running), lost, draining, preempting.',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<NodeViewState, number>(NODE_STATES.map((s) => [s, 0]));
        for (const node of source.nodes()) counts.set(node.viewState, (counts.get(node.viewState) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    new Gauge({
      name: 'stevedore_coordinator_gpus',
      help: 'GPUs of connected nodes: total, allocated (healthy and held or reserved by attempts), unhealthy; total = allocated + free + unhealthy.',
      labelNames: ['state'],
      registers,
      collect() {
        let total = 0;
        let allocated = 0;
        let unhealthy = 0;
        for (const node of source.nodes()) {
          if (!CONNECTED.has(node.viewState)) continue;
          total += node.totalGpus;
          allocated += Math.max(0, node.healthyGpus - node.freeGpus);
          unhealthy += node.totalGpus - node.healthyGpus;
        }
        this.set({ state: 'total' }, total);
        this.set({ state: 'allocated' }, allocated);
        this.set({ state: 'unhealthy' }, unhealthy);
      },
    });
    new Gauge({
      name: 'stevedore_coordinator_sessions',
      help: 'Agents with an open session.',
      registers,
      collect() {
        this.set(source.sessions());
      },
    });

    this.events = new Counter({
      name: 'stevedore_coordinator_events_total',
      help: 'Events from agents stored and applied (duplicates not counted), by type.',
      labelNames: ['type'],
      registers,
    });
    this.placements = new Counter({
      name: 'stevedore_coordinator_placements_total',
      help: 'Attempts placed on nodes.',
      registers,
    });
    this.queueWait = new Histogram({
      name: 'stevedore_coordinator_queue_wait_seconds',
      help: "Per placement: time in the queue, from the job's submission (or its previous attempt's end) to the placement.",
      buckets: QUEUE_WAIT_BUCKETS,
      registers,
    });
    this.controlRequests = new Counter({
      name: 'stevedore_coordinator_control_requests_total',
      help: 'Control API calls by method and gRPC status code.',
      labelNames: ['method', 'code'],
      registers,
    });
    this.controlLatency = new Histogram({
      name: 'stevedore_coordinator_control_request_duration_seconds',
      help: 'Control API unary calls: time to answer, by method (StreamLogs streams are not timed).',
      labelNames: ['method'],
      buckets: CONTROL_LATENCY_BUCKETS,
      registers,
    });
  }

  event(type: string): void {
    this.events.inc({ type });
  }

  placed(queueWaitMs: number): void {
    this.placements.inc();
    this.queueWait.observe(Math.max(0, queueWaitMs) / 1000);
  }

  /** The same handlers, each call counted by method and status code, unary ones timed. */
  instrumentControl(handlers: ControlHandlers): ControlHandlers {
    const out: Record<string, unknown> = {};
    for (const [method, handler] of Object.entries(handlers)) {
      if (typeof handler !== 'function') out[method] = handler;
      else if (handler.length >= 2) out[method] = this.unary(method, handler as grpc.handleUnaryCall<unknown, unknown>);
      else out[method] = this.serverStream(method, handler as grpc.handleServerStreamingCall<unknown, unknown>);
    }
    return out as unknown as ControlHandlers;
  }

  private unary(method: string, handler: grpc.handleUnaryCall<unknown, unknown>): grpc.handleUnaryCall<unknown, unknown> {
    return (call, callback) => {
      const end = this.controlLatency.startTimer({ method });
      handler(call, (err, ...rest) => {
        end();
        this.controlRequests.inc({ method, code: codeName(err ? (err.code ?? grpc.status.UNKNOWN) : grpc.status.OK) });
        callback(err, ...rest);
      });
    };
  }

  private serverStream(method: string, handler: grpc.handleServerStreamingCall<unknown, unknown>): grpc.handleServerStreamingCall<unknown, unknown> {
    return (call) => {
      let counted = false;
      const count = (code: number): void => {
        if (counted) return;
        counted = true;
        this.controlRequests.inc({ method, code: codeName(code) });
      };
      call.on('finish', () => count(grpc.status.OK));
      call.on('error', (err: Partial<grpc.StatusObject>) => count(err.code ?? grpc.status.UNKNOWN));
      call.on('cancelled', () => count(grpc.status.CANCELLED));
      handler(call);
    };
  }
}

function codeName(code: number): string {
  return grpc.status[code] ?? String(code);
}
