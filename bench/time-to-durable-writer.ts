// A trainer stand-in that writes checkpoints at disk speed, or paced at a
// given rate (a cloud disk's), in a process of its own (as a trainer is): PyTorch DCP's layout, step-N/shard-K.bin written
// in 8 MiB writes, then .metadata.tmp renamed to .metadata. Every 8 MiB block
// is stamped with the checkpoint, shard and offset, so no two checkpoints
// share content (nothing can be deduplicated) while the bytes cost no CPU to
// make.
//
//   node bench/time-to-durable-writer.ts   (reads one JSON request per line on stdin, answers one per line)
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';

export interface WriteRequest {
  /** The job's checkpoint directory. */
  dir: string;
  step: number;
  bytes: number;
  shards: number;
  /** Paced: no faster than this many bytes per second (a sleep after each 8 MiB write); default: as fast as the disk takes them. */
  bytesPerSecond?: number;
}

export interface WriteResult {
  /** The checkpoint's directory name, e.g. step-000010. */
  name: string;
  firstByteMs: number;
  /** After the last byte of the last shard was written and its file closed. */
  lastByteMs: number;
  /** After .metadata was renamed into place: the checkpoint is complete. */
  completeMs: number;
}

const BLOCK = 8 * 1024 * 1024;
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const self = path.join(import.meta.dirname, 'time-to-durable-writer.ts');

export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, '0')}`;
}

function write(req: WriteRequest, block: Buffer): WriteResult {
  const name = checkpointName(req.step);
  const dir = path.join(req.dir, name);
  mkdirSync(dir, { recursive: true });
  const perShard = Math.floor(req.bytes / req.shards);
  const firstByteMs = Date.now();
  let written = 0;
  for (let s = 0; s < req.shards; s++) {
    const size = s === req.shards - 1 ? req.bytes - perShard * (req.shards - 1) : perShard;
    const fd = openSync(path.join(dir, `shard-${s}.bin`), 'w');
    try {
      for (let off = 0; off < size; off += BLOCK) {
        const n = Math.min(BLOCK, size - off);
        block.write(`${name}/${s}/${off}/${process.hrtime.bigint()}`.padEnd(64, '.'), 0, 'latin1');
        writeSync(fd, block, 0, n);
        written += n;
        if (req.bytesPerSecond !== undefined) {
          const ahead = firstByteMs + (1000 * written) / req.bytesPerSecond - Date.now();
          if (ahead > 0) Atomics.wait(sleeper, 0, 0, ahead);
        }
      }
    } finally {
      closeSync(fd);
    }
  }
  const lastByteMs = Date.now();
  writeFileSync(path.join(dir, '.metadata.tmp'), JSON.stringify({ step: req.step, files: Array.from({ length: req.shards }, (_, s) => `shard-${s}.bin`), bytes: req.bytes }) + '\n');
  renameSync(path.join(dir, '.metadata.tmp'), path.join(dir, '.metadata'));
  return { name, firstByteMs, lastByteMs, completeMs: Date.now() };
}

/** The writer process, driven request by request. */
export class CheckpointWriter {
  private readonly child: ChildProcess;
  private readonly waiting: { resolve: (r: WriteResult) => void; reject: (err: Error) => void }[] = [];
  private readonly exited: Promise<void>;

  constructor() {
    this.child = spawn(process.execPath, [self], { stdio: ['pipe', 'pipe', 'inherit'] });
    const out = this.child.stdout;
    if (!out) throw new Error('no stdout from the checkpoint writer');
    createInterface({ input: out }).on('line', (line) => this.waiting.shift()?.resolve(JSON.parse(line) as WriteResult));
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        for (const w of this.waiting.splice(0)) w.reject(new Error(`the checkpoint writer exited with ${code}`));
        resolve();
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  write(req: WriteRequest): Promise<WriteResult> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.child.stdin?.write(JSON.stringify(req) + '\n');
    });
  }

  async close(): Promise<void> {
    this.child.stdin?.end();
    await this.exited;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === self) {
  const block = randomBytes(BLOCK);
  createInterface({ input: process.stdin }).on('line', (line) => {
    const result = write(JSON.parse(line) as WriteRequest, block);
    process.stdout.write(JSON.stringify(result) + '\n');
  });
}
