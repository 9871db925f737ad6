// The coordinator's state in one embedded SQLite database (node:sqlite, WAL).
// Everything the coordinator acknowledges is written here first, so that a
// restart loses nothing. All access is synchronous; callers group related
// writes with transaction().
import type { CheckpointCommitted__Output } from '../gen/stevedore/v1/CheckpointCommitted.ts';
import { DatabaseSync } from 'node:sqlite';
import type { SQLInputValue, StatementSync } from 'node:sqlite';
import { closeSync, fsync, fsyncSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import type { JobSpec } from '../spec/job-spec.ts';
import type { Inventory__Output } from '../proto/load.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import type { JobState } from './job-state.ts';

/** The node's connection state as stored; "draining" is a separate flag. */
export type NodeState = 'online' | 'offline' | 'lost';

/**
 * An attempt's state: the wire enum's names, plus ATTEMPT_STATE_SCHEDULED for an
 * attempt sent to its node and not yet accepted (the coordinator's view only).
 */
export type AttemptStateName =
  | 'ATTEMPT_STATE_SCHEDULED'
  | 'ATTEMPT_STATE_ACCEPTED'
  | 'ATTEMPT_STATE_PULLING'
  | 'ATTEMPT_STATE_STARTING'
  | 'ATTEMPT_STATE_RUNNING'
  | 'ATTEMPT_STATE_STOPPING'
  | 'ATTEMPT_STATE_SUCCEEDED'
  | 'ATTEMPT_STATE_FAILED'
  | 'ATTEMPT_STATE_CANCELLED'
  | 'ATTEMPT_STATE_LOST'
  | 'ATTEMPT_STATE_PREEMPTED';

export const TERMINAL_ATTEMPT_STATES: ReadonlySet<AttemptStateName> = new Set([
  'ATTEMPT_STATE_SUCCEEDED', 'ATTEMPT_STATE_FAILED', 'ATTEMPT_STATE_CANCELLED', 'ATTEMPT_STATE_LOST', 'ATTEMPT_STATE_PREEMPTED',
]);

export function isAttemptActive(state: AttemptStateName): boolean {
  return !TERMINAL_ATTEMPT_STATES.has(state);
}

export interface NodeRecord {
  nodeId: string;
  hostname: string;
  agentVersion: string;
  labels: Record<string, string>;
  inventory: Inventory__Output | null;
  state: NodeState;
  draining: boolean;
  lastSeenMs: number;
  highestEventId: number;
}

export interface JobRecord {
  jobId: string;
  seq: number;
  spec: JobSpec;
  state: JobState;
  message: string;
  createdMs: number;
  updatedMs: number;
  /** 0 until the first attempt is created. */
  currentAttempt: number;
}

export interface AttemptRecord {
  jobId: string;
  attempt: number;
  nodeId: string;
  state: AttemptStateName;
  gpuUuids: string[];
  exitCode: number | null;
  message: string;
  containerId: string;
  startedMs: number;
  endedMs: number;
}

export type CommandKind = 'startJob' | 'stopJob' | 'drain';

export interface CommandRecord {
  commandId: string;
  nodeId: string;
  kind: CommandKind;
  jobId: string;
  attempt: number;
  createdMs: number;
}

export interface LogRecord {
  id: number;
  jobId: string;
  attempt: number;
  timeMs: number;
  stream: string;
  text: string;
}

/** A committed checkpoint, as an agent reported it: the CheckpointCommitted message and whose it is. */
export type CheckpointRecord = CheckpointCommitted__Output & { jobId: string; attempt: number; nodeId: string };

/** What an attempt restored before its container started (CheckpointRestored). */
export interface RestoreRecord {
  jobId: string;
  attempt: number;
  /** '' when nothing was committed: the attempt started fresh. */
  checkpointId: string;
  step: number;
  bytes: number;
  durationMs: number;
  /** Newer checkpoints that failed verification, with the reason. */
  skipped: string[];
  reportedMs: number;
}

/** A node's preemption notice (PreemptionNotice), as its agent reported it. */
export interface NoticeRecord {
  nodeId: string;
  noticeId: string;
  /** aws | aws-rebalance | gcp | azure | sigterm | coordinator */
  source: string;
  kind: string;
  deadlineMs: number;
  /** When the agent received it (its clock). */
  receivedMs: number;
  /** When the coordinator stored it (its clock). */
  storedMs: number;
  /** Only a hint (an AWS rebalance recommendation): the node stays eligible. */
  advisory: boolean;
  /** When the node registered again after the deadline, which ends its "preempting" state; 0 while it lasts. */
  clearedMs: number;
}

/** What the drain achieved for one attempt (DrainReport). */
export interface DrainReportRecord {
  jobId: string;
  attempt: number;
  nodeId: string;
  noticeId: string;
  /** '' when nothing was committed. */
  finalCheckpointId: string;
  finalStep: number;
  finalCheckpointIsNew: boolean;
  committedMs: number;
  deadlineMs: number;
  marginMs: number;
  reportedMs: number;
}

/** Where an attempt was placed: the node's hostname and location labels at that moment. */
export interface PlacementRecord {
  jobId: string;
  attempt: number;
  hostname: string;
  zone: string;
  region: string;
}

/** How often the job was started again, against its restart policy. */
export interface RestartCounts {
  preemptions: number;
  failures: number;
}

/** What the job view shows of a job besides its record: its attempts and what was reported of each. */
export interface JobHistory {
  /** By attempt number. */
  attempts: AttemptRecord[];
  restores: Map<number, RestoreRecord>;
  placements: Map<number, PlacementRecord>;
  drains: Map<number, DrainReportRecord>;
  restarts: RestartCounts;
}

export interface StoredEvent {
  nodeId: string;
  eventId: number;
  timeMs: number;
  jobId: string;
  attempt: number;
  kind: string;
  body: unknown;
  receivedMs: number;
}

// Tables added since version 1 (checkpoints, attempt_restores, preemption_notices,
// drain_reports, attempt_placements, job_restarts) are created with
// IF NOT EXISTS: an older database gains them when it is opened, and an older
// coordinator ignores them, so the version stays 1.
const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
  node_id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL,
  agent_version TEXT NOT NULL,
  labels TEXT NOT NULL,
  inventory TEXT,
  state TEXT NOT NULL,
  draining INTEGER NOT NULL DEFAULT 0,
  last_seen_ms INTEGER NOT NULL,
  highest_event_id INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL UNIQUE,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  message TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  current_attempt INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS attempts (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  node_id TEXT NOT NULL,
  state TEXT NOT NULL,
  gpu_uuids TEXT NOT NULL,
  exit_code INTEGER,
  message TEXT NOT NULL,
  container_id TEXT NOT NULL,
  started_ms INTEGER NOT NULL,
  ended_ms INTEGER NOT NULL,
  PRIMARY KEY (job_id, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_node ON attempts (node_id, state);
CREATE TABLE IF NOT EXISTS events (
  node_id TEXT NOT NULL,
  event_id INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  received_ms INTEGER NOT NULL,
  PRIMARY KEY (node_id, event_id)
);
CREATE TABLE IF NOT EXISTS commands (
  command_id TEXT PRIMARY KEY,
  node_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log_lines (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  stream TEXT NOT NULL,
  text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_lines_job ON log_lines (job_id, id);
CREATE TABLE IF NOT EXISTS checkpoints (
  job_id TEXT NOT NULL,
  checkpoint_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  node_id TEXT NOT NULL,
  name TEXT NOT NULL,
  step INTEGER NOT NULL,
  total_bytes INTEGER NOT NULL,
  uploaded_bytes INTEGER NOT NULL,
  files INTEGER NOT NULL,
  last_write_ms INTEGER NOT NULL,
  committed_ms INTEGER NOT NULL,
  time_to_commit_ms INTEGER NOT NULL,
  manifest_key TEXT NOT NULL,
  PRIMARY KEY (job_id, checkpoint_id)
);
CREATE TABLE IF NOT EXISTS attempt_restores (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  checkpoint_id TEXT NOT NULL,
  step INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  skipped TEXT NOT NULL,
  reported_ms INTEGER NOT NULL,
  PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS preemption_notices (
  node_id TEXT NOT NULL,
  notice_id TEXT NOT NULL,
  source TEXT NOT NULL,
  kind TEXT NOT NULL,
  deadline_ms INTEGER NOT NULL,
  received_ms INTEGER NOT NULL,
  stored_ms INTEGER NOT NULL,
  advisory INTEGER NOT NULL,
  cleared_ms INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (node_id, notice_id)
);
CREATE TABLE IF NOT EXISTS drain_reports (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  node_id TEXT NOT NULL,
  notice_id TEXT NOT NULL,
  final_checkpoint_id TEXT NOT NULL,
  final_step INTEGER NOT NULL,
  final_is_new INTEGER NOT NULL,
  committed_ms INTEGER NOT NULL,
  deadline_ms INTEGER NOT NULL,
  margin_ms INTEGER NOT NULL,
  reported_ms INTEGER NOT NULL,
  PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS attempt_placements (
  job_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  hostname TEXT NOT NULL,
  zone TEXT NOT NULL,
  region TEXT NOT NULL,
  PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS job_restarts (
  job_id TEXT PRIMARY KEY,
  preemptions INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0
);
`;

type Row = Record<string, SQLInputValue>;

const num = (v: SQLInputValue | undefined): number => Number(v ?? 0);
const str = (v: SQLInputValue | undefined): string => (typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'bigint' ? String(v) : '');

function parseJson<T>(v: SQLInputValue | undefined, fallback: T): T {
  if (typeof v !== 'string') return fallback;
  return JSON.parse(v) as T;
}

function toNode(r: Row): NodeRecord {
  return {
    nodeId: str(r.node_id),
    hostname: str(r.hostname),
    agentVersion: str(r.agent_version),
    labels: parseJson(r.labels, {}),
    inventory: parseJson<Inventory__Output | null>(r.inventory, null),
    state: str(r.state) as NodeState,
    draining: num(r.draining) === 1,
    lastSeenMs: num(r.last_seen_ms),
    highestEventId: num(r.highest_event_id),
  };
}

function toJob(r: Row, spec: JobSpec): JobRecord {
  return {
    jobId: str(r.job_id),
    seq: num(r.seq),
    spec,
    state: str(r.state) as JobState,
    message: str(r.message),
    createdMs: num(r.created_ms),
    updatedMs: num(r.updated_ms),
    currentAttempt: num(r.current_attempt),
  };
}

function toAttempt(r: Row): AttemptRecord {
  return {
    jobId: str(r.job_id),
    attempt: num(r.attempt),
    nodeId: str(r.node_id),
    state: str(r.state) as AttemptStateName,
    gpuUuids: parseJson<string[]>(r.gpu_uuids, []),
    exitCode: r.exit_code === null || r.exit_code === undefined ? null : num(r.exit_code),
    message: str(r.message),
    containerId: str(r.container_id),
    startedMs: num(r.started_ms),
    endedMs: num(r.ended_ms),
  };
}

function toCommand(r: Row): CommandRecord {
  return {
    commandId: str(r.command_id),
    nodeId: str(r.node_id),
    kind: str(r.kind) as CommandKind,
    jobId: str(r.job_id),
    attempt: num(r.attempt),
    createdMs: num(r.created_ms),
  };
}

function toLog(r: Row): LogRecord {
  return {
    id: num(r.id),
    jobId: str(r.job_id),
    attempt: num(r.attempt),
    timeMs: num(r.time_ms),
    stream: str(r.stream),
    text: str(r.text),
  };
}

function toCheckpoint(r: Row): CheckpointRecord {
  return {
    jobId: str(r.job_id),
    attempt: num(r.attempt),
    nodeId: str(r.node_id),
    checkpointId: str(r.checkpoint_id),
    name: str(r.name),
    step: num(r.step),
    totalBytes: num(r.total_bytes),
    uploadedBytes: num(r.uploaded_bytes),
    files: num(r.files),
    lastWriteMs: num(r.last_write_ms),
    committedMs: num(r.committed_ms),
    timeToCommitMs: num(r.time_to_commit_ms),
    manifestKey: str(r.manifest_key),
  };
}

function toRestore(r: Row): RestoreRecord {
  return {
    jobId: str(r.job_id),
    attempt: num(r.attempt),
    checkpointId: str(r.checkpoint_id),
    step: num(r.step),
    bytes: num(r.bytes),
    durationMs: num(r.duration_ms),
    skipped: parseJson<string[]>(r.skipped, []),
    reportedMs: num(r.reported_ms),
  };
}

function toNotice(r: Row): NoticeRecord {
  return {
    nodeId: str(r.node_id),
    noticeId: str(r.notice_id),
    source: str(r.source),
    kind: str(r.kind),
    deadlineMs: num(r.deadline_ms),
    receivedMs: num(r.received_ms),
    storedMs: num(r.stored_ms),
    advisory: num(r.advisory) === 1,
    clearedMs: num(r.cleared_ms),
  };
}

function toDrainReport(r: Row): DrainReportRecord {
  return {
    jobId: str(r.job_id),
    attempt: num(r.attempt),
    nodeId: str(r.node_id),
    noticeId: str(r.notice_id),
    finalCheckpointId: str(r.final_checkpoint_id),
    finalStep: num(r.final_step),
    finalCheckpointIsNew: num(r.final_is_new) === 1,
    committedMs: num(r.committed_ms),
    deadlineMs: num(r.deadline_ms),
    marginMs: num(r.margin_ms),
    reportedMs: num(r.reported_ms),
  };
}

function toPlacement(r: Row): PlacementRecord {
  return { jobId: str(r.job_id), attempt: num(r.attempt), hostname: str(r.hostname), zone: str(r.zone), region: str(r.region) };
}

const ACTIVE_ATTEMPT_SQL = `state NOT IN ('ATTEMPT_STATE_SUCCEEDED','ATTEMPT_STATE_FAILED','ATTEMPT_STATE_CANCELLED','ATTEMPT_STATE_LOST','ATTEMPT_STATE_PREEMPTED')`;

export class Store {
  private readonly db: DatabaseSync;
  private depth = 0;
  private closed = false;
  /** total_changes() covered by the last flush of the WAL file. */
  private syncedChanges = 0;
  private readonly totalChanges: StatementSync;
  private readonly walPath: string | undefined;
  private wal: number | undefined;
  /**
   * Prepared statements by SQL text. Compiling a statement costs more than
   * running it; the same few dozen statements run thousands of times a second
   * with a large fleet, so each is compiled once.
   */
  private readonly statements = new Map<string, StatementSync>();
  /**
   * The nodes table, parsed, by node id: loaded on first use, then kept in
   * step by every write below (this store is the database's only writer).
   * Placement passes, lease checks and submissions read every node; parsing
   * thousands of inventories each time cost more than all the rest of the
   * coordinator's work. A rolled-back transaction drops it: the next read
   * loads what the database holds.
   */
  private nodeCache: Map<string, NodeRecord> | undefined;
  /** Each job's parsed spec, with the text it was parsed from (see toJob). */
  private readonly specs = new Map<string, { raw: string; spec: JobSpec }>();
  /** The most GPUs of any cached node (undefined: no node); null when a write may have changed it. */
  private largestGpus: number | undefined | null = null;
  /** nodeCache's records by node id; undefined when a write changed them since. */
  private nodeList: NodeRecord[] | undefined;

  constructor(dbPath: string) {
    try {
      if (dbPath !== ':memory:') mkdirSync(path.dirname(path.resolve(dbPath)), { recursive: true });
      this.db = new DatabaseSync(dbPath);
      this.db.exec('PRAGMA journal_mode = WAL');
      // Commits are not flushed to disk one by one: flushWal() flushes them
      // together before anything they decided is acknowledged (see flushWal()).
      this.db.exec('PRAGMA synchronous = NORMAL');
      this.db.exec('PRAGMA busy_timeout = 5000');
      this.db.exec(SCHEMA);
      this.totalChanges = this.db.prepare('SELECT total_changes() AS n');
      this.walPath = dbPath === ':memory:' ? undefined : `${path.resolve(dbPath)}-wal`;
    } catch (err) {
      throw new StevedoreError('STATE_DIR_UNWRITABLE', `cannot open the coordinator database ${dbPath}: ${messageOf(err)}. Check that its directory exists and is writable, or choose another with --db`, { cause: err });
    }
    const version = this.db.prepare('SELECT value FROM meta WHERE key = ?').get('schema_version') as Row | undefined;
    if (version === undefined) {
      this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?)').run('schema_version', String(SCHEMA_VERSION));
    } else if (Number(version.value) !== SCHEMA_VERSION) {
      throw new StevedoreError('STATE_DIR_UNWRITABLE', `the coordinator database ${dbPath} has schema version ${str(version.value)}; this coordinator reads version ${SCHEMA_VERSION}. Use a matching stevedore version`);
    }
  }

  /** The prepared statement for sql, compiled on first use. */
  private sql(sql: string): StatementSync {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** Runs fn in one transaction; nested calls join the outer one. */
  transaction<T>(fn: () => T): T {
    if (this.depth > 0) {
      this.depth++;
      try {
        return fn();
      } finally {
        this.depth--;
      }
    }
    this.db.exec('BEGIN IMMEDIATE');
    this.depth = 1;
    try {
      const result = fn();
      this.db.exec('COMMIT');
      return result;
    } catch (err) {
      this.db.exec('ROLLBACK');
      this.dropNodeCache();
      throw err;
    } finally {
      this.depth = 0;
    }
  }

  /**
   * Whether a commit since the last flush may not survive a power loss. In
   * WAL mode with synchronous=NORMAL a commit survives a crash of the process
   * at once, and a power loss or kernel crash only once the WAL file is
   * flushed to disk: by flushWal(), syncNow(), or a checkpoint.
   */
  get needsSync(): boolean {
    return !this.closed && this.changes() !== this.syncedChanges;
  }

  /**
   * Flushes the WAL file to disk in the background (fsync on libuv's thread
   * pool), so that the event loop keeps taking messages meanwhile; calls back
   * once every commit made before the call is durable. One flush covers all
   * the commits before it, however many: this is what lets one core serve
   * thousands of agents. The coordinator sends nothing that relies on a
   * commit (event acknowledgements, after which the agent forgets the events;
   * replies to Control calls; commands) before the flush that covers it.
   */
  flushWal(callback: (err: Error | null) => void): void {
    // A flush asked for in the turn the store was closed finds it closed: closing flushed everything.
    if (this.closed) {
      callback(null);
      return;
    }
    const target = this.changes();
    if (target === this.syncedChanges) {
      callback(null);
      return;
    }
    let fd: number | undefined;
    try {
      fd = this.walFd();
    } catch (err) {
      callback(err instanceof Error ? err : new Error(messageOf(err)));
      return;
    }
    if (fd === undefined) {
      this.syncedChanges = target;
      callback(null);
      return;
    }
    fsync(fd, (err) => {
      if (!err) this.syncedChanges = Math.max(this.syncedChanges, target);
      callback(err);
    });
  }

  /** Makes every commit so far durable before it returns (at shutdown). */
  syncNow(): void {
    const target = this.changes();
    if (this.closed || target === this.syncedChanges) return;
    const fd = this.walFd();
    if (fd !== undefined) fsyncSync(fd);
    this.syncedChanges = target;
  }

  /**
   * A descriptor of the WAL file, opened once and kept (closing a descriptor of
   * a file SQLite locks could drop its locks); undefined for an in-memory
   * database. fsync() of any descriptor flushes the file itself.
   */
  private walFd(): number | undefined {
    if (this.walPath === undefined) return undefined;
    try {
      this.wal ??= openSync(this.walPath, 'r');
    } catch (err) {
      // No WAL file (nothing written since the last checkpoint removed it): nothing to flush.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return this.wal;
  }

  /** SQLite's total_changes(): rows written through this connection since it opened. */
  private changes(): number {
    const r = this.totalChanges.get() as Row | undefined;
    return num(r?.n);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Closing checkpoints the WAL into the database file and flushes it.
    this.db.close();
    if (this.wal !== undefined) closeSync(this.wal);
    this.wal = undefined;
  }

  // ---- nodes ----

  upsertNode(n: Omit<NodeRecord, 'highestEventId'>): NodeRecord {
    this
      .sql(
        `INSERT INTO nodes (node_id, hostname, agent_version, labels, inventory, state, draining, last_seen_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (node_id) DO UPDATE SET hostname = excluded.hostname, agent_version = excluded.agent_version,
           labels = excluded.labels, inventory = excluded.inventory, state = excluded.state,
           draining = excluded.draining, last_seen_ms = excluded.last_seen_ms`,
      )
      .run(n.nodeId, n.hostname, n.agentVersion, JSON.stringify(n.labels), JSON.stringify(n.inventory), n.state, n.draining ? 1 : 0, n.lastSeenMs);
    this.reloadNode(n.nodeId);
    const node = this.getNode(n.nodeId);
    if (!node) throw new StevedoreError('INTERNAL', `node ${n.nodeId} vanished right after it was stored`);
    return node;
  }

  /** The stored nodes, parsed, loaded on first use (see nodeCache). */
  private nodes(): Map<string, NodeRecord> {
    if (!this.nodeCache) {
      const rows = this.sql('SELECT * FROM nodes ORDER BY node_id').all() as Row[];
      this.nodeCache = new Map(rows.map((r) => [str(r.node_id), toNode(r)]));
      this.nodeList = undefined;
    }
    return this.nodeCache;
  }

  /** Reads one node's row again after a write that changed its JSON columns. */
  private reloadNode(nodeId: string): void {
    if (!this.nodeCache) return;
    const r = this.sql('SELECT * FROM nodes WHERE node_id = ?').get(nodeId) as Row | undefined;
    if (r) this.nodeCache.set(nodeId, toNode(r));
    else this.nodeCache.delete(nodeId);
    this.nodeList = undefined;
    this.largestGpus = null;
  }

  /** Applies a write of plain columns to the cached node (the database row was just updated the same way). */
  private patchNode(nodeId: string, patch: Partial<NodeRecord>): void {
    const cached = this.nodeCache?.get(nodeId);
    if (!cached) return;
    this.nodeCache?.set(nodeId, { ...cached, ...patch });
    this.nodeList = undefined;
  }

  /** Callers get their own copy of the record (its labels and inventory are shared: treat them as read-only). */
  getNode(nodeId: string): NodeRecord | undefined {
    const node = this.nodes().get(nodeId);
    return node ? { ...node } : undefined;
  }

  /** Every stored node, by node id. */
  listNodes(): NodeRecord[] {
    return this.nodeRecords().map((n) => ({ ...n }));
  }

  /** The stored nodes, by node id, without copies: for reading only (placement passes). */
  nodeRecords(): readonly Readonly<NodeRecord>[] {
    // Node ids are ASCII (see the session handler), so this order is SQLite's ORDER BY node_id.
    this.nodeList ??= [...this.nodes().values()].sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
    return this.nodeList;
  }

  /** Each node's id, state and last contact: what the lease check needs, without copying inventories. */
  nodeLeases(): { nodeId: string; state: NodeState; lastSeenMs: number }[] {
    return [...this.nodes().values()].map((n) => ({ nodeId: n.nodeId, state: n.state, lastSeenMs: n.lastSeenMs }));
  }

  /** The most GPUs any stored node has; undefined when no node is stored. */
  largestGpuCount(): number | undefined {
    if (this.largestGpus === null) {
      const nodes = this.nodes();
      let largest = 0;
      for (const n of nodes.values()) largest = Math.max(largest, n.inventory?.gpus.length ?? 0);
      this.largestGpus = nodes.size === 0 ? undefined : largest;
    }
    return this.largestGpus;
  }

  setNodeState(nodeId: string, state: NodeState): void {
    this.sql('UPDATE nodes SET state = ? WHERE node_id = ?').run(state, nodeId);
    this.patchNode(nodeId, { state });
  }

  /** Replaces the node's inventory (the GPUs' health changed). */
  setNodeInventory(nodeId: string, inventory: Inventory__Output): void {
    this.sql('UPDATE nodes SET inventory = ? WHERE node_id = ?').run(JSON.stringify(inventory), nodeId);
    this.reloadNode(nodeId);
  }

  setNodeDraining(nodeId: string, draining: boolean): void {
    this.sql('UPDATE nodes SET draining = ? WHERE node_id = ?').run(draining ? 1 : 0, nodeId);
    this.patchNode(nodeId, { draining });
  }

  touchNode(nodeId: string, lastSeenMs: number): void {
    this.sql('UPDATE nodes SET last_seen_ms = ? WHERE node_id = ?').run(lastSeenMs, nodeId);
    this.patchNode(nodeId, { lastSeenMs });
  }

  /** At start-up no session is open: every online node becomes offline. */
  markOnlineNodesOffline(): void {
    this.sql(`UPDATE nodes SET state = 'offline' WHERE state = 'online'`).run();
    this.dropNodeCache();
  }

  setHighestEventId(nodeId: string, eventId: number): void {
    this.sql('UPDATE nodes SET highest_event_id = ? WHERE node_id = ?').run(eventId, nodeId);
    this.patchNode(nodeId, { highestEventId: eventId });
  }

  private dropNodeCache(): void {
    this.nodeCache = undefined;
    this.nodeList = undefined;
    this.largestGpus = null;
  }

  // ---- jobs ----

  /**
   * A job row as a record. A job's spec never changes once stored, so it is
   * parsed once per job and shared (read-only) by every record of the job;
   * the stored text is compared each time, so a cached spec is never stale.
   */
  private toJob(r: Row): JobRecord {
    const jobId = str(r.job_id);
    const raw = typeof r.spec === 'string' ? r.spec : '';
    let cached = this.specs.get(jobId);
    if (cached?.raw !== raw) {
      cached = { raw, spec: parseJson<JobSpec>(r.spec, {} as JobSpec) };
      this.specs.set(jobId, cached);
    }
    return toJob(r, cached.spec);
  }

  insertJob(j: Omit<JobRecord, 'seq'>): JobRecord {
    this
      .sql('INSERT INTO jobs (job_id, spec, state, message, created_ms, updated_ms, current_attempt) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(j.jobId, JSON.stringify(j.spec), j.state, j.message, j.createdMs, j.updatedMs, j.currentAttempt);
    const job = this.getJob(j.jobId);
    if (!job) throw new StevedoreError('INTERNAL', `job ${j.jobId} vanished right after it was stored`);
    return job;
  }

  getJob(jobId: string): JobRecord | undefined {
    const r = this.sql('SELECT * FROM jobs WHERE job_id = ?').get(jobId) as Row | undefined;
    return r ? this.toJob(r) : undefined;
  }

  /** Newest first. */
  listJobs(): JobRecord[] {
    return (this.sql('SELECT * FROM jobs ORDER BY seq DESC').all() as Row[]).map((r) => this.toJob(r));
  }

  /** Queued jobs, oldest first. */
  queuedJobs(): JobRecord[] {
    return (this.sql(`SELECT * FROM jobs WHERE state = 'queued' ORDER BY seq`).all() as Row[]).map((r) => this.toJob(r));
  }

  updateJob(jobId: string, patch: { state?: JobState; message?: string; currentAttempt?: number }, nowMs: number): void {
    const sets: string[] = ['updated_ms = ?'];
    const values: SQLInputValue[] = [nowMs];
    if (patch.state !== undefined) { sets.push('state = ?'); values.push(patch.state); }
    if (patch.message !== undefined) { sets.push('message = ?'); values.push(patch.message); }
    if (patch.currentAttempt !== undefined) { sets.push('current_attempt = ?'); values.push(patch.currentAttempt); }
    this.sql(`UPDATE jobs SET ${sets.join(', ')} WHERE job_id = ?`).run(...values, jobId);
  }

  // ---- attempts ----

  insertAttempt(a: AttemptRecord): void {
    this
      .sql(
        `INSERT INTO attempts (job_id, attempt, node_id, state, gpu_uuids, exit_code, message, container_id, started_ms, ended_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(a.jobId, a.attempt, a.nodeId, a.state, JSON.stringify(a.gpuUuids), a.exitCode, a.message, a.containerId, a.startedMs, a.endedMs);
  }

  getAttempt(jobId: string, attempt: number): AttemptRecord | undefined {
    const r = this.sql('SELECT * FROM attempts WHERE job_id = ? AND attempt = ?').get(jobId, attempt) as Row | undefined;
    return r ? toAttempt(r) : undefined;
  }

  attemptsOfJob(jobId: string): AttemptRecord[] {
    return (this.sql('SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt').all(jobId) as Row[]).map(toAttempt);
  }

  activeAttemptsOnNode(nodeId: string): AttemptRecord[] {
    return (this.sql(`SELECT * FROM attempts WHERE node_id = ? AND ${ACTIVE_ATTEMPT_SQL} ORDER BY job_id, attempt`).all(nodeId) as Row[]).map(toAttempt);
  }

  /** Each active attempt's node, job and GPUs: what placement needs of them. */
  activeAttemptHolds(): { nodeId: string; jobId: string; gpuUuids: string[] }[] {
    return (this.sql(`SELECT node_id, job_id, gpu_uuids FROM attempts WHERE ${ACTIVE_ATTEMPT_SQL}`).all() as Row[]).map((r) => ({
      nodeId: str(r.node_id),
      jobId: str(r.job_id),
      gpuUuids: parseJson<string[]>(r.gpu_uuids, []),
    }));
  }

  activeAttempts(): AttemptRecord[] {
    return (this.sql(`SELECT * FROM attempts WHERE ${ACTIVE_ATTEMPT_SQL} ORDER BY node_id, job_id, attempt`).all() as Row[]).map(toAttempt);
  }

  updateAttempt(
    jobId: string,
    attempt: number,
    patch: { state?: AttemptStateName; gpuUuids?: string[]; exitCode?: number | null; message?: string; containerId?: string; endedMs?: number },
  ): void {
    const sets: string[] = [];
    const values: SQLInputValue[] = [];
    if (patch.state !== undefined) { sets.push('state = ?'); values.push(patch.state); }
    if (patch.gpuUuids !== undefined) { sets.push('gpu_uuids = ?'); values.push(JSON.stringify(patch.gpuUuids)); }
    if (patch.exitCode !== undefined) { sets.push('exit_code = ?'); values.push(patch.exitCode); }
    if (patch.message !== undefined) { sets.push('message = ?'); values.push(patch.message); }
    if (patch.containerId !== undefined) { sets.push('container_id = ?'); values.push(patch.containerId); }
    if (patch.endedMs !== undefined) { sets.push('ended_ms = ?'); values.push(patch.endedMs); }
    if (sets.length === 0) return;
    this.sql(`UPDATE attempts SET ${sets.join(', ')} WHERE job_id = ? AND attempt = ?`).run(...values, jobId, attempt);
  }

  /** The job's history (see JobHistory). */
  jobHistory(jobId: string): JobHistory {
    return {
      attempts: this.attemptsOfJob(jobId),
      restores: this.restoresOfJob(jobId),
      placements: this.placementsOfJob(jobId),
      drains: this.drainReportsOfJob(jobId),
      restarts: this.getRestarts(jobId),
    };
  }

  /**
   * Every job's history, read with one query per table instead of five per
   * job (ListJobs of thousands of jobs). A job with no attempt yet has none.
   */
  allJobHistories(): Map<string, JobHistory> {
    const out = new Map<string, JobHistory>();
    const of = (jobId: string): JobHistory => {
      let h = out.get(jobId);
      if (!h) {
        h = { attempts: [], restores: new Map(), placements: new Map(), drains: new Map(), restarts: { preemptions: 0, failures: 0 } };
        out.set(jobId, h);
      }
      return h;
    };
    for (const r of this.sql('SELECT * FROM attempts ORDER BY job_id, attempt').all() as Row[]) {
      const a = toAttempt(r);
      of(a.jobId).attempts.push(a);
    }
    for (const r of this.sql('SELECT * FROM attempt_restores').all() as Row[]) {
      const x = toRestore(r);
      of(x.jobId).restores.set(x.attempt, x);
    }
    for (const r of this.sql('SELECT * FROM attempt_placements').all() as Row[]) {
      const x = toPlacement(r);
      of(x.jobId).placements.set(x.attempt, x);
    }
    for (const r of this.sql('SELECT * FROM drain_reports').all() as Row[]) {
      const x = toDrainReport(r);
      of(x.jobId).drains.set(x.attempt, x);
    }
    for (const r of this.sql('SELECT * FROM job_restarts').all() as Row[]) {
      of(str(r.job_id)).restarts = { preemptions: num(r.preemptions), failures: num(r.failures) };
    }
    return out;
  }

  // ---- events, commands, logs ----

  insertEvent(e: StoredEvent): void {
    this
      .sql('INSERT INTO events (node_id, event_id, time_ms, job_id, attempt, kind, body, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(e.nodeId, e.eventId, e.timeMs, e.jobId, e.attempt, e.kind, JSON.stringify(e.body ?? null), e.receivedMs);
  }

  eventsOfNode(nodeId: string): StoredEvent[] {
    return (this.sql('SELECT * FROM events WHERE node_id = ? ORDER BY event_id').all(nodeId) as Row[]).map((r) => ({
      nodeId: str(r.node_id),
      eventId: num(r.event_id),
      timeMs: num(r.time_ms),
      jobId: str(r.job_id),
      attempt: num(r.attempt),
      kind: str(r.kind),
      body: parseJson<unknown>(r.body, null),
      receivedMs: num(r.received_ms),
    }));
  }

  insertCommand(c: CommandRecord): void {
    this
      .sql('INSERT INTO commands (command_id, node_id, kind, job_id, attempt, created_ms) VALUES (?, ?, ?, ?, ?, ?)')
      .run(c.commandId, c.nodeId, c.kind, c.jobId, c.attempt, c.createdMs);
  }

  getCommand(commandId: string): CommandRecord | undefined {
    const r = this.sql('SELECT * FROM commands WHERE command_id = ?').get(commandId) as Row | undefined;
    return r ? toCommand(r) : undefined;
  }

  // ---- checkpoints ----

  /**
   * Stores a committed checkpoint; false when the job already has one with that id
   * (an agent that reports a commit again after a crash): the first report stands.
   */
  insertCheckpoint(c: CheckpointRecord): boolean {
    const result = this
      .sql(
        `INSERT INTO checkpoints (job_id, checkpoint_id, attempt, node_id, name, step, total_bytes, uploaded_bytes, files,
           last_write_ms, committed_ms, time_to_commit_ms, manifest_key)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (job_id, checkpoint_id) DO NOTHING`,
      )
      .run(c.jobId, c.checkpointId, c.attempt, c.nodeId, c.name, c.step, c.totalBytes, c.uploadedBytes, c.files,
        c.lastWriteMs, c.committedMs, c.timeToCommitMs, c.manifestKey);
    return Number(result.changes) > 0;
  }

  /** The job's committed checkpoints, newest first: by step, then by commit time. */
  checkpointsOfJob(jobId: string): CheckpointRecord[] {
    return (this
      .sql('SELECT * FROM checkpoints WHERE job_id = ? ORDER BY step DESC, committed_ms DESC, checkpoint_id DESC')
      .all(jobId) as Row[]).map(toCheckpoint);
  }

  /** Records what an attempt restored; a later report for the same attempt replaces it. */
  setRestore(r: RestoreRecord): void {
    this
      .sql(
        `INSERT INTO attempt_restores (job_id, attempt, checkpoint_id, step, bytes, duration_ms, skipped, reported_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (job_id, attempt) DO UPDATE SET checkpoint_id = excluded.checkpoint_id, step = excluded.step,
           bytes = excluded.bytes, duration_ms = excluded.duration_ms, skipped = excluded.skipped, reported_ms = excluded.reported_ms`,
      )
      .run(r.jobId, r.attempt, r.checkpointId, r.step, r.bytes, r.durationMs, JSON.stringify(r.skipped), r.reportedMs);
  }

  /** What each attempt of the job restored, by attempt number. */
  restoresOfJob(jobId: string): Map<number, RestoreRecord> {
    const rows = (this.sql('SELECT * FROM attempt_restores WHERE job_id = ?').all(jobId) as Row[]).map(toRestore);
    return new Map(rows.map((r) => [r.attempt, r]));
  }

  // ---- preemption ----

  /** Stores a node's notice; false when the node already reported this notice id (the first report stands). */
  insertNotice(n: NoticeRecord): boolean {
    const result = this
      .sql(
        `INSERT INTO preemption_notices (node_id, notice_id, source, kind, deadline_ms, received_ms, stored_ms, advisory, cleared_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (node_id, notice_id) DO NOTHING`,
      )
      .run(n.nodeId, n.noticeId, n.source, n.kind, n.deadlineMs, n.receivedMs, n.storedMs, n.advisory ? 1 : 0, n.clearedMs);
    return Number(result.changes) > 0;
  }

  getNotice(nodeId: string, noticeId: string): NoticeRecord | undefined {
    const r = this.sql('SELECT * FROM preemption_notices WHERE node_id = ? AND notice_id = ?').get(nodeId, noticeId) as Row | undefined;
    return r ? toNotice(r) : undefined;
  }

  /** The node's notices, oldest first. */
  noticesOfNode(nodeId: string): NoticeRecord[] {
    return (this.sql('SELECT * FROM preemption_notices WHERE node_id = ? ORDER BY stored_ms, notice_id').all(nodeId) as Row[]).map(toNotice);
  }

  /** Nodes that are going away: each with its newest notice that is neither advisory nor cleared. */
  preemptingNodes(): Map<string, NoticeRecord> {
    const rows = (this
      .sql('SELECT * FROM preemption_notices WHERE advisory = 0 AND cleared_ms = 0 ORDER BY stored_ms, notice_id')
      .all() as Row[]).map(toNotice);
    return new Map(rows.map((n) => [n.nodeId, n]));
  }

  /** Ends the node's "preempting" state for notices whose deadline has passed; returns how many. */
  clearNotices(nodeId: string, nowMs: number): number {
    const result = this
      .sql('UPDATE preemption_notices SET cleared_ms = ? WHERE node_id = ? AND cleared_ms = 0 AND deadline_ms <= ?')
      .run(nowMs, nodeId, nowMs);
    return Number(result.changes);
  }

  /** Records what the drain achieved for an attempt; a later report for the same attempt replaces it. */
  setDrainReport(d: DrainReportRecord): void {
    this
      .sql(
        `INSERT INTO drain_reports (job_id, attempt, node_id, notice_id, final_checkpoint_id, final_step, final_is_new, committed_ms, deadline_ms, margin_ms, reported_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (job_id, attempt) DO UPDATE SET node_id = excluded.node_id, notice_id = excluded.notice_id,
           final_checkpoint_id = excluded.final_checkpoint_id, final_step = excluded.final_step, final_is_new = excluded.final_is_new,
           committed_ms = excluded.committed_ms, deadline_ms = excluded.deadline_ms, margin_ms = excluded.margin_ms, reported_ms = excluded.reported_ms`,
      )
      .run(d.jobId, d.attempt, d.nodeId, d.noticeId, d.finalCheckpointId, d.finalStep, d.finalCheckpointIsNew ? 1 : 0, d.committedMs, d.deadlineMs, d.marginMs, d.reportedMs);
  }

  /** The drain report of each attempt of the job, by attempt number. */
  drainReportsOfJob(jobId: string): Map<number, DrainReportRecord> {
    const rows = (this.sql('SELECT * FROM drain_reports WHERE job_id = ?').all(jobId) as Row[]).map(toDrainReport);
    return new Map(rows.map((r) => [r.attempt, r]));
  }

  setPlacement(p: PlacementRecord): void {
    this
      .sql(
        `INSERT INTO attempt_placements (job_id, attempt, hostname, zone, region) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (job_id, attempt) DO UPDATE SET hostname = excluded.hostname, zone = excluded.zone, region = excluded.region`,
      )
      .run(p.jobId, p.attempt, p.hostname, p.zone, p.region);
  }

  /** Where each attempt of the job was placed, by attempt number. */
  placementsOfJob(jobId: string): Map<number, PlacementRecord> {
    const rows = (this.sql('SELECT * FROM attempt_placements WHERE job_id = ?').all(jobId) as Row[]).map(toPlacement);
    return new Map(rows.map((r) => [r.attempt, r]));
  }

  getRestarts(jobId: string): RestartCounts {
    const r = this.sql('SELECT * FROM job_restarts WHERE job_id = ?').get(jobId) as Row | undefined;
    return { preemptions: num(r?.preemptions), failures: num(r?.failures) };
  }

  /** Counts one more preemption or failure of the job; returns the new counts. */
  countRestart(jobId: string, what: keyof RestartCounts): RestartCounts {
    const column = what === 'preemptions' ? 'preemptions' : 'failures';
    this
      .sql(`INSERT INTO job_restarts (job_id, ${column}) VALUES (?, 1) ON CONFLICT (job_id) DO UPDATE SET ${column} = ${column} + 1`)
      .run(jobId);
    return this.getRestarts(jobId);
  }

  appendLog(l: Omit<LogRecord, 'id'>): void {
    this
      .sql('INSERT INTO log_lines (job_id, attempt, time_ms, stream, text) VALUES (?, ?, ?, ?, ?)')
      .run(l.jobId, l.attempt, l.timeMs, l.stream, l.text);
  }

  /** Log lines of a job with id > afterId, in order. */
  logsAfter(jobId: string, afterId: number, limit = 1000): LogRecord[] {
    return (this.sql('SELECT * FROM log_lines WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?').all(jobId, afterId, limit) as Row[]).map(toLog);
  }
}
