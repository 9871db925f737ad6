// Benchmark 4, restore: the newest committed checkpoint downloaded and
// verified by Stevedore's restoreNewest, against `rclone copy` and
// `aws s3 cp --recursive` of the same objects, from the S3 sink and from s3rver.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FIGURE, STEVEDORE, bestPeer, figureOf, figuresOf, fmt, interleave, ratiosOf, type Trial } from './cases.ts';
import { GIB, MIB, checkpointLayout, randomBlock, syntheticContent, writeCheckpoint, type CheckpointLayout } from './checkpoint-data.ts';
import { startS3rverEndpoint, startSinkEndpoint, type BenchEndpoint } from './endpoints.ts';
import { cleanEnv, downloadCommand, findPeers, measure, type Command, type Peer } from './peers.ts';
import { barPlot } from './report.ts';
import { stevedoreCli } from './stevedore-cli-path.ts';
import { writePlot } from './svg.ts';
import type { BenchCase, BenchOptions, BenchResult, Benchmark, Subject } from './types.ts';
import { benchCommand, missedNote, sizeLabel, stevedorePartSize, uploadSizes } from './upload.ts';

/** The peers the issue compares restore with. */
const RESTORE_PEERS = new Set(['rclone', 'awscli']);
const PREFIX = 'restore/job';

interface RestoreSize {
  endpoint: BenchEndpoint['kind'];
  bytes: number;
  runs: number;
  layout: CheckpointLayout;
}

/**
 * 4 GiB from the S3 sink and 1 GiB from s3rver (which reads every byte from its own files, so every subject is bound by
 * it there), 2 runs each; the largest of the upload sizes on both when STEVEDORE_BENCH_GIB narrows them (see uploadSizes).
 */
function restoreSizes(smoke: boolean): RestoreSize[] {
  const layout = (bytes: number): CheckpointLayout => checkpointLayout(bytes, { shards: 4, smallFiles: 128, smallBytes: 512 * 1024 });
  if (smoke) return (['sink', 's3rver'] as const).map((endpoint) => ({ endpoint, bytes: 24 * MIB, runs: 1, layout: checkpointLayout(24 * MIB, { shards: 2, smallFiles: 8, smallBytes: 256 * 1024 }) }));
  const narrowed = process.env.STEVEDORE_BENCH_GIB !== undefined;
  const largest = Math.max(...uploadSizes(false).map((s) => s.bytes));
  const runs = Number(process.env.STEVEDORE_BENCH_RUNS ?? 0) > 0 ? Number(process.env.STEVEDORE_BENCH_RUNS) : 2;
  const sized = (endpoint: RestoreSize['endpoint'], bytes: number): RestoreSize => ({ endpoint, bytes, runs, layout: layout(bytes) });
  return narrowed ? [sized('sink', largest), sized('s3rver', largest)] : [sized('sink', 4 * GIB), sized('s3rver', GIB)];
}

/** Bytes of the checkpoint's own files under `dir` (Stevedore's manifest, which peers copy too, left out). */
function restoredBytes(dir: string): number {
  if (!fs.existsSync(dir)) return 0;
  let bytes = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile() || entry.parentPath.split(path.sep).includes('_stevedore')) continue;
    bytes += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return bytes;
}

function stevedoreJob(endpoint: BenchEndpoint, extra: Record<string, unknown>): string {
  return JSON.stringify({ ...endpoint.location(PREFIX), ...extra });
}

function restoreTrials(endpoint: BenchEndpoint, peers: Peer[], layout: CheckpointLayout, opts: BenchOptions): Trial[] {
  let n = 0;
  const configDir = path.join(opts.workDir, 'peer-config');
  const trial = (subject: string, version: string | undefined, command: (target: string) => Command, checkpointDir: (target: string) => string): Trial => {
    let target = '';
    return {
      subject,
      ...(version !== undefined ? { version } : {}),
      run: async () => {
        target = path.join(opts.workDir, `restored-${endpoint.kind}-${subject}-${n++}`);
        const m = await measure(command(target), { label: `${subject} restore from ${endpoint.name}` });
        const got = restoredBytes(checkpointDir(target));
        if (got !== layout.totalBytes) throw new Error(`${subject} restore from ${endpoint.name}: ${got} bytes in ${checkpointDir(target)}, expected ${layout.totalBytes}`);
        return { ...m, bytes: layout.totalBytes };
      },
      after: () => fs.rmSync(target, { recursive: true, force: true }),
    };
  };
  return [
    trial(
      STEVEDORE,
      undefined,
      (target) => ({ cmd: process.execPath, args: [stevedoreCli(opts.smoke, opts.log), 'restore', stevedoreJob(endpoint, { targetDir: target })], env: cleanEnv({}) }),
      (target) => path.join(target, layout.name),
    ),
    ...peers.map((peer) =>
      trial(peer.name, peer.version, (target) => downloadCommand(peer, endpoint.location(PREFIX), target, configDir), (target) => path.join(target, layout.name)),
    ),
  ];
}

