// Commit rules: when is a checkpoint complete? Each rule follows how a
// training framework writes its checkpoints (see docs/checkpoints.md, "Commit
// rules"). A checkpoint is one entry directly under the job's checkpoint
// directory: a directory (step-000010/, checkpoint-10/) or a single file
// (epoch=3-step=100.ckpt).
//
// This module is pure: the watcher (checkpoint-watcher.ts) scans the
// filesystem into ScannedEntry values and asks evaluate() about each of them
// with the injected clock's time.
import type { CheckpointSpec } from '../spec/job-spec.ts';
import { stepFromName } from './manifest.ts';

export type CommitRule =
  /** PyTorch DCP: a directory is complete when `.metadata` exists (DCP writes `.metadata.tmp`, then renames it). */
  | { kind: 'dcp' }
  /** Orbax: a directory not named `*.orbax-checkpoint-tmp*` (renamed into place), or one containing `commit_success.txt`. */
  | { kind: 'orbax' }
  /** Hugging Face Trainer: `checkpoint-<step>/` containing `trainer_state.json` and unchanged for quiescenceMs. */
  | { kind: 'hf'; quiescenceMs: number }
  /** PyTorch Lightning: a regular file `*.ckpt`, atomically renamed into place. Symlinks (last.ckpt) and temporary names are ignored. */
  | { kind: 'lightning' }
  /** Generic: a directory containing the marker file, which the job writes last. */
  | { kind: 'marker'; marker: string }
  /** Generic: any file or directory unchanged for quiescenceMs. */
  | { kind: 'quiescence'; quiescenceMs: number };

export const DCP_METADATA = '.metadata';
export const DCP_METADATA_TMP = '.metadata.tmp';
export const ORBAX_TMP_INFIX = '.orbax-checkpoint-tmp';
export const ORBAX_COMMIT_FILE = 'commit_success.txt';
export const HF_STATE_FILE = 'trainer_state.json';
const HF_NAME_RE = /^checkpoint-\d+$/;
const LIGHTNING_NAME_RE = /^[^.].*\.ckpt$/;

/** The job spec's checkpoint section compiled into a rule. */
export function ruleFromSpec(spec: CheckpointSpec): CommitRule {
  const quiescenceMs = spec.quiescenceSeconds * 1000;
  switch (spec.rule) {
    case 'dcp':
      return { kind: 'dcp' };
    case 'orbax':
      return { kind: 'orbax' };
    case 'hf':
      return { kind: 'hf', quiescenceMs };
    case 'lightning':
      return { kind: 'lightning' };
    case 'marker':
      return { kind: 'marker', marker: spec.marker };
    case 'quiescence':
      return { kind: 'quiescence', quiescenceMs };
  }
}

/** A regular file of a checkpoint as the watcher saw it. */
export interface LocalFile {
  /** Relative to the checkpoint entry, "/"-separated; for a single-file checkpoint: its name. */
  path: string;
  absPath: string;
  size: number;
  mtimeMs: number;
  ino: number;
}

/** One entry directly under the watched directory, as one scan saw it. */
export interface ScannedEntry {
  /** The entry's name directly under the watched directory. */
  name: string;
  /** 'other' is anything that is neither a regular file nor a directory: symlinks (never followed), sockets, FIFOs. */
  kind: 'directory' | 'file' | 'other';
  absPath: string;
  /**
   * Every regular file, sorted by path: recursively for a directory (symlinks
   * inside are not followed), the file itself for a file, none for 'other'.
   * In-progress names such as `.metadata.tmp` are included; the rule drops them.
   */
  files: LocalFile[];
  /** Clock time of the latest scan that saw the files differ (size, mtime, inode, set of files) from the scan before; a first sighting counts. */
  seenChangeMs: number;
}

/** What the uploader gets: one checkpoint, complete or still being written. */
export interface CheckpointCandidate {
  /** The entry's name directly under the watched directory (step-000010, checkpoint-10, epoch=3-step=100.ckpt). */
  name: string;
  kind: 'directory' | 'file';
  /** stepFromName(name). */
  step: number | null;
  /** Every regular file, recursively, sorted by path (without the rule's own in-progress names such as .metadata.tmp). */
  files: LocalFile[];
  /** The commit condition holds now. */
  complete: boolean;
  /** Newest mtime among the files, or when a scan last saw a change (clock time), whichever is later. */
  lastChangeMs: number;
}

/**
 * The checkpoint an entry is under the rule, or undefined when it is not one
 * (a temporary directory, a stray file, a symlink, a hidden entry).
 * `now` is the injected clock's time; quiescence is measured against it.
 */
export function evaluate(rule: CommitRule, entry: ScannedEntry, now: number): CheckpointCandidate | undefined {
  // Hidden entries are never checkpoints: editors, tools and the agent's own
  // restore keep their temporary directories under dot-names.
  if (entry.name.startsWith('.') || entry.kind === 'other') return undefined;
  const has = (relPath: string): boolean => entry.files.some((f) => f.path === relPath);
  const candidate = (complete: boolean, files: LocalFile[] = entry.files): CheckpointCandidate => ({
    name: entry.name,
    kind: entry.kind === 'file' ? 'file' : 'directory',
    step: stepFromName(entry.name),
    files,
    complete,
    lastChangeMs: lastChange(entry, now),
  });
  const quiet = (quiescenceMs: number): boolean => now - lastChange(entry, now) >= quiescenceMs;

  switch (rule.kind) {
    case 'dcp': {
      if (entry.kind !== 'directory') return undefined;
      return candidate(has(DCP_METADATA), entry.files.filter((f) => f.path !== DCP_METADATA_TMP));
    }
    case 'orbax': {
      if (entry.kind !== 'directory' || entry.name.includes(ORBAX_TMP_INFIX)) return undefined;
      // Renamed into place (atomic on local disks), or committed with
      // commit_success.txt on filesystems without an atomic rename.
      return candidate(true);
    }
    case 'hf': {
      if (entry.kind !== 'directory' || !HF_NAME_RE.test(entry.name)) return undefined;
      return candidate(has(HF_STATE_FILE) && quiet(rule.quiescenceMs));
    }
    case 'lightning': {
      if (entry.kind !== 'file' || !LIGHTNING_NAME_RE.test(entry.name)) return undefined;
      return candidate(true);
    }
    case 'marker': {
      if (entry.kind !== 'directory') return undefined;
      return candidate(has(rule.marker));
    }
    case 'quiescence': {
      // An empty directory is not a checkpoint yet, however long it stays empty.
      return candidate(entry.files.length > 0 && quiet(rule.quiescenceMs));
    }
  }
}

/**
 * Newest mtime or the last change a scan saw, whichever is later. An mtime
 * ahead of the clock (a skewed network filesystem, a test clock) is left out:
 * it would hold quiescence back until the clock catches up with it.
 */
function lastChange(entry: ScannedEntry, now: number): number {
  let newest = entry.seenChangeMs;
  for (const f of entry.files) if (f.mtimeMs <= now && f.mtimeMs > newest) newest = f.mtimeMs;
  return newest;
}

/**
 * Newest first: candidates with a step by step (descending), then by last
 * change; candidates without a step after them, by last change; then by name,
 * so that the order is total and stable.
 */
export function compareCandidatesNewestFirst(a: CheckpointCandidate, b: CheckpointCandidate): number {
  if (a.step !== null && b.step === null) return -1;
  if (a.step === null && b.step !== null) return 1;
  if (a.step !== null && b.step !== null && a.step !== b.step) return b.step - a.step;
  if (a.lastChangeMs !== b.lastChangeMs) return b.lastChangeMs - a.lastChangeMs;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
