// The job spec: what a user submits (YAML or JSON), validated once on submit
// by the coordinator and again by the agent before it runs anything, since the
// session may carry anything. Both sides use this module.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument, visit } from 'yaml';
import { z } from 'zod';
import { parseS3Url } from '../storage/object-store.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import { parseSize } from '../util/size.ts';

/** The validated spec; its shape is the JobSpec message of proto/stevedore/v1/common.proto. */
export interface JobSpec {
  name: string;
  image: string;
  command: string[];
  env: Record<string, string>;
  resources: { gpus: number; cpus: number; memoryBytes: number; shmBytes: number };
  mounts: { source: string; target: string; readOnly: boolean }[];
  ulimits: { name: string; soft: number; hard: number }[];
  hostIpc: boolean;
  hostNetwork: boolean;
  // The four below are always set by validation; optional because specs kept
  // by an agent of an earlier version (its attempt ledger) do not have them.
  /** Refused unless the agent's security.allowPrivileged is true. */
  privileged?: boolean;
  /** Capabilities added to the engine's defaults, without "CAP_" (SYS_PTRACE); each must be in security.allowedCapabilities. */
  capabilities?: string[];
  /** Host directories outside the job's own; each must be inside security.allowedHostPaths. */
  hostMounts?: HostMountSpec[];
  /** Host device paths (/dev/...), at the same path in the container; each must be inside security.allowedDevices. */
  devices?: string[];
  stopSignal: string;
  stopGraceSeconds: number;
  pullPolicy: PullPolicy;
  workingDir: string;
  /** Absent when the agent does not manage the job's checkpoints. */
  checkpoint?: CheckpointSpec;
  input?: InputSpec;
  output?: OutputSpec;
  restart: RestartPolicy;
}

/** A host directory mounted into the container (the HostMount message). */
export interface HostMountSpec {
  hostPath: string;
  target: string;
  readOnly: boolean;
}

/** How often the coordinator starts the job again (the RestartPolicy message). */
export interface RestartPolicy {
  maxPreemptions: number;
  maxFailures: number;
  retryableExitCodes: number[];
}

export const DEFAULT_RESTART: RestartPolicy = { maxPreemptions: 10, maxFailures: 0, retryableExitCodes: [] };

export const EXTRACT_MODES = ['none', 'tar', 'tar.gz', 'auto'] as const;

/** A dataset downloaded once into the node's cache and mounted read-only (the InputSpec message). */
export interface InputSpec {
  url: string;
  endpoint: string;
  target: string;
  extract: (typeof EXTRACT_MODES)[number];
}

/** A directory mirrored to S3 while the job runs and once more at its end (the OutputSpec message). */
export interface OutputSpec {
  path: string;
  destination: string;
  endpoint: string;
  intervalSeconds: number;
}

export const COMMIT_RULES = ['dcp', 'orbax', 'hf', 'lightning', 'marker', 'quiescence'] as const;
export type CommitRuleName = (typeof COMMIT_RULES)[number];

/** The checkpoint section; its shape is the CheckpointSpec message. */
export interface CheckpointSpec {
  path: string;
  destination: string;
  endpoint: string;
  rule: CommitRuleName;
  marker: string;
  quiescenceSeconds: number;
  keep: number;
  keepEvery: number;
  signal: string;
  resume: boolean;
}

export type PullPolicy = 'if-not-present' | 'always' | 'never';

export const MAX_SPEC_BYTES = 256 * 1024;
export const MAX_GPUS_PER_JOB = 64;
export const RESERVED_ENV_PREFIX = 'STEVEDORE_';

export const STOP_SIGNALS = [
  'SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGKILL',
] as const;

export const ULIMIT_NAMES = [
  'core', 'cpu', 'data', 'fsize', 'locks', 'memlock', 'msgqueue', 'nice', 'nofile', 'nproc',
  'rss', 'rtprio', 'rttime', 'sigpending', 'stack',
] as const;

