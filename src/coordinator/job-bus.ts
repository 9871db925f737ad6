// In-process notifications: "something about job X changed" (state, new log
// lines). StreamLogs followers subscribe; the engine notifies after a commit.

type Listener = () => void;

export class JobBus {
  private readonly listeners = new Map<string, Set<Listener>>();

  subscribe(jobId: string, listener: Listener): () => void {
    let set = this.listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.listeners.set(jobId, set);
    }
    set.add(listener);
    return () => {
      const current = this.listeners.get(jobId);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) this.listeners.delete(jobId);
    };
  }

  notify(jobId: string): void {
    const set = this.listeners.get(jobId);
    if (!set) return;
    for (const listener of [...set]) listener();
  }

  get subscriberCount(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }
}
