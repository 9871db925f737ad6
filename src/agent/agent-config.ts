// The agent's configuration, compiled once at start from four sources, the
// first that sets a field winning: command-line flags, environment variables,
// the YAML file, defaults. Every problem found is reported at once, each
// naming the field, where it was set, and the fix. docs/configuration.md
// describes every field.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { StevedoreError } from '../util/errors.ts';
import { DEFAULT_FATAL_XIDS } from './inventory/gpu-health.ts';
import type { GpuHealthConfig } from './gpu-health-monitor.ts';
import { isListenOff, parseListenAddress } from '../util/status-http-server.ts';
import { CAPABILITIES, DEFAULT_SECURITY_POLICY, normalizeCapability, type SecurityPolicy } from '../spec/job-spec.ts';
import { compileS3Endpoint, isValidEndpointName, s3EndpointSchema, DEFAULT_ENDPOINT_NAME, type S3EndpointConfig } from '../storage/s3-config.ts';

export interface AgentConfig {
  coordinator: { address: string; tls: { ca: string; cert: string; key: string } | undefined };
  /** Name shown for the node; defaults to the hostname. */
  nodeName: string | undefined;
  stateDir: string;
  workRoot: string;
  socketPath: string;
  socketGroup: string | undefined;
  /** Always set after loading: the flag, DOCKER_HOST, the file, or unix:///var/run/docker.sock. */
  dockerHost: string | undefined;
  nvidiaSmiPath: string;
  labels: Record<string, string>;
  registries: { server: string; username: string; password: string }[];
  pullInactivityTimeoutSeconds: number;
  reconnect: { initialMs: number; maxMs: number };
  shutdownTimeoutSeconds: number;
  logLevel: string;
  /** S3 endpoints by name; a job's checkpoint section names one (default: "default"). */
  s3: { endpoints: Record<string, S3EndpointConfig> };
  checkpoints: {
    /** Preferred multipart part size; larger files get larger parts (at most 10,000 parts). */
    partSizeMiB: number;
    /** Upload memory bound for the whole agent: part buffers in flight across all jobs. */
    maxInFlightMiB: number;
    /** How often checkpoint directories are re-scanned besides file events. */
    rescanSeconds: number;
  };
  preemption: PreemptionConfig;
  metrics: {
    /** host:port of the HTTP server for /metrics, /livez and /readyz; undefined: no server. */
    listen: string | undefined;
  };
  /** GPU health checks (docs/operations.md "GPU health"); always set by loadAgentConfig, undefined means GPU_HEALTH_DEFAULTS. */
  gpuHealth?: GpuHealthConfig;
  /**
   * What jobs may ask for beyond the container defaults (privileged, capabilities,
   * host mounts, devices, host network and IPC); always set by loadAgentConfig,
   * undefined means DEFAULT_SECURITY_POLICY.
   */
  security?: SecurityPolicy;
}

export const PREEMPTION_CLOUDS = ['auto', 'aws', 'gcp', 'azure', 'none'] as const;
export type PreemptionCloud = (typeof PREEMPTION_CLOUDS)[number];
export const DRAIN_ON_SIGTERM = ['auto', 'always', 'never'] as const;
export type DrainOnSigterm = (typeof DRAIN_ON_SIGTERM)[number];

/** How the node learns it is going away, and how much of the window the drain keeps in reserve. */
export interface PreemptionConfig {
  /** Whose metadata service to watch; auto probes each once at start, none watches none. */
  cloud: PreemptionCloud;
  /** The metadata service's base URL; undefined: the cloud's own (http://169.254.169.254). */
  metadataUrl: string | undefined;
  /** Poll interval; undefined: the detector's default (AWS 2 s, Azure 1 s; GCP uses hanging GETs). */
  pollSeconds: number | undefined;
  /** The final checkpoint must be durable this long before the notice's deadline. */
  safetyMarginSeconds: number;
  /** SIGTERM drains the jobs: at host shutdown only (auto), on every SIGTERM (always), or never. */
  drainOnSigterm: DrainOnSigterm;
  /** The window a SIGTERM drain gets; keep it below the unit's TimeoutStopSec (120 s). */
  sigtermWindowSeconds: number;
}

export interface AgentConfigFlags {
  coordinator?: string;
  stateDir?: string;
  workRoot?: string;
  socket?: string;
  nodeName?: string;
  /** key=value, one per --label. */
  labels?: string[];
  nvidiaSmi?: string;
  dockerHost?: string;
  logLevel?: string;
  /** host:port, or off. */
  metricsListen?: string;
}