/** Linux capability names, without "CAP_", that a spec may ask to add. */
export const CAPABILITIES = [
  'AUDIT_CONTROL', 'AUDIT_READ', 'AUDIT_WRITE', 'BLOCK_SUSPEND', 'BPF', 'CHECKPOINT_RESTORE', 'CHOWN', 'DAC_OVERRIDE',
  'DAC_READ_SEARCH', 'FOWNER', 'FSETID', 'IPC_LOCK', 'IPC_OWNER', 'KILL', 'LEASE', 'LINUX_IMMUTABLE', 'MAC_ADMIN',
  'MAC_OVERRIDE', 'MKNOD', 'NET_ADMIN', 'NET_BIND_SERVICE', 'NET_BROADCAST', 'NET_RAW', 'PERFMON', 'SETFCAP', 'SETGID',
  'SETPCAP', 'SETUID', 'SYSLOG', 'SYS_ADMIN', 'SYS_BOOT', 'SYS_CHROOT', 'SYS_MODULE', 'SYS_NICE', 'SYS_PACCT',
  'SYS_PTRACE', 'SYS_RAWIO', 'SYS_RESOURCE', 'SYS_TIME', 'SYS_TTY_CONFIG', 'WAKE_ALARM',
] as const;

/** A capability name as written (sys_ptrace, CAP_SYS_PTRACE) in the form used everywhere else (SYS_PTRACE). */
export function normalizeCapability(name: string): string {
  return name.trim().toUpperCase().replace(/^CAP_/, '');
}

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
// A Docker image reference: [registry[:port]/]path[:tag][@digest], lower-case path.
const IMAGE_RE = /^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?\/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$/;

const size = (what: string) =>
  z.union([z.string(), z.number()], { error: `${what} must be a size such as 512Mi, 2Gi or a number of bytes` }).transform((value, ctx) => {
    const bytes = parseSize(value);
    if (bytes === undefined) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a size such as 512Mi, 2Gi or a number of bytes, not ${JSON.stringify(value)}` });
      return z.NEVER;
    }
    return bytes;
  });

const relativeJobPath = z
  .string()
  .min(1, 'must name a directory inside the job directory, such as "data"')
  .max(1024)
  .superRefine((value, ctx) => {
    if (path.posix.isAbsolute(value) || path.win32.isAbsolute(value)) {
      ctx.addIssue({ code: 'custom', message: `mount sources are relative to the job's own directory on the host; "${value}" is absolute. Use a relative path such as "data"` });
    } else if (value.split(/[\\/]/).includes('..')) {
      ctx.addIssue({ code: 'custom', message: `"${value}" contains "..": a mount must stay inside the job's own directory` });
    } else if (value.includes('\0')) {
      ctx.addIssue({ code: 'custom', message: 'contains a NUL byte' });
    }
  });

const containerPath = z
  .string()
  .max(1024)
  .refine((v) => v.startsWith('/'), 'must be an absolute path in the container, such as /data')
  .refine((v) => !v.split('/').includes('..'), 'must not contain ".."');

const hostPath = z
  .string()
  .max(1024)
  .superRefine((value, ctx) => {
    if (!value.startsWith('/')) ctx.addIssue({ code: 'custom', message: `must be an absolute path on the host, such as /data/shared, not ${JSON.stringify(value)}` });
    else if (value.split('/').includes('..')) ctx.addIssue({ code: 'custom', message: `"${value}" contains ".."; name the directory itself` });
    else if (value.includes('\0')) ctx.addIssue({ code: 'custom', message: 'contains a NUL byte' });
  })
  .transform((value) => path.posix.normalize(value).replace(/(.)\/+$/, '$1'));

const devicePath = hostPath.refine((v) => v.startsWith('/dev/'), 'must be a device path under /dev, such as /dev/infiniband/uverbs0');

