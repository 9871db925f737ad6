// The agent's Prometheus metrics, in a registry of its own (several agents can
// share a process in tests). Gauges that mirror state (attempts, GPUs, the
// session, the journal) are read from the agent when Prometheus scrapes;
// counters and histograms are fed as things happen. docs/operations.md lists
// every metric and what it means.
// First: prom-client without the OpenTelemetry API it would load (see the module).
import './deferred-modules.ts';
import { Counter, Gauge, Histogram, Registry, exponentialBuckets } from 'prom-client';
import type { CommittedCheckpoint, UploadMetrics } from '../checkpoint/checkpoint-uploader.ts';
import { ATTEMPT_STATES, type AttemptState } from './attempt-state.ts';
import type { JournalEvent } from './event-journal.ts';
import { collectProcessMetrics } from '../util/status-http-server.ts';

/** What the metrics read from the agent at scrape time. */
export interface AgentMetricsSource {
  /** The state of every attempt the agent holds. */
  attemptStates(): Iterable<AttemptState>;
  gpus(): { total: number; allocated: number; unhealthy: number };
  /** Journaled events the coordinator has not acknowledged. */
  eventsPending(): number;
  sessionConnected(): boolean;
  /** Times the session ended and was dialed again, since the agent started. */
  sessionReconnects(): number;
}

export interface AgentMetricsOptions {
  version: string;
  /** Process metrics (memory, CPU, event loop, GC) as well. Default true. */
  processMetrics?: boolean;
}

/** Last byte of a checkpoint to its committed manifest: 50 ms to 2 minutes. */
export const TIME_TO_COMMIT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120];
/** Per-checkpoint upload throughput: 1 MiB/s to 2 GiB/s. */
export const THROUGHPUT_BUCKETS = exponentialBuckets(1024 * 1024, 2, 12);
export const DRAIN_DURATION_BUCKETS = [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300];
/** Time left before the deadline when the final checkpoint became durable. */
export const DRAIN_MARGIN_BUCKETS = [0, 1, 2, 5, 10, 15, 20, 30, 60, 120];

export class AgentMetrics implements UploadMetrics {
  readonly registry = new Registry();
  private readonly uploadedBytes: Counter;
  private readonly throughput: Histogram;
  private readonly timeToCommit: Histogram;
  private readonly commits: Counter<'result'>;
  private readonly notices: Counter<'source'>;
  private readonly drainDuration: Histogram;
  private readonly drainMargin: Histogram;
  private readonly inFlight = new Set<() => number>();

