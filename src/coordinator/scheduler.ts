// Placement: which queued job goes to which node. Pure: it sees a snapshot of
// capacity and returns decisions; the engine applies them.

export interface NodeCapacity {
  nodeId: string;
  /** Healthy GPUs not held by any active attempt. */
  freeGpus: number;
  /** Healthy GPUs, free or not; undefined when every GPU counts as healthy. */
  healthyGpus?: number;
  /** Why GPUs are not healthy, one entry per GPU ("GPU 1 (GPU-...): 3 uncorrected ECC errors ..."). */
  unhealthy?: readonly string[];
  activeAttempts: number;
  /** The node's `zone` label ('' when it has none). */
  zone?: string;
  /** The node's `region` label ('' when it has none). */
  region?: string;
}

/** Where a job's previous attempt was preempted or lost. */
export interface Location {
  zone: string;
  region: string;
}

export interface PendingJob {
  jobId: string;
  gpus: number;
  /** Nodes not to use for this job right now (they just refused it). */
  avoid?: ReadonlySet<string>;
  /** Nodes never to use for this job: its previous attempt was preempted or lost there, and the node has not registered since. */
  exclude?: ReadonlySet<string>;
  /** Prefer nodes away from here (a preemption tends to recur where it struck). */
  awayFrom?: Location;
}

export interface Placement {
  jobId: string;
  nodeId: string;
}

export interface PlacementPlan {
  placed: Placement[];
  /** Jobs that stay queued, with the reason a person can read. */
  waiting: { jobId: string; message: string }[];
}

/**
 * Whether the node is somewhere else than `from`: by the `zone` label when both
 * have one, else by the `region` label when both have one. Unknown counts as
 * the same place.
 */
export function isElsewhere(from: Location | undefined, node: { zone?: string; region?: string }): boolean {
  if (!from) return false;
  if (from.zone && node.zone) return from.zone !== node.zone;
  if (from.region && node.region) return from.region !== node.region;
  return false;
}

/**
 * Jobs in the given (FIFO) order; each goes to the eligible node that fits it
 * best: for a job with `awayFrom`, a node elsewhere first (see isElsewhere);
 * then the fewest free GPUs that still fit, then the fewest active attempts,
 * then the node id. A job that fits nowhere is skipped, and later, smaller jobs
 * may still be placed.
 */
export function planPlacement(jobs: readonly PendingJob[], nodes: readonly NodeCapacity[]): PlacementPlan {
  const free = new Map(nodes.map((n) => [n.nodeId, { ...n }]));
  const plan: PlacementPlan = { placed: [], waiting: [] };
  const unplaced: PendingJob[] = [];
  for (const job of jobs) {
    let best: NodeCapacity | undefined;
    let bestAway = false;
    for (const node of free.values()) {
      if (node.freeGpus < job.gpus || job.avoid?.has(node.nodeId) || job.exclude?.has(node.nodeId)) continue;
      const away = isElsewhere(job.awayFrom, node);
      if (best !== undefined && away !== bestAway) {
        if (away) {
          best = node;
          bestAway = away;
        }
        continue;
      }
      if (
        best === undefined ||
        node.freeGpus < best.freeGpus ||
        (node.freeGpus === best.freeGpus && node.activeAttempts < best.activeAttempts) ||
        (node.freeGpus === best.freeGpus && node.activeAttempts === best.activeAttempts && node.nodeId < best.nodeId)
      ) {
        best = node;
        bestAway = away;
      }
    }
    if (best) {
      best.freeGpus -= job.gpus;
      best.activeAttempts += 1;
      plan.placed.push({ jobId: job.jobId, nodeId: best.nodeId });
    } else {
      unplaced.push(job);
    }
  }
  // "free now" means after this pass.
  plan.waiting = unplaced.map((job) => ({ jobId: job.jobId, message: waitingMessage(job, [...free.values()]) }));
  return plan;
}

function waitingMessage(job: PendingJob, nodes: NodeCapacity[]): string {
  const what = job.gpus === 0 ? 'waiting for a node' : `waiting for ${job.gpus} free GPU${job.gpus === 1 ? '' : 's'}`;
  if (nodes.length === 0) return `${what}; no node is online`;
  const largestHealthy = Math.max(...nodes.map((n) => n.healthyGpus ?? Number.POSITIVE_INFINITY));
  if (job.gpus > largestHealthy && nodes.some((n) => (n.unhealthy ?? []).length > 0)) {
    // No node could take it even if it were empty: say which GPUs are out and why.
    const why = nodes
      .filter((n) => (n.unhealthy ?? []).length > 0)
      .sort((a, b) => a.nodeId.localeCompare(b.nodeId))
      .map((n) => `${n.nodeId} ${(n.unhealthy ?? []).join('; ')}`)
      .join('; ');
    return `waiting: needs ${job.gpus} GPU${job.gpus === 1 ? '' : 's'}; the largest node has ${largestHealthy} healthy (not healthy: ${why})`;
  }
  const free = nodes
    .slice()
    .sort((a, b) => a.nodeId.localeCompare(b.nodeId))
    .map((n) => `${n.nodeId} ${n.freeGpus}${job.avoid?.has(n.nodeId) ? ' (just refused it)' : job.exclude?.has(n.nodeId) ? ' (preempted it)' : ''}`)
    .join(', ');
  return `${what}; free now: ${free}`;
}