export interface LoadAgentConfigOptions {
  /** Default DEFAULT_CONFIG_FILE. */
  file?: string;
  /** True when the user named the file (--config): then it must exist. */
  fileIsExplicit?: boolean;
  /** Default process.env. */
  env?: NodeJS.ProcessEnv;
  flags?: AgentConfigFlags;
  /** Relative paths are resolved against this; default process.cwd(). */
  cwd?: string;
}

export const DEFAULT_CONFIG_FILE = '/etc/stevedore/agent.yaml';

export const CONFIG_DEFAULTS = {
  coordinatorAddress: '127.0.0.1:7443',
  stateDir: '/var/lib/stevedore',
  socketPath: '/run/stevedore/agent.sock',
  dockerHost: 'unix:///var/run/docker.sock',
  nvidiaSmiPath: 'nvidia-smi',
  pullInactivityTimeoutSeconds: 120,
  reconnect: { initialMs: 500, maxMs: 30_000 },
  shutdownTimeoutSeconds: 10,
  logLevel: 'info',
  checkpoints: { partSizeMiB: 16, maxInFlightMiB: 256, rescanSeconds: 2 },
  preemption: { cloud: 'auto', safetyMarginSeconds: 10, drainOnSigterm: 'auto', sigtermWindowSeconds: 80 },
  metrics: { listen: '0.0.0.0:9464' },
} as const;

/** The gpuHealth section's defaults. */
export const GPU_HEALTH_DEFAULTS: Readonly<GpuHealthConfig> = {
  intervalSeconds: 30,
  maxTemperatureC: 90,
  maxUncorrectedEcc: 0,
  kernelLog: '/dev/kmsg',
  fatalXids: [...DEFAULT_FATAL_XIDS],
};

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Directories a work root must not be, nor be inside: jobs get directories there that containers may write. */
export const SYSTEM_DIRS = ['/bin', '/boot', '/dev', '/etc', '/lib', '/lib32', '/lib64', '/libx32', '/proc', '/run', '/sbin', '/sys', '/usr', '/var/lib/docker', '/var/lib/containerd'];
/** Shared top-level directories a work root may be inside of, but must not be. */
const SHARED_DIRS = ['/home', '/mnt', '/media', '/opt', '/root', '/srv', '/tmp', '/var', '/var/lib', '/var/tmp'];

const LABEL_KEY_RE = /^[a-z0-9./-]+$/;
const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const DOCKER_HOST_RE = /^(unix|tcp|http|https|ssh|npipe):\/\/.+/;
const MAX_SOCKET_PATH_BYTES = 107;

// Where each field came from, for error messages.
type Sources = Map<string, string>;

// A message for a value of the wrong type, or "is required" when it is missing.
const typeError = (what: string) => (issue: { input?: unknown }): string => (issue.input === undefined ? 'is required' : what);
const str = z.string({ error: typeError('must be a text value') });
const bool = z.boolean({ error: typeError('must be true or false') });
const num = (what: string) => z.number({ error: typeError(`must be a number of ${what}`) });

function issue(ctx: z.RefinementCtx, message: string, p: (string | number)[] = []): void {
  ctx.addIssue({ code: 'custom', message, path: p });
}

function pathValue(cwd: string, emptyFix: string) {
  return str.superRefine((value, ctx) => {
    if (value.trim() === '') issue(ctx, `must not be empty; ${emptyFix}`);
    else if (value.includes('\0')) issue(ctx, 'must not contain a NUL byte');
  }).transform((value) => path.resolve(cwd, value));
}