export const restore: Benchmark = async (opts: BenchOptions): Promise<BenchResult> => {
  const { peers: allPeers, missing } = findPeers();
  const peers = allPeers.filter((p) => RESTORE_PEERS.has(p.name));
  if (missing.some((m) => [...RESTORE_PEERS].some((p) => m.startsWith(p)))) throw new Error(`restore benchmark: peers missing: ${missing.join('; ')}`);
  const peerNames = peers.map((p) => p.name);
  const sizes = restoreSizes(opts.smoke);
  const block = randomBlock();
  const dataDir = path.join(opts.workDir, 'restore-data');
  const endpoints = [await startSinkEndpoint(), await startS3rverEndpoint()];
  const cases: BenchCase[] = [];
  const shaPerGib = sha256CpuSecondsPerGib(block, opts.smoke ? 32 : 512);
  const bounds: string[] = [];
  try {
    for (const size of sizes) {
      const endpoint = endpoints.find((e) => e.kind === size.endpoint)!;
      opts.log(`restore: writing a ${sizeLabel(size.bytes)} checkpoint to ${dataDir}`);
      const checkpointDir = writeCheckpoint(dataDir, size.layout, block);
      endpoint.sink?.setSynthetic(syntheticContent(size.layout, block));
      // One committed checkpoint per endpoint, uploaded by Stevedore (not measured); every subject restores it.
      opts.log(`restore: uploading the checkpoint to ${endpoint.name}`);
      await measure({ cmd: process.execPath, args: [stevedoreCli(opts.smoke, opts.log), 'upload', stevedoreJob(endpoint, { checkpointDir, partSizeBytes: stevedorePartSize(opts.smoke) })], env: cleanEnv({}) }, { label: `stevedore upload to ${endpoint.name}` });
      // Only the objects are needed from here on; the local copy is removed before the restores write theirs.
      fs.rmSync(dataDir, { recursive: true, force: true });
      const label = `${sizeLabel(size.bytes)} from ${endpoint.name}`;
      const trials = restoreTrials(endpoint, peers, size.layout, opts);
      const samples = await interleave(trials, size.runs, opts.log, `restore ${label}`);
      const subjects: Subject[] = trials.map((t) => ({ name: t.subject, ...(t.version !== undefined ? { version: t.version } : {}), figures: figuresOf(samples.get(t.subject) ?? []) }));
      const own = figureOf(subjects.find((s) => s.name === STEVEDORE), FIGURE.wall);
      const fastest = bestPeer(subjects, peerNames, FIGURE.wall);
      const targets: BenchCase['targets'] = [];
      if (own && fastest) {
        const r = fastest.figure.median / own.median;
        targets.push({ text: 'at least 1.5x faster than the fastest peer', met: r >= 1.5, detail: `${fmt(own.median)} s vs ${fastest.subject.name} ${fmt(fastest.figure.median)} s: ${fmt(r)}x` });
        const peerCpu = figureOf(fastest.subject, FIGURE.cpu);
        if (peerCpu) bounds.push(restoreBound(label, size.bytes / GIB, fastest.subject.name, fastest.figure.median, peerCpu.median, shaPerGib));
      }
      cases.push({ name: `${label} (${size.layout.files.length} files)`, subjects, ratios: ratiosOf(subjects, peerNames, [FIGURE.wall, FIGURE.cpu, FIGURE.rss]), targets });
    }
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
    for (const e of endpoints) await e.close();
  }
  const svg = barPlot({
    title: 'Restore throughput (median MiB/s; higher is better)',
    unit: 'MiB/s',
    groups: cases.map((c) => ({ label: c.name.replace(/ \(.*$/, ''), bars: c.subjects.map((s) => ({ subject: s.name, value: figureOf(s, FIGURE.throughput)?.median ?? 0 })) })),
  });
  return {
    id: 'restore',
    title: 'Restore: download and verify a checkpoint',
    command: benchCommand(opts.smoke, 'restore'),
    method: [
      `One checkpoint per endpoint (the upload benchmark's layout; ${sizes.map((s) => `${sizeLabel(s.bytes)} in ${s.layout.files.length} files from ${s.endpoint === 'sink' ? 'the S3 sink' : 's3rver'}`).join(', ')}) is committed once by Stevedore; then every subject downloads all of it into an empty directory, interleaved over ${sizes[0]?.runs ?? 0} run${sizes[0]?.runs === 1 ? '' : 's'}. s3rver is measured at 1 GiB: it reads every byte from its own files, so there every subject is bound by it, and 4 GiB would only lengthen the run.`,
      `Stevedore is the agent's restoreNewest (\`bench/stevedore-cli.ts restore\`${opts.smoke ? '' : ', run from the JavaScript build in dist/ as the agent is'}): it reads the manifest (format v2, a SHA-256 per part), fetches each file larger than one part in one ranged GET per part after a HEAD that checks its size, 8 requests at once, and writes each response to its offset in the file while hashing it, checking every part's size and SHA-256 against the manifest as it ends. The parts' GETs are signed (SigV4) and sent over connections of the restore's own, each reading into one reused 1 MiB buffer (src/storage/s3-range-reader.ts); any answer other than exactly the asked bytes is asked again through the AWS SDK, which does every other request (HEAD, LIST, the manifest, small files). a one-part file of at most 4 MiB is one GET, without a HEAD, held in memory, checked, then written. Nothing is read back and nothing is flushed to disk (fsync): a restore runs before the job's container exists and is done again by the next attempt after any crash. The files are assembled in a staging directory and renamed into place. The peers are \`rclone copy\` and \`aws s3 cp --recursive\` with their defaults; neither checks a SHA-256.`,
      'Every subject runs as a child process under GNU time (wall time around the child; CPU seconds = user + system of the child). After each run the restored bytes are counted against the checkpoint\'s size, then deleted.',
      'Endpoints: s3rver (stores and serves real bytes from its directory) and the S3 sink (benchmark instrument): the sink discarded the large bodies on upload and serves the same bytes back from the generator that wrote the checkpoint (a 1 MiB random block from a per-file offset), so a GET costs the sink no disk and the clients\' own cost shows; the manifest and the small files are served from memory.',
      'The machine has 2 cores and 24 GB of RAM; every subject writes the restored files to the page cache, and the kernel writes them to disk later. The machine is shared: ratios measured side by side matter more than absolute figures.',
    ].join(' '),
    cases,
    notes: missedNote(cases, [RESTORE_NOTES, '', `What the target asks of a client that verifies, in this run (SHA-256 measured at ${fmt(shaPerGib)} CPU s per GiB on this machine, one thread, in the same run):`, '', ...bounds.map((b) => `- ${b}`)].join('\n')),
    plots: [writePlot(opts.plotDir, 'restore-throughput.svg', svg)],
  };
};

/** CPU seconds per GiB of one thread's SHA-256 over `mib` MiB of the checkpoint's block, measured where the restores run. */
export function sha256CpuSecondsPerGib(block: Buffer, mib: number): number {
  const hash = crypto.createHash('sha256');
  const chunk = block.subarray(0, Math.min(block.length, MIB));
  const before = process.threadCpuUsage();
  for (let i = 0; i < mib; i++) hash.update(chunk);
  hash.digest();
  const used = process.threadCpuUsage(before);
  return ((used.user + used.system) / 1e6) * (1024 / mib);
}

/**
 * The fastest wall time the 1.5x target allows, against the least a verifying client
 * needs here: the peer's own CPU (the receive and the page-cache writes, which every
 * client pays) plus the SHA-256 of every byte, spread perfectly over both cores.
 */
export function restoreBound(label: string, gib: number, peer: string, peerWall: number, peerCpuPerGib: number, shaPerGib: number): string {
  const allowed = peerWall / 1.5;
  const cpu = (peerCpuPerGib + shaPerGib) * gib;
  const floor = cpu / CORES;
  const verdict = floor > allowed ? 'more than the target allows: no client that verifies every byte can meet it on this machine' : 'within what the target allows';
  return `${label}: 1.5x ${peer} means at most ${fmt(allowed)} s; ${peer}'s own CPU (${fmt(peerCpuPerGib)} s per GiB) plus the SHA-256 (${fmt(shaPerGib)} s per GiB) is ${fmt(cpu)} CPU s, at least ${fmt(floor)} s on ${CORES} cores even if nothing else ran: ${verdict}.`;
}

const CORES = os.cpus().length;

const RESTORE_NOTES = [
  'What the peers do not do: rclone and awscli check no SHA-256 of what they download. Stevedore proves every part identical to what was committed (its SHA-256 against the manifest\'s) before the checkpoint is renamed into place, and never puts a half-restored checkpoint under its name.',
  '',
  'What the profile showed (1 GiB from the S3 sink, before the fix; CPU seconds per thread read from /proc): the main thread 3.6-3.9 s (SHA-256 25% of its samples, the HTTP client\'s parsing and stream machinery 10%, garbage collection 7%), V8\'s helper threads another 2.1-2.8 s, the file writes 0.5 s. V8\'s helpers were garbage collection: 65 full mark-compacts per GiB. Every socket read of an HTTP client in Node.js (the AWS SDK\'s, and plain node:http alike) hands over a fresh 64 KiB buffer outside the JavaScript heap, and V8 answers that much external memory with a full collection every 15-30 MiB, each marking the whole heap (25 MB with the AWS SDK loaded). The SDK\'s own middleware and stream wrapping cost little beside it: 1 GiB of ranged GETs through the SDK cost 2.4-2.7 CPU s, through plain node:http 2.1-2.2 s, and through sockets reading into one reused buffer 0.3 s. The S3 sink is not the limit: it spends 0.3-0.45 CPU s per GiB serving Stevedore, about 0.25-0.4 s serving rclone.',
  '',
  'What was fixed: the parts are now read by src/storage/s3-range-reader.ts, signed GETs over connections whose reads land in one reused 1 MiB buffer each (the socket\'s onread option), hashed and written from there; nothing is allocated per read. Anything but the happy answer (an error status, a redirect, a chunked body, a failed connection) is asked again through the SDK, so retries, timeouts and errors are those of every other request. Measured A/B (4 GiB from the S3 sink, 3 interleaved runs with rclone, before -> after): CPU 22.1/21.6/22.7 -> 11.1/10.7/10.2 s (5.4 -> 2.6 s/GiB), wall time 37.4/37.7/33.0 -> 17.1/19.0/13.7 s, peak RSS 237-246 -> 190-207 MiB; rclone in the same runs 5.3/4.9/4.9 CPU s, 8.5/10.1/8.3 s, 52 MiB. At 1 GiB the helper threads\' collection work fell from 2.1-2.8 to 0.4-0.8 CPU s.',
  '',
  'Why the 1.5x target is still missed: what is left of the gap is the SHA-256. With the hashing taken out as an experiment (not a product option), the same restore took 8.2-8.5 s and 6.0-6.3 CPU s for 4 GiB, as fast as rclone; the SHA-256 adds 4.8 CPU s (about 1.1 s per GiB: this shared CPU hashes about 1 GB/s, `openssl speed sha256` agrees). rclone verifies nothing on these files (above its 256 MiB cutoff it fetches each shard in 4 parallel streams, and multipart objects have no MD5 to check): 0.7 user CPU s for 4 GiB, the rest kernel time for the receive and the page cache, which Stevedore pays as well. Being 1.5x faster than that on 2 cores while hashing every byte would need the whole restore, hashing included, in about 5.5 s. Hashing on a worker thread beside the receiving was tried and not kept: on this loaded 2-core machine it gave no measurable gain (3 interleaved runs, 12.0-15.8 s without, 9.7-16.6 s with, the same CPU). 4, 8 or 16 requests at once made no difference beyond the noise; 8 stays. The verification stays: it is what lets the job start from a checkpoint proven to be the committed one. Against s3rver every subject is also bound by the server, which reads every byte from its own files.',
  '',
  'The machine is shared with other work: absolute figures move from run to run (see the min-max spread); the ratios, measured side by side in interleaved runs, are the figures to read.',
].join('\n');
