// The committed checkpoints of a job, and retention. A checkpoint exists if and
// only if its manifest exists, so listing the manifests is listing the
// checkpoints. Retention deletes a dropped checkpoint's manifest first (from
// then on it does not exist for anyone) and its objects after, sparing every
// object a retained manifest still refers to (an unchanged file is stored once
// and referenced by the later checkpoints' manifests).
import type { ObjectStore } from '../storage/object-store.ts';
import type { Logger } from '../util/logger.ts';
import { isStevedoreError, messageOf } from '../util/errors.ts';
import { checkpointIdOfManifestKey, compareNewestFirst, joinKey, manifestKey, parseManifest, type Manifest } from './manifest.ts';

/** How many manifests are fetched at once. */
const MANIFEST_FETCH_CONCURRENCY = 16;

/**
 * Runs `fn` over `items` with at most `limit` calls in flight. After the first
 * failure no new call starts; the calls already running are awaited, then the
 * first error is thrown. Results keep the order of `items`.
 */
export async function mapConcurrent<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  let firstError: unknown;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const index = next++;
      try {
        results[index] = await fn(items[index] as T, index);
      } catch (err) {
        if (!failed) {
          failed = true;
          firstError = err;
        }
      }
    }
  };
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, () => worker());
  await Promise.all(workers);
  if (failed) throw firstError;
  return results;
}

/** Whether a store error says the object does not exist. */
export function isNotFound(err: unknown): boolean {
  if (isStevedoreError(err, 'OBJECT_NOT_FOUND')) return true;
  const name = (err as { name?: unknown } | null | undefined)?.name;
  return name === 'NoSuchKey' || name === 'NotFound';
}

/**
 * Every committed checkpoint under `prefix`, newest first. A manifest that is
 * not JSON or not a valid Stevedore manifest (or names another checkpoint than
 * its key) is skipped with a warning naming its key: it does not make a
 * checkpoint exist. A manifest deleted between the listing and its fetch is
 * left out. Any other failure (listing, or fetching a manifest) throws: an
 * incomplete list would make a restore pick an older checkpoint, or none.
 */
export async function listCommitted(store: ObjectStore, prefix: string, logger?: Logger): Promise<{ manifest: Manifest; key: string }[]> {
  const head = prefix === '' ? '' : `${prefix}/`;
  const objects = await store.listObjects(head);
  const keys = objects.map((o) => o.key).filter((key) => checkpointIdOfManifestKey(prefix, key) !== undefined);
  const fetched = await mapConcurrent(keys, MANIFEST_FETCH_CONCURRENCY, async (key) => {
    try {
      const manifest = parseManifest((await store.getObject(key)).toString('utf8'), key);
      const id = checkpointIdOfManifestKey(prefix, key);
      if (manifest.checkpointId !== id) {
        logger?.warn({ key, checkpointId: manifest.checkpointId }, `skipping manifest s3://${store.bucket}/${key}: it names checkpoint "${manifest.checkpointId}" but is stored as "${id}"; remove or fix it`);
        return undefined;
      }
      return { manifest, key };
    } catch (err) {
      if (isStevedoreError(err, 'CHECKPOINT_CORRUPT')) {
        logger?.warn({ key, err: messageOf(err) }, `skipping manifest s3://${store.bucket}/${key}: ${messageOf(err)}; the checkpoint it describes is not used (remove or fix the manifest)`);
        return undefined;
      }
      // Deleted since the listing (retention elsewhere): that checkpoint no longer exists.
      if (isNotFound(err)) return undefined;
      // Any other failure (the endpoint unreachable, access denied) would make the list silently incomplete.
      throw err;
    }
  });
  const committed = fetched.filter((c) => c !== undefined);
  committed.sort((a, b) => compareNewestFirst(a.manifest, b.manifest));
  return committed;
}

/**
 * Which committed checkpoints retention keeps: the newest `keep` (never fewer
 * than one: the newest is always kept), plus, when `keepEvery` > 0, every
 * checkpoint whose step is a multiple of `keepEvery`. `committed` is newest
 * first; both lists keep that order.
 */
export function selectRetained(committed: Manifest[], keep: number, keepEvery: number): { keep: Manifest[]; drop: Manifest[] } {
  const newest = Math.max(1, Math.floor(keep));
  const kept: Manifest[] = [];
  const drop: Manifest[] = [];
  committed.forEach((m, i) => {
    const every = keepEvery > 0 && m.step !== null && m.step % keepEvery === 0;
    (i < newest || every ? kept : drop).push(m);
  });
  return { keep: kept, drop };
}

/**
 * Applies retention to `committed` (newest first). The dropped checkpoints'
 * manifests are deleted first, so they stop existing before any of their
 * objects goes; then every object under <prefix>/<checkpointId>/ of a dropped
 * checkpoint is deleted unless a retained manifest refers to it, and so is
 * every object a dropped manifest referred to in an earlier, already deleted
 * checkpoint that no remaining manifest refers to. Manifests found in the
 * store at that moment (one committed meanwhile) are honoured too.
 */
export async function applyRetention(
  store: ObjectStore,
  prefix: string,
  committed: Manifest[],
  keep: number,
  keepEvery: number,
  logger: Logger,
): Promise<{ deletedCheckpoints: string[] }> {
  const ordered = [...committed].sort(compareNewestFirst);
  const { keep: retained, drop } = selectRetained(ordered, keep, keepEvery);
  if (drop.length === 0) return { deletedCheckpoints: [] };
  const dropped = new Set(drop.map((m) => m.checkpointId));
  const retainedIds = new Set(retained.map((m) => m.checkpointId));
  // A checkpoint id both retained and dropped would be a duplicate manifest entry: never delete it.
  for (const id of retainedIds) dropped.delete(id);
  const ids = [...dropped];
  if (ids.length === 0) return { deletedCheckpoints: [] };

  await store.deleteObjects(ids.map((id) => manifestKey(prefix, id)));
  logger.info({ checkpoints: ids }, `retention: removed the manifests of ${ids.length} checkpoint(s) (keep ${keep}${keepEvery > 0 ? `, every ${keepEvery}th step` : ''})`);

  const referenced = new Set<string>();
  const present = new Set<string>();
  for (const m of retained) for (const f of m.files) referenced.add(f.key);
  for (const { manifest } of await listCommitted(store, prefix, logger)) {
    present.add(manifest.checkpointId);
    for (const f of manifest.files) referenced.add(f.key);
  }

  // A checkpoint committed again under the same id since its manifest was removed is a new checkpoint: leave it alone.
  const live = (id: string): boolean => present.has(id) || retainedIds.has(id);
  const head = prefix === '' ? '' : `${prefix}/`;
  const doomed = new Set<string>();
  for (const id of ids) {
    if (live(id)) continue;
    for (const o of await store.listObjects(`${joinKey(prefix, id)}/`)) if (!referenced.has(o.key)) doomed.add(o.key);
  }
  // Objects of checkpoints dropped earlier that only the checkpoints dropped now still referred to
  // (an unchanged file is stored once, under the checkpoint that first had it).
  for (const m of drop) {
    for (const f of m.files) {
      if (referenced.has(f.key) || !f.key.startsWith(head)) continue;
      const owner = f.key.slice(head.length).split('/')[0] ?? '';
      if (owner !== '' && !live(owner) && f.key !== manifestKey(prefix, owner)) doomed.add(f.key);
    }
  }
  if (doomed.size > 0) await store.deleteObjects([...doomed]);
  logger.debug({ checkpoints: ids, deletedObjects: doomed.size }, 'retention: deleted the objects no remaining checkpoint refers to');
  return { deletedCheckpoints: ids };
}
