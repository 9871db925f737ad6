// Stevedore's side of the upload and restore benchmarks, as a child process
// so that it is measured exactly like the peers (bench/peers.ts measure()):
//   node bench/stevedore-cli.ts upload  '{"endpoint":..., "checkpointDir": "/x/step-000100", ...}'
//   node bench/stevedore-cli.ts restore '{"endpoint":..., "targetDir": "/x/restored", ...}'
// upload: the agent's CheckpointUploader uploads the complete checkpoint
// directory and commits it (manifest last), with the agent's default part size
// and upload memory. restore: restoreNewest downloads, verifies (the SHA-256
// of every part, as the manifest lists them) and moves the newest committed
// checkpoint into place.
// Prints one JSON line with what was done; exits 1 when nothing was committed
// or restored.
import fs from 'node:fs';
import path from 'node:path';
import { ByteBudget } from '../src/checkpoint/byte-budget.ts';
import { CheckpointUploader } from '../src/checkpoint/checkpoint-uploader.ts';
import type { CheckpointCandidate, LocalFile } from '../src/checkpoint/commit-rules.ts';
import { stepFromName } from '../src/checkpoint/manifest.ts';
import { restoreNewest } from '../src/checkpoint/restore.ts';
import { S3ObjectStore } from '../src/storage/s3-object-store.ts';
import { systemClock } from '../src/util/clock.ts';
import { createLogger } from '../src/util/logger.ts';

export interface StevedoreJob {
  endpoint: string;
  bucket: string;
  /** The job's checkpoint prefix. */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /** upload: the checkpoint directory; its name is the checkpoint's name. */
  checkpointDir?: string;
  /** restore: where the checkpoint is put. */
  targetDir?: string;
  /** Default 16 MiB, the agent's default (checkpoints.partSizeMiB). */
  partSizeBytes?: number;
  /** Default 256 MiB, the agent's default (checkpoints.maxInFlightMiB). */
  budgetBytes?: number;
}

const MIB = 1024 * 1024;

function localFiles(root: string): LocalFile[] {
  const out: LocalFile[] = [];
  for (const entry of fs.readdirSync(root, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue;
    const absPath = path.join(entry.parentPath, entry.name);
    const st = fs.statSync(absPath);
    out.push({ path: path.relative(root, absPath).split(path.sep).join('/'), absPath, size: st.size, mtimeMs: st.mtimeMs, ino: st.ino });
  }
  return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

async function main(mode: string | undefined, json: string | undefined): Promise<number> {
  if ((mode !== 'upload' && mode !== 'restore') || json === undefined) {
    process.stderr.write('usage: node bench/stevedore-cli.ts upload|restore \'<job JSON>\'\n');
    return 2;
  }
  const job = JSON.parse(json) as StevedoreJob;
  const logger = createLogger({ level: 'warn', name: 'stevedore-bench' });
  const store = new S3ObjectStore({
    bucket: job.bucket,
    logger,
    config: { endpoint: job.endpoint, region: job.region, forcePathStyle: true, accessKeyId: job.accessKeyId, secretAccessKey: job.secretAccessKey, checksumMode: 'WHEN_SUPPORTED', maxAttempts: 3 },
  });
  try {
    if (mode === 'restore') {
      if (job.targetDir === undefined) throw new Error('restore needs targetDir');
      const restored = await restoreNewest({ store, prefix: job.prefix, targetDir: job.targetDir, logger, clock: systemClock });
      if (!restored) {
        process.stderr.write(`nothing committed under s3://${job.bucket}/${job.prefix}\n`);
        return 1;
      }
      process.stdout.write(`${JSON.stringify({ checkpointId: restored.manifest.checkpointId, bytes: restored.bytes, path: restored.path })}\n`);
      return 0;
    }
    if (job.checkpointDir === undefined) throw new Error('upload needs checkpointDir');
    const name = path.basename(job.checkpointDir);
    const files = localFiles(job.checkpointDir);
    const candidate: CheckpointCandidate = {
      name,
      kind: 'directory',
      step: stepFromName(name),
      files,
      complete: true,
      lastChangeMs: Math.max(...files.map((f) => f.mtimeMs)),
    };
    const uploader = new CheckpointUploader({
      store,
      prefix: job.prefix,
      jobId: 'bench',
      attempt: 1,
      nodeId: 'bench-node',
      clock: systemClock,
      logger,
      partSizeBytes: job.partSizeBytes ?? 16 * MIB,
      budget: new ByteBudget(job.budgetBytes ?? 256 * MIB),
      keep: 10,
      keepEvery: 0,
      onCommitted: () => undefined,
    });
    try {
      await uploader.start();
      uploader.update([candidate]);
      const committed = await uploader.flush();
      if (!committed) {
        process.stderr.write(`checkpoint ${name} was not committed (see the log above)\n`);
        return 1;
      }
      const m = committed.manifest;
      process.stdout.write(`${JSON.stringify({ checkpointId: m.checkpointId, totalBytes: m.totalBytes, uploadedBytes: m.uploadedBytes, files: m.files.length, manifest: committed.manifestUrl })}\n`);
      return 0;
    } finally {
      await uploader.close();
    }
  } finally {
    store.destroy();
  }
}

if (import.meta.main) {
  main(process.argv[2], process.argv[3]).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