// The file's fields, each checked on its own so that every problem shows up in one pass.
function fileSchema(cwd: string) {
  const seconds = num('seconds').int('must be a whole number of seconds');
  const millis = num('milliseconds').int('must be whole milliseconds').min(1, 'must be at least 1 ms').max(3_600_000, 'must be at most an hour');
  return z
    .object({
      coordinator: z
        .object({
          address: str.superRefine((address, ctx) => checkCoordinatorAddress(address, ctx)).optional(),
          tls: z
            .object({ ca: str.optional(), cert: str.optional(), key: str.optional() })
            .strict()
            .superRefine((tls, ctx) => checkTls(tls, cwd, ctx))
            .transform((tls) => ({
              ca: tls.ca && path.resolve(cwd, tls.ca),
              cert: tls.cert && path.resolve(cwd, tls.cert),
              key: tls.key && path.resolve(cwd, tls.key),
            }))
            .optional(),
        })
        .strict()
        .optional(),
      nodeName: str
        .refine((n) => NODE_NAME_RE.test(n) && n.length <= 253, { error: (iss) => `${JSON.stringify(iss.input)} is not a valid name: use up to 253 letters, digits, ".", "_" or "-", starting with a letter or digit` })
        .optional(),
      stateDir: pathValue(cwd, 'leave it out for the default /var/lib/stevedore')
        .refine((dir) => dir !== '/', 'must not be /; use a directory of its own such as /var/lib/stevedore')
        .optional(),
      workRoot: pathValue(cwd, 'leave it out for the default <stateDir>/jobs')
        .superRefine((dir, ctx) => checkWorkRoot(dir, ctx))
        .optional(),
      socketPath: pathValue(cwd, 'leave it out for the default /run/stevedore/agent.sock')
        .refine((p) => Buffer.byteLength(p) <= MAX_SOCKET_PATH_BYTES, {
          error: (iss) => `${String(iss.input)} is ${Buffer.byteLength(String(iss.input))} bytes long; unix socket paths are limited to ${MAX_SOCKET_PATH_BYTES} bytes: choose a shorter path`,
        })
        .optional(),
      socketGroup: str.optional(),
      dockerHost: str
        .refine((h) => DOCKER_HOST_RE.test(h), {
          error: (iss) => `${JSON.stringify(iss.input)} is not a Docker Engine address; write for example unix:///var/run/docker.sock or tcp://127.0.0.1:2375`,
        })
        .optional(),
      nvidiaSmiPath: str
        .refine((p) => p.trim() !== '' && !p.includes('\0'), 'must not be empty; leave it out to use nvidia-smi from PATH')
        // A bare name is looked up on PATH; anything with a slash is a path.
        .transform((p) => (p.includes('/') ? path.resolve(cwd, p) : p))
        .optional(),
      labels: z
        .record(z.string(), z.union([z.string(), z.number(), z.boolean()], { error: 'label values are text, such as us-east-1a' }).transform(String))
        .superRefine((labels, ctx) => {
          for (const [key, value] of Object.entries(labels)) {
            if (!LABEL_KEY_RE.test(key) || key.length > 253) {
              issue(ctx, `label keys are lower-case letters, digits, ".", "/" and "-" (such as zone or instance-type); rename ${JSON.stringify(key)}`, [key]);
            } else if (value.length > 253 || /\p{Cc}/u.test(value)) {
              issue(ctx, 'label values are at most 253 characters, without control characters', [key]);
            }
          }
        })
        .optional(),
      registries: z
        .array(
          z
            .object({
              server: str.refine((v) => v.trim() !== '', 'must name the registry, such as registry.example.com or ghcr.io'),
              username: str.min(1, 'must not be empty'),
              password: str.min(1, 'must not be empty'),
            })
            .strict(),
          { error: 'must be a list of {server, username, password}' },
        )
        .optional(),
      pullInactivityTimeoutSeconds: seconds.min(1, 'must be at least 1 second').max(86_400, 'must be at most 86400 seconds (a day)').optional(),
      reconnect: z
        .object({ initialMs: millis.optional(), maxMs: millis.optional() })
        .strict()
        .superRefine((r, ctx) => {
          const initialMs = r.initialMs ?? CONFIG_DEFAULTS.reconnect.initialMs;
          const maxMs = r.maxMs ?? CONFIG_DEFAULTS.reconnect.maxMs;
          if (maxMs < initialMs) issue(ctx, `${maxMs} is below reconnect.initialMs (${initialMs}); the longest wait must be at least the first`, ['maxMs']);
        })
        .optional(),
      shutdownTimeoutSeconds: seconds.min(0, 'must not be negative').max(3600, 'must be at most 3600 seconds').optional(),
      logLevel: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).optional(),
      s3: z
        .object({
          endpoints: z
            .record(z.string(), s3EndpointSchema, { error: 'must be a mapping of endpoint names to endpoints, such as default: {endpoint: http://127.0.0.1:9000}' })
            .superRefine((endpoints, ctx) => {
              for (const name of Object.keys(endpoints)) {
                if (!isValidEndpointName(name)) issue(ctx, `${JSON.stringify(name)} is not a valid endpoint name: use up to 63 letters, digits, ".", "_" or "-", starting with a letter or digit`, [name]);
              }
            })
            .optional(),
        })
        .strict()
        .optional(),
      checkpoints: z
        .object({
          partSizeMiB: num('MiB').int('must be a whole number of MiB').min(5, 'must be at least 5 (S3 parts are at least 5 MiB)').max(5120, 'must be at most 5120 (S3 parts are at most 5 GiB)').optional(),
          maxInFlightMiB: num('MiB').int('must be a whole number of MiB').min(5, 'must be at least 5 MiB').max(1_048_576, 'must be at most 1048576 MiB').optional(),
          rescanSeconds: num('seconds').min(0.1, 'must be at least 0.1 seconds').max(3600, 'must be at most 3600 seconds').optional(),
        })
        .strict()
        .superRefine((c, ctx) => {
          const part = c.partSizeMiB ?? CONFIG_DEFAULTS.checkpoints.partSizeMiB;
          const inFlight = c.maxInFlightMiB ?? CONFIG_DEFAULTS.checkpoints.maxInFlightMiB;
          if (inFlight < part) issue(ctx, `${inFlight} is below checkpoints.partSizeMiB (${part}); at least one part must fit in memory`, ['maxInFlightMiB']);
        })
        .optional(),
      preemption: z
        .object({
          cloud: z.enum(PREEMPTION_CLOUDS, { error: `must be one of ${PREEMPTION_CLOUDS.join(', ')}` }).optional(),
          metadataUrl: str.superRefine((url, ctx) => checkMetadataUrl(url, ctx)).transform((url) => url.replace(/\/+$/, '')).optional(),
          pollSeconds: num('seconds').min(0.01, 'must be at least 0.01 seconds').max(300, 'must be at most 300 seconds').optional(),
          safetyMarginSeconds: num('seconds').min(0, 'must not be negative').max(600, 'must be at most 600 seconds').optional(),
          drainOnSigterm: z.enum(DRAIN_ON_SIGTERM, { error: `must be one of ${DRAIN_ON_SIGTERM.join(', ')}` }).optional(),
          sigtermWindowSeconds: num('seconds').min(1, 'must be at least 1 second').max(3600, 'must be at most 3600 seconds').optional(),
        })
        .strict()
        .optional(),
      gpuHealth: z
        .object({
          intervalSeconds: num('seconds').min(0.1, 'must be at least 0.1 seconds').max(3600, 'must be at most 3600 seconds').optional(),
          maxTemperatureC: num('degrees Celsius').int('must be whole degrees Celsius').min(1, 'must be at least 1').max(150, 'must be at most 150').optional(),
          maxUncorrectedEcc: num('errors').int('must be a whole number of errors').min(0, 'must not be negative').optional(),
          // '' reads no kernel log (no XIDs).
          kernelLog: str.refine((p) => !p.includes('\0'), 'must not contain a NUL byte').transform((p) => (p.trim() === '' ? '' : path.resolve(cwd, p))).optional(),
          fatalXids: z
            .array(z.number({ error: 'must be whole XID codes' }).int('must be whole XID codes').min(1, 'XID codes are 1 or more').max(65535, 'XID codes are at most 65535'), { error: 'must be a list of XID codes, such as [48, 79]' })
            .optional(),
        })
        .strict()
        .optional(),
      security: z
        .object({
          allowPrivileged: bool.optional(),
          allowedCapabilities: z
            .array(str.transform(normalizeCapability).superRefine((cap, ctx) => {
              if (cap !== 'ALL' && !(CAPABILITIES as readonly string[]).includes(cap)) issue(ctx, `${JSON.stringify(cap)} is not a Linux capability; write for example SYS_PTRACE or IPC_LOCK`);
            }), { error: 'must be a list of capabilities, such as [SYS_PTRACE, IPC_LOCK]' })
            .optional(),
          allowedHostPaths: z
            .array(str.superRefine((entry, ctx) => checkAllowedPath(entry.replace(/:ro$/, ''), '/data/shared or /data/datasets:ro', ctx)), { error: 'must be a list of host directories, such as [/data/shared, /data/datasets:ro]' })
            .optional(),
          allowedDevices: z
            .array(
              str.superRefine((entry, ctx) => {
                if (!entry.startsWith('/dev/')) issue(ctx, `${JSON.stringify(entry)} is not under /dev; write for example /dev/infiniband`);
                else checkAllowedPath(entry, '/dev/infiniband', ctx);
              }),
              { error: 'must be a list of device paths, such as [/dev/infiniband]' },
            )
            .optional(),
          allowHostNetwork: bool.optional(),
          allowHostIpc: bool.optional(),
        })
        .strict()
        .optional(),
      metrics: z
        .object({
          listen: str
            .superRefine((listen, ctx) => {
              if (isListenOff(listen)) return;
              const parsed = parseListenAddress(listen);
              if ('error' in parsed) issue(ctx, parsed.error);
            })
            .optional(),
        })
        .strict()
        .optional(),
    })
    .strict();
}