  constructor(source: AgentMetricsSource, opts: AgentMetricsOptions) {
    const registers = [this.registry];
    if (opts.processMetrics ?? true) collectProcessMetrics(this.registry);
    const inFlight = this.inFlight;

    new Gauge({
      name: 'stevedore_build_info',
      help: 'Always 1; the agent version in the label.',
      labelNames: ['version'],
      registers,
    }).set({ version: opts.version }, 1);

    new Gauge({
      name: 'stevedore_agent_attempts',
      help: 'Attempts held by this agent, by state (ended ones stay until the coordinator has their end).',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<AttemptState, number>(ATTEMPT_STATES.map((s) => [s, 0]));
        for (const state of source.attemptStates()) counts.set(state, (counts.get(state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state: state.toLowerCase() }, n);
      },
    });
    new Gauge({
      name: 'stevedore_agent_gpus',
      help: 'GPUs of this node: total, allocated to attempts, and unhealthy (failing their health check).',
      labelNames: ['state'],
      registers,
      collect() {
        const gpus = source.gpus();
        this.set({ state: 'total' }, gpus.total);
        this.set({ state: 'allocated' }, gpus.allocated);
        this.set({ state: 'unhealthy' }, gpus.unhealthy);
      },
    });

    this.uploadedBytes = new Counter({
      name: 'stevedore_checkpoint_uploaded_bytes_total',
      help: 'Checkpoint bytes sent to the object store (parts and whole objects, including those of checkpoints later abandoned).',
      registers,
    });
    this.throughput = new Histogram({
      name: 'stevedore_checkpoint_upload_throughput_bytes_per_second',
      help: 'Per committed checkpoint: bytes uploaded divided by the time from first seeing it to its committed manifest.',
      buckets: THROUGHPUT_BUCKETS,
      registers,
    });
    this.timeToCommit = new Histogram({
      name: 'stevedore_checkpoint_time_to_commit_seconds',
      help: "Per committed checkpoint: from its newest file's last write to its committed manifest.",
      buckets: TIME_TO_COMMIT_BUCKETS,
      registers,
    });
    this.commits = new Counter({
      name: 'stevedore_checkpoint_commits_total',
      help: 'Checkpoint commit rounds by result: committed, failed (tried again on the next change) or abandoned (a newer one committed first).',
      labelNames: ['result'],
      registers,
    });
    for (const result of ['committed', 'failed', 'abandoned']) this.commits.inc({ result }, 0);
    new Gauge({
      name: 'stevedore_checkpoint_uploads_in_flight',
      help: 'Checkpoints with transfers under way (streaming parts, or being completed and committed), across all jobs.',
      registers,
      collect() {
        let n = 0;
        for (const count of inFlight) n += count();
        this.set(n);
      },
    });

    this.notices = new Counter({
      name: 'stevedore_preemption_notices_total',
      help: 'Preemption notices received, by source (aws, gcp, azure, aws-rebalance, coordinator, sigterm); a notice seen again counts once.',
      labelNames: ['source'],
      registers,
    });
    this.drainDuration = new Histogram({
      name: 'stevedore_drain_duration_seconds',
      help: 'Drains of the node, from the notice to the final checkpoints reported.',
      buckets: DRAIN_DURATION_BUCKETS,
      registers,
    });
    this.drainMargin = new Histogram({
      name: 'stevedore_drain_margin_seconds',
      help: "Per drained attempt whose final checkpoint was new: time left before the notice's deadline when it was committed.",
      buckets: DRAIN_MARGIN_BUCKETS,
      registers,
    });

    let reconnectsSeen = 0;
    new Counter({
      name: 'stevedore_session_reconnects_total',
      help: 'Times the session with the coordinator ended and was dialed again.',
      registers,
      collect() {
        const now = source.sessionReconnects();
        if (now > reconnectsSeen) this.inc(now - reconnectsSeen);
        reconnectsSeen = Math.max(reconnectsSeen, now);
      },
    });
    new Gauge({
      name: 'stevedore_session_connected',
      help: '1 while the agent is registered with its coordinator, else 0.',
      registers,
      collect() {
        this.set(source.sessionConnected() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'stevedore_events_pending',
      help: 'Journaled events the coordinator has not acknowledged yet.',
      registers,
      collect() {
        this.set(source.eventsPending());
      },
    });
  }

  bytesUploaded(bytes: number): void {
    this.uploadedBytes.inc(bytes);
  }

  committed(c: CommittedCheckpoint): void {
    this.commits.inc({ result: 'committed' });
    this.timeToCommit.observe(c.timeToCommitMs / 1000);
    const m = c.manifest;
    const seconds = (m.committedMs - m.firstSeenMs) / 1000;
    // A checkpoint that sent nothing (every file reused) says nothing about throughput.
    if (m.uploadedBytes > 0 && seconds > 0) this.throughput.observe(m.uploadedBytes / seconds);
  }

  notCommitted(result: 'failed' | 'abandoned'): void {
    this.commits.inc({ result });
  }

  trackInFlight(count: () => number): () => void {
    const entry = (): number => count();
    this.inFlight.add(entry);
    return () => {
      this.inFlight.delete(entry);
    };
  }

  /** Feeds what the journal records: preemption notices and drain reports. */
  journaled(e: JournalEvent): void {
    if ('preemptionNotice' in e.body) this.notices.inc({ source: e.body.preemptionNotice.source || 'unknown' });
    else if ('drainReport' in e.body && e.body.drainReport.finalCheckpointIsNew) this.drainMargin.observe(e.body.drainReport.marginMs / 1000);
  }

  /** A drain of the node ended (done or not). */
  drained(durationMs: number): void {
    this.drainDuration.observe(durationMs / 1000);
  }
}