const capability = z
  .string()
  .max(64)
  .transform(normalizeCapability)
  .superRefine((name, ctx) => {
    if (name === 'ALL') ctx.addIssue({ code: 'custom', message: 'ALL is not accepted: name each capability the job needs, such as SYS_PTRACE, or ask for privileged: true' });
    else if (!(CAPABILITIES as readonly string[]).includes(name)) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(name)} is not a Linux capability; write for example SYS_PTRACE or IPC_LOCK` });
  });

const ulimitValue = z.number().int().min(-1);

const endpointName = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must name an S3 endpoint of the agent configuration, such as "default"').default('default');
const s3Destination = z.string().refine((v) => parseS3Url(v) !== undefined, 'must be an S3 URL such as s3://my-bucket/runs/llama-ft (bucket of 3-63 lower-case characters, no ".." in the prefix)');

const inputSchema = z
  .object({
    url: z.string().max(4096).refine((v) => /^https?:\/\/[^\s]+$/.test(v) || /^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\/[^\s]+$/.test(v), 'must be an http(s):// URL or s3://bucket/key'),
    endpoint: endpointName,
    target: containerPath.refine((v) => v !== '/', 'must be a directory below /, such as /data'),
    extract: z.enum(EXTRACT_MODES, { error: `must be one of ${EXTRACT_MODES.join(', ')}` }).default('auto'),
  })
  .strict();

const outputSchema = z
  .object({
    path: containerPath.refine((v) => v !== '/', 'must be a directory below /, such as /output'),
    destination: s3Destination,
    endpoint: endpointName,
    intervalSeconds: z.number().int().min(1).max(86_400).default(30),
  })
  .strict();

const checkpointSchema = z
  .object({
    path: containerPath.refine((v) => v !== '/', 'must be a directory below /, such as /checkpoints'),
    destination: s3Destination,
    endpoint: endpointName,
    rule: z.enum(COMMIT_RULES, { error: `must be one of ${COMMIT_RULES.join(', ')} (see docs/checkpoints.md)` }).default('dcp'),
    marker: z.string().regex(/^[^/\\]{1,255}$/, 'must be a file name such as COMMIT').default('COMMIT'),
    quiescenceSeconds: z.number().int().min(1).max(3600).default(10),
    keep: z.number().int().min(1).max(10_000).default(3),
    keepEvery: z.number().int().min(0).max(1_000_000).default(0),
    signal: z.enum(STOP_SIGNALS).default('SIGUSR1'),
    resume: z.boolean().default(true),
  })
  .strict();

const userSchema = z
  .object({
    name: z.string().regex(NAME_RE, 'must be 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit'),
    image: z.string().min(1, 'is required, for example "pytorch/pytorch:2.4.0-cuda12.1-cudnn9-runtime"').max(512).regex(IMAGE_RE, 'is not a valid image reference such as "registry.example.com/team/trainer:1.2"'),
    command: z.union([z.array(z.string().max(65536)).max(256), z.string().max(65536).transform((s) => ['/bin/sh', '-c', s])], { error: 'must be a list of at most 256 strings (the argv) or one string run with /bin/sh -c, each at most 65536 characters' }).default([]),
    env: z
      .record(
        z.string().regex(ENV_NAME_RE, 'environment variable names are letters, digits and "_", not starting with a digit'),
        z.union([z.string(), z.number(), z.boolean()], { error: 'environment values are strings, numbers or true/false' }).transform(String),
      )
      .default({})
      .superRefine((env, ctx) => {
        const keys = Object.keys(env);
        if (keys.length > 512) ctx.addIssue({ code: 'custom', message: 'at most 512 variables' });
        for (const key of keys) {
          if (key.startsWith(RESERVED_ENV_PREFIX)) {
            ctx.addIssue({ code: 'custom', path: [key], message: `names starting with ${RESERVED_ENV_PREFIX} are set by the agent; choose another name` });
          }
        }
      }),
    resources: z
      .object({
        gpus: z.number().int('must be a whole number').min(0).max(MAX_GPUS_PER_JOB).default(0),
        cpus: z.number().min(0).max(4096).default(0),
        memory: size('memory').optional(),
        memoryBytes: z.number().int().min(0).optional(),
        shm: size('shm').optional(),
        shmBytes: z.number().int().min(0).optional(),
      })
      .strict()
      .default({ gpus: 0, cpus: 0 })
      .transform((r) => ({
        gpus: r.gpus,
        cpus: r.cpus,
        memoryBytes: r.memory ?? r.memoryBytes ?? 0,
        shmBytes: r.shm ?? r.shmBytes ?? 0,
      })),
    mounts: z
      .array(z.object({ source: relativeJobPath, target: containerPath, readOnly: z.boolean().default(false) }).strict())
      .max(64)
      .default([])
      .superRefine((mounts, ctx) => {
        const seen = new Set<string>();
        mounts.forEach((m, i) => {
          if (seen.has(m.target)) ctx.addIssue({ code: 'custom', path: [i, 'target'], message: `${m.target} is mounted twice` });
          seen.add(m.target);
        });
      }),
    ulimits: z
      .union([
        z.array(z.object({ name: z.enum(ULIMIT_NAMES), soft: ulimitValue, hard: ulimitValue }).strict()),
        z.partialRecord(z.enum(ULIMIT_NAMES), z.union([ulimitValue, z.object({ soft: ulimitValue, hard: ulimitValue }).strict()])).transform((rec) =>
          Object.entries(rec).map(([name, v]) => (typeof v === 'number' ? { name, soft: v, hard: v } : { name, ...v })),
        ),
      ], { error: `must be a mapping such as {nofile: 65536, memlock: {soft: 1024, hard: 2048}} or a list of {name, soft, hard}; names are ${ULIMIT_NAMES.join(', ')}; limits are whole numbers, -1 for unlimited` })
      .default([]),
    hostIpc: z.boolean().default(false),
    hostNetwork: z.boolean().default(false),
    privileged: z.boolean().default(false),
    capabilities: z.array(capability).max(64).default([]).transform((caps) => [...new Set(caps)]),
    hostMounts: z.array(z.object({ hostPath, target: containerPath, readOnly: z.boolean().default(false) }).strict()).max(64).default([]),
    devices: z.array(devicePath).max(64).default([]).transform((devices) => [...new Set(devices)]),
    stopSignal: z.enum(STOP_SIGNALS).default('SIGTERM'),
    stopGraceSeconds: z.number().int().min(0).max(3600).default(30),
    pullPolicy: z.enum(['if-not-present', 'always', 'never']).default('if-not-present'),
    workingDir: z.string().max(1024).refine((v) => v === '' || v.startsWith('/'), 'must be an absolute path in the container').default(''),
    checkpoint: checkpointSchema.optional(),
    input: inputSchema.optional(),
    output: outputSchema.optional(),
    restart: z
      .object({
        maxPreemptions: z.number().int().min(0).max(1000).default(DEFAULT_RESTART.maxPreemptions),
        maxFailures: z.number().int().min(0).max(1000).default(DEFAULT_RESTART.maxFailures),
        retryableExitCodes: z.array(z.number().int().min(-1).max(255)).max(256).default([]),
      })
      .strict()
      .default(DEFAULT_RESTART),
  })
  .strict()
  .superRefine((spec, ctx) => {
    // The agent mounts these itself: no two may share a container path.
    const owned: [string, string | undefined][] = [['checkpoint.path', spec.checkpoint?.path], ['input.target', spec.input?.target], ['output.path', spec.output?.path]];
    const seen = new Map<string, string>(spec.mounts.map((m, i) => [m.target, `mounts[${i}].target`]));
    const hostTargets: [string, string | undefined][] = spec.hostMounts.map((m, i) => [`hostMounts.${i}.target`, m.target]);
    for (const [field, target] of [...hostTargets, ...owned]) {
      if (!target) continue;
      const other = seen.get(target)?.replace(/\.(\d+)\./, '[$1].');
      if (other) ctx.addIssue({ code: 'custom', path: field.split('.').map((p) => (/^\d+$/.test(p) ? Number(p) : p)), message: `${target} is also ${other}; each of the job's directories needs its own path` });
      seen.set(target, field);
    }
  });

