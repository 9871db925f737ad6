// Every way the node learns it is going away (a cloud's preemption notice,
// systemd stopping the host, a drain from the coordinator) becomes one Notice
// with a deadline; the drain (src/agent/drain.ts) does not care where it came from.

export type NoticeSource = 'aws' | 'aws-rebalance' | 'gcp' | 'azure' | 'sigterm' | 'coordinator';

export interface Notice {
  /** Stable for one notice: a notice seen again (AWS moves its time on every poll) keeps its id. */
  id: string;
  source: NoticeSource;
  /** The cloud's word for it: terminate, stop, hibernate, Preempt, TERMINATE_ON_HOST_MAINTENANCE, ... */
  kind: string;
  /** When the node goes away (ms since the epoch). */
  deadlineMs: number;
  receivedMs: number;
  /** Only a hint (AWS rebalance recommendation): logged and reported, no drain. */
  advisory: boolean;
}

/** One per cloud; the one real implementation talks to that cloud's metadata service. */
export interface PreemptionDetector {
  readonly cloud: 'aws' | 'gcp' | 'azure';
  /** Starts polling (or hanging GETs); `onNotice` is called once per distinct notice. Never throws. */
  start(onNotice: (notice: Notice) => void): void;
  /** Tells the cloud the node is ready to go (Azure: StartRequests); a no-op where the cloud has no such step. */
  acknowledge(notice: Notice): Promise<void>;
  /** Stops polling; safe twice. */
  close(): Promise<void>;
}
