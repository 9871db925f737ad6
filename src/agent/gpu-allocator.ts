// Hands GPUs to attempts by UUID. A GPU belongs to at most one attempt; the
// allocation is rebuilt from the ledger and container labels after a restart.
import { StevedoreError } from '../util/errors.ts';

export class GpuAllocator {
  private readonly all: readonly string[];
  private readonly owner = new Map<string, string>();
  private readonly unusable: (uuid: string) => string | undefined;

  /**
   * `uuids` in the order to prefer them (nvidia-smi index order). `unusable`
   * says why a GPU must not go to a new attempt (it is not healthy), or
   * undefined when it may.
   */
  constructor(uuids: readonly string[], unusable: (uuid: string) => string | undefined = () => undefined) {
    this.all = [...uuids];
    this.unusable = unusable;
  }

  get total(): number {
    return this.all.length;
  }

  free(): string[] {
    return this.all.filter((u) => !this.owner.has(u));
  }

  ownerOf(uuid: string): string | undefined {
    return this.owner.get(uuid);
  }

  allocated(): Map<string, string> {
    return new Map(this.owner);
  }

  /** Reserves `count` free GPUs for `attemptKey`, or throws with the reason. */
  allocate(attemptKey: string, count: number): string[] {
    if (count === 0) return [];
    if (count > this.all.length) {
      throw new StevedoreError('GPUS_UNSATISFIABLE', `job asks for ${count} GPUs; this node has ${this.all.length}`);
    }
    const free = this.free();
    if (free.length < count) {
      throw new StevedoreError('GPUS_UNAVAILABLE', `job asks for ${count} GPUs; ${free.length} of ${this.all.length} are free on this node`);
    }
    const usable = free.filter((u) => this.unusable(u) === undefined);
    if (usable.length < count) {
      const why = free.filter((u) => !usable.includes(u)).map((u) => `${u}: ${this.unusable(u)}`).join('; ');
      throw new StevedoreError('GPUS_UNAVAILABLE', `job asks for ${count} GPUs; ${free.length} of ${this.all.length} are free on this node but only ${usable.length} healthy (${why})`);
    }
    const chosen = usable.slice(0, count);
    for (const uuid of chosen) this.owner.set(uuid, attemptKey);
    return chosen;
  }

  /**
   * Records GPUs already held by an attempt found at start-up (a re-adopted
   * container). A GPU this node no longer has is kept out of use but not
   * refused: the container holds it whatever we think.
   */
  adopt(attemptKey: string, uuids: readonly string[]): void {
    for (const uuid of uuids) {
      const current = this.owner.get(uuid);
      if (current !== undefined && current !== attemptKey) {
        throw new StevedoreError('GPUS_UNAVAILABLE', `GPU ${uuid} is held by both ${current} and ${attemptKey}`);
      }
      this.owner.set(uuid, attemptKey);
    }
  }

  release(attemptKey: string): void {
    for (const [uuid, owner] of this.owner) {
      if (owner === attemptKey) this.owner.delete(uuid);
    }
  }
}