function describeIssues(error: z.ZodError, source: string): string {
  const lines = error.issues.slice(0, 10).map((issue) => {
    const where = issue.path.length === 0 ? 'spec' : issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const named = issue.keys.slice(0, 10).map((k) => JSON.stringify(k.length > 64 ? `${k.slice(0, 64)}...` : k)).join(', ');
      const more = issue.keys.length > 10 ? ` and ${issue.keys.length - 10} more` : '';
      message = `unknown field${issue.keys.length > 1 ? 's' : ''} ${named}${more}: check the spelling (fields are camelCase, see docs/job-spec.md)`;
    }
    if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) message = 'is required';
    return `  ${where}: ${message}`;
  });
  const more = error.issues.length > 10 ? `\n  ... and ${error.issues.length - 10} more` : '';
  return `invalid job spec${source ? ` in ${source}` : ''}:\n${lines.join('\n')}${more}`;
}

/** Validates a spec given as a parsed document (user input or a wire message). */
export function validateJobSpec(input: unknown, source = ''): JobSpec {
  let size: number;
  try {
    size = Buffer.byteLength(JSON.stringify(input) ?? '');
  } catch (err) {
    throw new StevedoreError('SPEC_INVALID', `invalid job spec${source ? ` in ${source}` : ''}: not a plain document`, { cause: err });
  }
  if (size > MAX_SPEC_BYTES) {
    throw new StevedoreError('SPEC_INVALID', `job spec is ${size} bytes; the limit is ${MAX_SPEC_BYTES}. Put large data in a mounted file, not in the spec`);
  }
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new StevedoreError('SPEC_INVALID', `invalid job spec${source ? ` in ${source}` : ''}: expected a mapping with at least "name" and "image"`);
  }
  const result = userSchema.safeParse(input);
  if (!result.success) throw new StevedoreError('SPEC_INVALID', describeIssues(result.error, source));
  return result.data;
}

