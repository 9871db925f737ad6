// The node's identity: a random id created on the first start and kept in the
// state directory, so that the coordinator recognises the node (and the jobs it
// holds) across restarts, reboots and renames of the host.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { StevedoreError, messageOf } from '../util/errors.ts';
import { createFileAtomic } from '../util/atomic-file.ts';

export const NODE_ID_FILE = 'node-id';
export const NODE_ID_RE = /^node-[0-9a-f]{12}$/;

function unwritable(stateDir: string, err: unknown): StevedoreError {
  const code = (err as NodeJS.ErrnoException).code ?? messageOf(err);
  return new StevedoreError(
    'STATE_DIR_UNWRITABLE',
    `state directory ${stateDir} is not writable (${code}): give the agent's user write access to it, or choose another directory with --state-dir (or stateDir in the config file)`,
    { cause: err },
  );
}

/** Creates the state directory (mode 0700) if needed and checks that the agent can write there. */
export function ensureStateDir(stateDir: string): void {
  try {
    fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    fs.accessSync(stateDir, fs.constants.W_OK | fs.constants.X_OK);
  } catch (err) {
    throw unwritable(stateDir, err);
  }
}

/**
 * The node id kept in `<stateDir>/node-id` (`node-` and 12 hex digits).
 * Created once, atomically, on the first start; read back on every later one.
 * A file that cannot be read or does not hold an id is an error, never
 * silently replaced: a new id would make the coordinator see a new node and
 * declare the old one's jobs lost.
 */
export function loadOrCreateNodeId(stateDir: string): string {
  ensureStateDir(stateDir);
  const file = path.join(stateDir, NODE_ID_FILE);
  for (;;) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT') {
        throw new StevedoreError(
          'NODE_ID_INVALID',
          `cannot read the node id in ${file} (${code ?? messageOf(err)}): fix its permissions; it must stay readable by the agent, since it names this node to the coordinator`,
          { cause: err },
        );
      }
      const id = `node-${randomBytes(6).toString('hex')}`;
      try {
        if (createFileAtomic(file, `${id}\n`, 0o644)) return id;
      } catch (createErr) {
        throw unwritable(stateDir, createErr);
      }
      continue; // another process created it first: use theirs
    }
    const id = text.trim();
    if (NODE_ID_RE.test(id)) return id;
    const shown = id.length > 40 ? `${JSON.stringify(id.slice(0, 40))}...` : JSON.stringify(id);
    throw new StevedoreError(
      'NODE_ID_INVALID',
      `${file} does not hold a node id (expected node- and 12 hex digits, found ${shown}). Restore the file from a backup to keep this node's identity, or delete it to register as a new node (the coordinator will then consider the old node's jobs lost)`,
    );
  }
}

/**
 * With TLS the node's certificate names it: makes `<stateDir>/node-id` hold
 * `nodeId` (created when missing) and refuses a state directory that already
 * belongs to another node, naming both ids and the fix.
 */
export function adoptNodeId(stateDir: string, nodeId: string, certFile: string): void {
  if (!NODE_ID_RE.test(nodeId)) throw new StevedoreError('NODE_ID_INVALID', `${JSON.stringify(nodeId)} in ${certFile} is not a node id (node- and 12 hex digits): make the certificate with \`stevedore certs node\``);
  const file = path.join(stateDir, NODE_ID_FILE);
  ensureStateDir(stateDir);
  try {
    createFileAtomic(file, `${nodeId}\n`, 0o644);
  } catch (err) {
    throw unwritable(stateDir, err);
  }
  const stored = loadOrCreateNodeId(stateDir);
  if (stored !== nodeId) {
    throw new StevedoreError(
      'NODE_ID_MISMATCH',
      `this node's state directory ${stateDir} belongs to node ${stored}, but its certificate ${certFile} is node ${nodeId}'s. Give the agent the certificate of ${stored} (\`stevedore certs node ${stored}\`), or, to make this a new node, move ${file} away (the coordinator will then consider ${stored}'s jobs lost)`,
    );
  }
}