function checkAllowedPath(entry: string, example: string, ctx: z.RefinementCtx): void {
  if (!entry.startsWith('/') || entry.includes('\0')) issue(ctx, `${JSON.stringify(entry)} is not an absolute path; write for example ${example}`);
  else if (entry.split('/').includes('..')) issue(ctx, `${JSON.stringify(entry)} contains ".."; name the directory itself`);
  else if (path.posix.normalize(entry) === '/') issue(ctx, 'must not be /, which would let jobs mount any host path; name the directories jobs may use');
}

/** allowedHostPaths entries: "/data" (read-write) or "/data:ro" (read-only mounts only). */
function compileHostPaths(entries: string[]): SecurityPolicy['allowedHostPaths'] {
  return entries.map((entry) => {
    const readOnly = entry.endsWith(':ro');
    return { path: path.posix.normalize(readOnly ? entry.slice(0, -3) : entry).replace(/(.)\/+$/, '$1'), readOnly };
  });
}

function checkMetadataUrl(url: string, ctx: z.RefinementCtx): void {
  const example = 'write for example http://169.254.169.254, or leave it out for the cloud\'s own';
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    issue(ctx, `${JSON.stringify(url)} is not a URL; ${example}`);
    return;
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') issue(ctx, `${JSON.stringify(url)} must be http:// or https://; ${example}`);
  else if (parsed.username !== '' || parsed.password !== '') issue(ctx, `must not carry credentials; ${example}`);
  else if (parsed.search !== '' || parsed.hash !== '' || parsed.pathname !== '/') issue(ctx, `${JSON.stringify(url)} must be the service's base URL, without a path or query; ${example}`);
}