/**
 * YAML to a plain document, bounded: aliases may expand to at most 100 nodes
 * ("billion laughs"), warnings are not printed, and duplicate keys are found in
 * one pass (the yaml package's own check compares every key with every other:
 * 20,000 keys took 50 s).
 */
function parseSpecYaml(text: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: false, logLevel: 'error' });
  const first = doc.errors[0];
  if (first) throw first;
  let duplicate: string | undefined;
  visit(doc, {
    Map(_key, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        const key = pair.key !== null && typeof pair.key === 'object' && 'value' in pair.key ? pair.key.value : pair.key;
        if (seen.has(key)) {
          duplicate = String(key);
          return visit.BREAK;
        }
        seen.add(key);
      }
      return undefined;
    },
  });
  if (duplicate !== undefined) throw new Error(`Map keys must be unique; "${duplicate.slice(0, 64)}" is repeated`);
  return doc.toJS({ maxAliasCount: 100 });
}

/** Parses YAML or JSON text (JSON is YAML) into a validated spec. */
export function parseJobSpec(text: string, source = ''): JobSpec {
  if (Buffer.byteLength(text) > MAX_SPEC_BYTES) {
    throw new StevedoreError('SPEC_INVALID', `job spec${source ? ` ${source}` : ''} is larger than ${MAX_SPEC_BYTES} bytes`);
  }
  let doc: unknown;
  try {
    doc = parseSpecYaml(text);
  } catch (err) {
    const why = err instanceof RangeError || /Maximum call stack/.test(messageOf(err)) ? 'it is nested too deeply (a spec needs a few levels)' : messageOf(err).split('\n')[0];
    throw new StevedoreError('SPEC_INVALID', `job spec${source ? ` ${source}` : ''} is not valid YAML or JSON: ${why}`, { cause: err });
  }
  return validateJobSpec(doc, source);
}