type FileConfig = z.infer<ReturnType<typeof fileSchema>>;

class Problems {
  readonly lines: string[] = [];
  private readonly sources: Sources;
  constructor(sources: Sources) {
    this.sources = sources;
  }

  add(field: string, message: string): void {
    const source = this.sources.get(field);
    this.lines.push(`${field}: ${message}${source ? ` (set by ${source})` : ''}`);
  }
}

function readConfigFile(file: string, explicit: boolean): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !explicit) return {};
    const fix = code === 'ENOENT' ? 'check the path given to --config' : code === 'EACCES' ? 'make it readable by the agent' : code === 'EISDIR' ? 'name a file, not a directory' : 'check the file';
    throw new StevedoreError('CONFIG_UNREADABLE', `cannot read the agent configuration ${file} (${code ?? String(err)}): ${fix}`, { cause: err });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 100 });
  } catch (err) {
    // Only the first line: the rest quotes the file, which may hold registry passwords.
    const first = (err instanceof Error ? err.message : String(err)).split('\n')[0];
    throw new StevedoreError('CONFIG_INVALID', `agent configuration ${file} is not valid YAML: ${first}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw new StevedoreError('CONFIG_INVALID', `agent configuration ${file} must be a mapping of fields such as "coordinator:" and "stateDir:" (see docs/configuration.md)`);
  }
  return doc as Record<string, unknown>;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** key=value,key=value (STEVEDORE_LABELS) or one per --label. */
function parseLabelList(items: string[], source: string, problems: Problems): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const raw of items) {
    const item = raw.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq <= 0) {
      problems.lines.push(`labels: ${JSON.stringify(item)} from ${source} is not key=value; write for example zone=us-east-1a,spot=true`);
      continue;
    }
    labels[item.slice(0, eq).trim()] = item.slice(eq + 1).trim();
  }
  return labels;
}

function describeIssue(issue: z.core.$ZodIssue): { field: string; message: string } {
  const field = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') || 'top level';
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => `"${k}"`).join(', ');
    message = `unknown field${issue.keys.length > 1 ? 's' : ''} ${keys}: check the spelling (fields are camelCase, see docs/configuration.md)`;
  } else if (issue.code === 'invalid_type' && /^Invalid input/.test(message)) {
    message = `must be ${issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`}`;
  }
  return { field, message };
}

function checkCoordinatorAddress(address: string, ctx: z.RefinementCtx): void {
  const example = 'write host:port such as coordinator.example.com:7443';
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d+)$/.exec(address);
  if (!m) {
    if (/^[A-Za-z0-9.-]+$/.test(address) || /^\[[0-9A-Fa-f:.]+\]$/.test(address)) issue(ctx, `${JSON.stringify(address)} has no port; ${example}`);
    else if (/^[a-z][a-z0-9+.-]*:\/\//.test(address)) issue(ctx, `${JSON.stringify(address)} is a URL; ${example}, without a scheme`);
    else issue(ctx, `${JSON.stringify(address)} is not host:port; ${example} (IPv6: [2001:db8::1]:7443)`);
    return;
  }
  const port = Number(m[3]);
  if (port < 1 || port > 65535) issue(ctx, `port ${m[3]} is out of range; use a port from 1 to 65535`);
}

function checkTls(tls: { ca?: string | undefined; cert?: string | undefined; key?: string | undefined }, cwd: string, ctx: z.RefinementCtx): void {
  const names = ['ca', 'cert', 'key'] as const;
  const missing = names.filter((k) => tls[k] === undefined || tls[k].trim() === '');
  if (missing.length > 0) {
    issue(ctx, `needs ca, cert and key (PEM files); ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} missing`);
  }
  for (const name of names) {
    const value = tls[name];
    if (value === undefined || value.trim() === '') continue;
    const file = path.resolve(cwd, value);
    try {
      const fd = fs.openSync(file, 'r');
      try {
        if (!fs.fstatSync(fd).isFile()) issue(ctx, `${file} is not a file; name the PEM file itself`, [name]);
      } finally {
        fs.closeSync(fd);
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      issue(ctx, `cannot read ${file} (${code}): ${code === 'ENOENT' ? 'check the path' : 'make it readable by the agent'}`, [name]);
    }
  }
}

function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function checkWorkRoot(workRoot: string, ctx: z.RefinementCtx): void {
  const fix = 'choose a directory of its own such as /var/lib/stevedore/jobs or /mnt/nvme/stevedore';
  if (workRoot === '/') {
    issue(ctx, `must not be /: every job's directory would sit at the root of the host; ${fix}`);
    return;
  }
  const system = SYSTEM_DIRS.find((dir) => isInside(workRoot, dir));
  if (system) issue(ctx, `${workRoot} is inside the system directory ${system}; ${fix}`);
  else if (SHARED_DIRS.includes(workRoot)) issue(ctx, `must not be ${workRoot} itself, a directory shared with the rest of the host; ${fix}`);
}

/**
 * Loads and validates the configuration: flags > environment > file > defaults.
 * A missing default file means defaults; a missing file named with --config is
 * CONFIG_UNREADABLE. Any invalid field is CONFIG_INVALID, all of them listed.
 * Secrets (registry passwords) never appear in an error.
 */
export function loadAgentConfig(opts: LoadAgentConfigOptions = {}): AgentConfig {
  const file = opts.file ?? DEFAULT_CONFIG_FILE;
  const env = opts.env ?? process.env;
  const flags = opts.flags ?? {};
  const cwd = opts.cwd ?? process.cwd();
  const sources: Sources = new Map();
  const problems = new Problems(sources);

  const raw = readConfigFile(file, opts.fileIsExplicit ?? false);

  // Environment, then flags, over the file. Each override records where it came from.
  const override = (field: string, value: string | undefined, source: string): void => {
    if (value === undefined) return;
    const parts = field.split('.');
    let target: Record<string, unknown> = raw;
    for (const part of parts.slice(0, -1)) {
      if (!isPlainObject(target[part])) target[part] = {};
      target = target[part] as Record<string, unknown>;
    }
    target[parts[parts.length - 1]!] = value;
    sources.set(field, source);
  };
  const envVar = (name: string): string | undefined => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  const envFields: [string, string][] = [
    ['coordinator.address', 'STEVEDORE_COORDINATOR'],
    ['stateDir', 'STEVEDORE_STATE_DIR'],
    ['workRoot', 'STEVEDORE_WORK_ROOT'],
    ['socketPath', 'STEVEDORE_SOCKET'],
    ['nodeName', 'STEVEDORE_NODE_NAME'],
    ['nvidiaSmiPath', 'STEVEDORE_NVIDIA_SMI'],
    ['logLevel', 'STEVEDORE_LOG_LEVEL'],
    ['dockerHost', 'DOCKER_HOST'],
    ['metrics.listen', 'STEVEDORE_METRICS_LISTEN'],
  ];
  for (const [field, name] of envFields) override(field, envVar(name), name);
  const flagFields: [string, string | undefined, string][] = [
    ['coordinator.address', flags.coordinator, '--coordinator'],
    ['stateDir', flags.stateDir, '--state-dir'],
    ['workRoot', flags.workRoot, '--work-root'],
    ['socketPath', flags.socket, '--socket'],
    ['nodeName', flags.nodeName, '--node-name'],
    ['nvidiaSmiPath', flags.nvidiaSmi, '--nvidia-smi'],
    ['dockerHost', flags.dockerHost, '--docker-host'],
    ['logLevel', flags.logLevel, '--log-level'],
    ['metrics.listen', flags.metricsListen, '--metrics-listen'],
  ];
  for (const [field, value, source] of flagFields) override(field, value, source);

  // STEVEDORE_S3_ENDPOINT sets the default endpoint's URL (over the file); AWS_REGION
  // only fills the default endpoint's region when nothing else set it.
  override(`s3.endpoints.${DEFAULT_ENDPOINT_NAME}.endpoint`, envVar('STEVEDORE_S3_ENDPOINT'), 'STEVEDORE_S3_ENDPOINT');
  const awsRegion = envVar('AWS_REGION');
  const defaultEndpoint = isPlainObject(raw.s3) && isPlainObject(raw.s3.endpoints) ? raw.s3.endpoints[DEFAULT_ENDPOINT_NAME] : undefined;
  if (awsRegion !== undefined && isPlainObject(defaultEndpoint) && defaultEndpoint.region === undefined) {
    override(`s3.endpoints.${DEFAULT_ENDPOINT_NAME}.region`, awsRegion, 'AWS_REGION');
  }

  // Labels merge key by key: the file's, then STEVEDORE_LABELS, then --label.
  const envLabelsText = envVar('STEVEDORE_LABELS');
  const envLabels = envLabelsText !== undefined ? parseLabelList(envLabelsText.split(','), 'STEVEDORE_LABELS', problems) : {};
  const flagLabels = flags.labels !== undefined ? parseLabelList(flags.labels, '--label', problems) : {};
  if (Object.keys(envLabels).length > 0 || Object.keys(flagLabels).length > 0) {
    raw.labels = { ...(isPlainObject(raw.labels) ? raw.labels : {}), ...envLabels, ...flagLabels };
  }

  const parsed = fileSchema(cwd).safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const { field, message } = describeIssue(issue);
      problems.add(field, message);
    }
    throw invalid(file, problems, opts.fileIsExplicit ?? false);
  }
  const config = compile(parsed.data, problems);
  if (problems.lines.length > 0) throw invalid(file, problems, opts.fileIsExplicit ?? false);
  return config;
}

function invalid(file: string, problems: Problems, explicit: boolean): StevedoreError {
  const where = explicit || fs.existsSync(file) ? ` (file ${file}, environment and flags)` : '';
  return new StevedoreError('CONFIG_INVALID', `invalid agent configuration${where}:\n${problems.lines.map((l) => `  ${l}`).join('\n')}`);
}

function compile(c: FileConfig, problems: Problems): AgentConfig {
  const stateDir = c.stateDir ?? CONFIG_DEFAULTS.stateDir;
  const workRoot = c.workRoot ?? path.join(stateDir, 'jobs');
  if (workRoot === stateDir) problems.add('workRoot', `must not be the state directory itself (${stateDir}); the default is ${path.join(stateDir, 'jobs')}`);
  const tls = c.coordinator?.tls;
  return {
    coordinator: {
      address: c.coordinator?.address ?? CONFIG_DEFAULTS.coordinatorAddress,
      // All three are present and readable: the schema checked.
      tls: tls?.ca && tls.cert && tls.key ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined,
    },
    nodeName: c.nodeName ?? os.hostname(),
    stateDir,
    workRoot,
    socketPath: c.socketPath ?? CONFIG_DEFAULTS.socketPath,
    socketGroup: c.socketGroup === '' ? undefined : c.socketGroup,
    dockerHost: c.dockerHost ?? CONFIG_DEFAULTS.dockerHost,
    nvidiaSmiPath: c.nvidiaSmiPath ?? CONFIG_DEFAULTS.nvidiaSmiPath,
    labels: c.labels ?? {},
    registries: c.registries ?? [],
    pullInactivityTimeoutSeconds: c.pullInactivityTimeoutSeconds ?? CONFIG_DEFAULTS.pullInactivityTimeoutSeconds,
    reconnect: {
      initialMs: c.reconnect?.initialMs ?? CONFIG_DEFAULTS.reconnect.initialMs,
      maxMs: c.reconnect?.maxMs ?? CONFIG_DEFAULTS.reconnect.maxMs,
    },
    shutdownTimeoutSeconds: c.shutdownTimeoutSeconds ?? CONFIG_DEFAULTS.shutdownTimeoutSeconds,
    logLevel: c.logLevel ?? CONFIG_DEFAULTS.logLevel,
    s3: { endpoints: Object.fromEntries(Object.entries(c.s3?.endpoints ?? {}).map(([name, e]) => [name, compileS3Endpoint(e)])) },
    checkpoints: {
      partSizeMiB: c.checkpoints?.partSizeMiB ?? CONFIG_DEFAULTS.checkpoints.partSizeMiB,
      maxInFlightMiB: c.checkpoints?.maxInFlightMiB ?? CONFIG_DEFAULTS.checkpoints.maxInFlightMiB,
      rescanSeconds: c.checkpoints?.rescanSeconds ?? CONFIG_DEFAULTS.checkpoints.rescanSeconds,
    },
    preemption: {
      cloud: c.preemption?.cloud ?? CONFIG_DEFAULTS.preemption.cloud,
      metadataUrl: c.preemption?.metadataUrl,
      pollSeconds: c.preemption?.pollSeconds,
      safetyMarginSeconds: c.preemption?.safetyMarginSeconds ?? CONFIG_DEFAULTS.preemption.safetyMarginSeconds,
      drainOnSigterm: c.preemption?.drainOnSigterm ?? CONFIG_DEFAULTS.preemption.drainOnSigterm,
      sigtermWindowSeconds: c.preemption?.sigtermWindowSeconds ?? CONFIG_DEFAULTS.preemption.sigtermWindowSeconds,
    },
    metrics: { listen: c.metrics?.listen === undefined ? CONFIG_DEFAULTS.metrics.listen : isListenOff(c.metrics.listen) ? undefined : c.metrics.listen.trim() },
    gpuHealth: {
      intervalSeconds: c.gpuHealth?.intervalSeconds ?? GPU_HEALTH_DEFAULTS.intervalSeconds,
      maxTemperatureC: c.gpuHealth?.maxTemperatureC ?? GPU_HEALTH_DEFAULTS.maxTemperatureC,
      maxUncorrectedEcc: c.gpuHealth?.maxUncorrectedEcc ?? GPU_HEALTH_DEFAULTS.maxUncorrectedEcc,
      kernelLog: c.gpuHealth?.kernelLog ?? GPU_HEALTH_DEFAULTS.kernelLog,
      fatalXids: c.gpuHealth?.fatalXids ?? [...GPU_HEALTH_DEFAULTS.fatalXids],
    },
    security: {
      allowPrivileged: c.security?.allowPrivileged ?? DEFAULT_SECURITY_POLICY.allowPrivileged,
      allowedCapabilities: [...new Set(c.security?.allowedCapabilities ?? DEFAULT_SECURITY_POLICY.allowedCapabilities)],
      allowedHostPaths: compileHostPaths(c.security?.allowedHostPaths ?? []),
      allowedDevices: (c.security?.allowedDevices ?? []).map((d) => path.posix.normalize(d).replace(/(.)\/+$/, '$1')),
      allowHostNetwork: c.security?.allowHostNetwork ?? DEFAULT_SECURITY_POLICY.allowHostNetwork,
      allowHostIpc: c.security?.allowHostIpc ?? DEFAULT_SECURITY_POLICY.allowHostIpc,
    },
  };
}