export function readJobSpecFile(file: string): JobSpec {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new StevedoreError('SPEC_UNREADABLE', `cannot read job spec ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return parseJobSpec(text, file);
}

/** A spec from the wire: proto3 defaults ("" and 0) mean "not set". */
export function fromSpecMessage(msg: unknown): JobSpec {
  if (typeof msg !== 'object' || msg === null) throw new StevedoreError('SPEC_INVALID', 'start command carries no job spec');
  const m = msg as Record<string, unknown>;
  const cleaned: Record<string, unknown> = { ...m };
  for (const key of ['stopSignal', 'pullPolicy'] as const) {
    if (cleaned[key] === '') delete cleaned[key];
  }
  if (cleaned.resources === null || cleaned.resources === undefined) delete cleaned.resources;
  for (const key of ['input', 'output'] as const) {
    if (cleaned[key] === null || cleaned[key] === undefined) delete cleaned[key];
    else if (typeof cleaned[key] === 'object') {
      const section: Record<string, unknown> = { ...(cleaned[key] as Record<string, unknown>) };
      for (const field of ['endpoint', 'extract'] as const) if (section[field] === '') delete section[field];
      if (section.intervalSeconds === 0) delete section.intervalSeconds;
      cleaned[key] = section;
    }
  }
  if (cleaned.restart === null || cleaned.restart === undefined) delete cleaned.restart;
  if (cleaned.checkpoint === null || cleaned.checkpoint === undefined) delete cleaned.checkpoint;
  else if (typeof cleaned.checkpoint === 'object') {
    const c: Record<string, unknown> = { ...(cleaned.checkpoint as Record<string, unknown>) };
    for (const key of ['endpoint', 'rule', 'marker', 'signal'] as const) if (c[key] === '') delete c[key];
    for (const key of ['quiescenceSeconds', 'keep'] as const) if (c[key] === 0) delete c[key];
    cleaned.checkpoint = c;
  }
  return validateJobSpec(cleaned, 'start command');
}

/**
 * What a node lets its jobs ask for beyond the defaults (the agent's `security:`
 * section). Only the agent's own config sets it, never a job spec.
 */
export interface SecurityPolicy {
  /** privileged: true in a spec. */
  allowPrivileged: boolean;
  /** Capabilities (without "CAP_") a spec may add. */
  allowedCapabilities: string[];
  /** Host directories a spec may mount, with what is below them; readOnly: only read-only mounts. */
  allowedHostPaths: { path: string; readOnly: boolean }[];
  /** Device path prefixes (/dev/infiniband) a spec may pass in. */
  allowedDevices: string[];
  /** hostNetwork: true in a spec (NCCL over InfiniBand/RoCE and multi-node rendezvous need it). */
  allowHostNetwork: boolean;
  /** hostIpc: true in a spec (CUDA IPC and NCCL's shared memory between containers need it). */
  allowHostIpc: boolean;
}

/** Closed, except host network and IPC, which GPU training jobs commonly need. */
export const DEFAULT_SECURITY_POLICY: Readonly<SecurityPolicy> = {
  allowPrivileged: false,
  allowedCapabilities: [],
  allowedHostPaths: [],
  allowedDevices: [],
  allowHostNetwork: true,
  allowHostIpc: true,
};

/** Whether `child` is `parent` or below it (both absolute, normalized). */
export function isPathWithin(child: string, parent: string): boolean {
  const rel = path.posix.relative(parent, child);
  return rel === '' || (rel !== '..' && !rel.startsWith('../') && !path.posix.isAbsolute(rel));
}

/**
 * The allowedHostPaths entry that covers `hostPath` for this kind of mount:
 * the deepest one, read-write entries before read-only ones for a read-write
 * mount. undefined: no entry covers it; { readOnly: true } for a read-write
 * mount: only read-only is allowed there.
 */
export function hostPathAllowance(hostPath: string, readOnly: boolean, policy: Pick<SecurityPolicy, 'allowedHostPaths'>): { path: string; readOnly: boolean } | undefined {
  const covering = policy.allowedHostPaths.filter((a) => isPathWithin(hostPath, a.path));
  if (covering.length === 0) return undefined;
  if (readOnly) return covering[0];
  return covering.find((a) => !a.readOnly) ?? covering[0];
}

const describeAllowed = (items: readonly string[]): string => (items.length === 0 ? 'none' : items.join(', '));

/**
 * Refuses (SPEC_FORBIDDEN) a spec that asks for more than the node allows,
 * naming each field, its value and the agent setting that would allow it.
 * Checks the spec as written; JobPaths resolves symbolic links on the host
 * and checks again where the paths really lead.
 */
export function checkSecurityPolicy(spec: JobSpec, policy: Readonly<SecurityPolicy>): void {
  const problems: string[] = [];
  const config = "in the agent's config (docs/configuration.md, security)";
  if (spec.privileged === true && !policy.allowPrivileged) {
    problems.push(`privileged: true is not allowed on this node; a privileged container has every capability and every host device. Ask for the capabilities or devices the job needs instead, or set security.allowPrivileged: true ${config}`);
  }
  for (const cap of spec.capabilities ?? []) {
    if (policy.allowedCapabilities.includes(cap) || policy.allowedCapabilities.includes('ALL')) continue;
    problems.push(`capabilities: ${cap} is not allowed on this node (security.allowedCapabilities: ${describeAllowed(policy.allowedCapabilities)}); add ${cap} to security.allowedCapabilities ${config}, or drop it from the spec`);
  }
  (spec.hostMounts ?? []).forEach((m, i) => {
    const allowance = hostPathAllowance(m.hostPath, m.readOnly, policy);
    const allowed = describeAllowed(policy.allowedHostPaths.map((a) => `${a.path}${a.readOnly ? ':ro' : ''}`));
    if (!allowance) {
      problems.push(`hostMounts[${i}].hostPath: ${m.hostPath} is not inside a host path this node allows (security.allowedHostPaths: ${allowed}); add ${m.hostPath} or a directory above it to security.allowedHostPaths ${config}, or use mounts (inside the job's own directory)`);
    } else if (allowance.readOnly && !m.readOnly) {
      problems.push(`hostMounts[${i}].readOnly: ${m.hostPath} may only be mounted read-only on this node (security.allowedHostPaths has ${allowance.path}:ro); set readOnly: true, or allow writing with "${allowance.path}" (without :ro) ${config}`);
    }
  });
  for (const device of spec.devices ?? []) {
    if (policy.allowedDevices.some((prefix) => isPathWithin(device, prefix))) continue;
    problems.push(`devices: ${device} is not allowed on this node (security.allowedDevices: ${describeAllowed(policy.allowedDevices)}); add ${device} or a directory above it to security.allowedDevices ${config}. GPUs need no entry: ask for resources.gpus`);
  }
  if (spec.hostNetwork && !policy.allowHostNetwork) {
    problems.push(`hostNetwork: true is not allowed on this node (security.allowHostNetwork: false); drop it from the spec, or set security.allowHostNetwork: true ${config}`);
  }
  if (spec.hostIpc && !policy.allowHostIpc) {
    problems.push(`hostIpc: true is not allowed on this node (security.allowHostIpc: false); drop it from the spec, or set security.allowHostIpc: true ${config}`);
  }
  if (problems.length > 0) {
    throw new StevedoreError('SPEC_FORBIDDEN', `job spec ${spec.name} asks for more than this node allows:\n${problems.map((p) => `  ${p}`).join('\n')}`);
  }
}
