// ContainerEngine over the Docker Engine API (dockerode), API 1.41 and later.
//
// Every container gets the same security defaults: no-new-privileges, the
// engine's default seccomp and AppArmor profiles (never "unconfined"), its own
// PID namespace, not privileged, no added capabilities, no host devices but
// the GPUs it was given. The agent asks for more (privileged, capabilities,
// devices) only where its security policy allows (src/spec/job-spec.ts).
// Engine failures become StevedoreErrors whose message carries the engine's
// own words and what to do about them.
// First: keeps ssh2 unloaded unless the Docker host is ssh:// (see the module).
import './docker-modem-ssh.ts';
import Docker from 'dockerode';
import { systemClock } from '../util/clock.ts';
import type { Clock, Timer } from '../util/clock.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';
import type { ErrorCode } from '../util/errors.ts';
import type {
  ContainerEngine, ContainerInfo, ContainerSpec, ExitStatus, FollowLogsOptions, LogLine, PullOptions, PullProgress,
} from './container-engine.ts';
import { LogLineSplitter, sinceParameter } from './log-stream.ts';

export interface DockerEngineOptions {
  /** unix:///path/to/docker.sock or tcp://host:port. Default: $DOCKER_HOST, else unix:///var/run/docker.sock. */
  dockerHost?: string;
  /** Times the stop grace period and the pull inactivity timeout. Default: the system clock. */
  clock?: Clock;
  /** How long ping() waits for an answer. Default 10 s. */
  pingTimeoutMs?: number;
  /**
   * wait() also inspects the container this often, because the engine's wait call can hang
   * for good when the engine restarts under it. Default 2000 ms.
   */
  waitPollMs?: number;
}

export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';

/** The security options every container gets. */
export const SECURITY_OPTS: readonly string[] = ['no-new-privileges'];

const NULL_TIME = '0001-01-01T00:00:00Z';
const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'EPERM', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ETIMEDOUT', 'ENOTFOUND']);

interface EngineFailure {
  statusCode?: number;
  code?: string;
  reason?: string;
  json?: { message?: string } | null;
  message?: string;
}

function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null ? (err as EngineFailure).statusCode : undefined;
}

/** The engine's own message for a failed call, without dockerode's "(HTTP code N) ..." prefix. */
function engineMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null) {
    const failure = err as EngineFailure;
    const fromJson = failure.json?.message;
    if (typeof fromJson === 'string' && fromJson !== '') return fromJson.trim();
    if (Buffer.isBuffer(failure.json)) return failure.json.toString('utf8').trim();
  }
  return messageOf(err).replace(/^\(HTTP code \d+\) [^-]*- /, '').trim();
}

function isConnectionError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const failure = err as EngineFailure;
  return failure.statusCode === undefined && failure.code !== undefined && CONNECTION_ERRORS.has(failure.code);
}

function isAbort(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: string }).name === 'AbortError';
}

function parseDockerHost(dockerHost: string): Docker.DockerOptions {
  if (dockerHost.startsWith('unix://')) {
    const socketPath = dockerHost.slice('unix://'.length);
    if (socketPath === '') throw new StevedoreError('CONFIG_INVALID', `dockerHost ${dockerHost} names no socket: use unix:///path/to/docker.sock`);
    return { socketPath };
  }
  const match = /^(tcp|http|https):\/\/([^:/]+)(?::(\d+))?\/?$/.exec(dockerHost);
  if (match) {
    const protocol = match[1] === 'https' ? 'https' : 'http';
    return { protocol, host: match[2], port: Number(match[3] ?? (protocol === 'https' ? 2376 : 2375)) };
  }
  throw new StevedoreError(
    'CONFIG_INVALID',
    `dockerHost ${JSON.stringify(dockerHost)} is not an engine address: use unix:///path/to/docker.sock or tcp://host:port`,
  );
}

function parseTime(value: string | undefined): number | undefined {
  if (value === undefined || value === '' || value === NULL_TIME) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

function toInfo(raw: Docker.ContainerInspectInfo): ContainerInfo {
  const state = raw.State;
  const exited = !state.Running && (state.Status === 'exited' || state.Status === 'dead');
  return {
    id: raw.Id,
    name: raw.Name.replace(/^\//, ''),
    image: raw.Config.Image,
    labels: raw.Config.Labels ?? {},
    state: state.Status,
    running: state.Running,
    exitCode: exited ? state.ExitCode : undefined,
    oomKilled: state.OOMKilled,
    startedAtMs: parseTime(state.StartedAt),
    finishedAtMs: parseTime(state.FinishedAt),
  };
}

/** What a pull failure means, from the engine's answer. */
function pullFailureCode(status: number | undefined, message: string): ErrorCode {
  if (status === 404) return 'IMAGE_NOT_FOUND';
  if (/manifest unknown|not found|repository does not exist|no such image|name unknown/i.test(message)) return 'IMAGE_NOT_FOUND';
  return 'IMAGE_PULL_FAILED';
}

function pullAdvice(code: ErrorCode, message: string): string {
  if (code === 'IMAGE_NOT_FOUND') return 'check the image name and tag in the job spec, and that the credentials may read it';
  // Not a bare "401": registry ports and digests contain it too.
  if (/unauthorized|authentication required|denied/i.test(message)) return 'check the registry credentials given for this image';
  return 'check that this node can reach the registry (DNS, network, proxy) and try again';
}

export class DockerEngine implements ContainerEngine {
  /** The engine's address, for messages. */
  readonly address: string;
  private readonly docker: Docker;
  private readonly clock: Clock;
  private readonly pingTimeoutMs: number;
  private readonly waitPollMs: number;

  constructor(opts: DockerEngineOptions = {}) {
    this.address = opts.dockerHost ?? process.env.DOCKER_HOST ?? DEFAULT_DOCKER_HOST;
    this.docker = new Docker(parseDockerHost(this.address));
    this.clock = opts.clock ?? systemClock;
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 10_000;
    this.waitPollMs = opts.waitPollMs ?? 2000;
  }

  private unreachable(err: unknown): StevedoreError {
    return new StevedoreError(
      'ENGINE_UNREACHABLE',
      `cannot reach the Docker engine at ${this.address}: ${engineMessage(err)}. ` +
        'Check that dockerd is running and that this user may use its socket, or point dockerHost (DOCKER_HOST) at the right engine',
      { cause: err },
    );
  }

  /** Maps a failed call: connection failures to ENGINE_UNREACHABLE, everything else to `code`. */
  private failure(err: unknown, code: ErrorCode, message: string): StevedoreError {
    if (err instanceof StevedoreError) return err;
    if (isConnectionError(err)) return this.unreachable(err);
    return new StevedoreError(code, message, { cause: err });
  }

  async ping(): Promise<void> {
    try {
      const pinger = this.docker as unknown as { ping(opts: { abortSignal: AbortSignal }): Promise<unknown> };
      await pinger.ping({ abortSignal: AbortSignal.timeout(this.pingTimeoutMs) });
    } catch (err) {
      if (isAbort(err) || (err as { name?: string }).name === 'TimeoutError') {
        throw this.unreachable(new Error(`no answer within ${this.pingTimeoutMs} ms`));
      }
      throw this.unreachable(err);
    }
  }

  async hasImage(image: string): Promise<boolean> {
    try {
      await this.docker.getImage(image).inspect();
      return true;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw this.failure(err, 'IMAGE_PULL_FAILED', `cannot look up image ${image} in the engine: ${engineMessage(err)}`);
    }
  }

  async pullImage(image: string, opts: PullOptions): Promise<void> {
    opts.signal?.throwIfAborted();
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(opts.signal?.reason);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    let stalled = false;
    let timer: Timer | undefined;
    const arm = (): void => {
      timer?.cancel();
      timer = this.clock.setTimeout(() => {
        stalled = true;
        controller.abort(new Error('pull stalled'));
      }, opts.inactivityTimeoutMs);
    };
    const stalledError = (): StevedoreError =>
      new StevedoreError(
        'IMAGE_PULL_STALLED',
        `pulling ${image} made no progress for ${opts.inactivityTimeoutMs / 1000} s: check the registry's health and this node's network, then try again`,
      );
    arm();
    try {
      const request: Record<string, unknown> = { abortSignal: controller.signal };
      if (opts.auth) request.authconfig = { ...opts.auth };
      let stream: NodeJS.ReadableStream;
      try {
        stream = await this.docker.pull(image, request);
      } catch (err) {
        if (stalled) throw stalledError();
        if (opts.signal?.aborted) throw opts.signal.reason;
        if (isConnectionError(err)) throw this.unreachable(err);
        const message = engineMessage(err);
        const code = pullFailureCode(statusOf(err), message);
        throw new StevedoreError(code, `pulling ${image} failed: ${message}; ${pullAdvice(code, message)}`, { cause: err });
      }
      arm();
      let failure: string | undefined;
      let rest = '';
      try {
        for await (const chunk of stream) {
          arm();
          rest += chunk.toString();
          const lines = rest.split('\n');
          rest = lines.pop() ?? '';
          for (const line of lines) failure ??= this.pullMessage(line, opts.onProgress);
        }
        failure ??= this.pullMessage(rest, opts.onProgress);
      } catch (err) {
        if (stalled) throw stalledError();
        if (opts.signal?.aborted) throw opts.signal.reason;
        throw this.failure(err, 'IMAGE_PULL_FAILED', `pulling ${image} broke off: ${engineMessage(err)}; try again`);
      }
      if (failure !== undefined) {
        const code = pullFailureCode(undefined, failure);
        throw new StevedoreError(code, `pulling ${image} failed: ${failure}; ${pullAdvice(code, failure)}`);
      }
    } finally {
      timer?.cancel();
      opts.signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Handles one line of the pull's progress stream; returns the error it reports, if any. */
  private pullMessage(line: string, onProgress: ((p: PullProgress) => void) | undefined): string | undefined {
    if (line.trim() === '') return undefined;
    let message: {
      status?: string; id?: string; error?: string; errorDetail?: { message?: string };
      progressDetail?: { current?: number; total?: number };
    };
    try {
      message = JSON.parse(line) as typeof message;
    } catch {
      return undefined;
    }
    if (message.error !== undefined || message.errorDetail?.message !== undefined) {
      return message.errorDetail?.message ?? message.error;
    }
    if (onProgress && message.status !== undefined) {
      const progress: PullProgress = { status: message.status };
      if (message.id !== undefined) progress.id = message.id;
      if (message.progressDetail?.current !== undefined) progress.current = message.progressDetail.current;
      if (message.progressDetail?.total !== undefined) progress.total = message.progressDetail.total;
      onProgress(progress);
    }
    return undefined;
  }

  async create(spec: ContainerSpec): Promise<string> {
    const hostConfig: Docker.HostConfig = {
      SecurityOpt: [...SECURITY_OPTS],
      Privileged: spec.privileged === true,
      CapAdd: [...(spec.capAdd ?? [])],
      Devices: (spec.devices ?? []).map((d) => ({ PathOnHost: d.hostPath, PathInContainer: d.containerPath, CgroupPermissions: 'rwm' })),
      Ulimits: spec.ulimits.map((u) => ({ Name: u.name, Soft: u.soft, Hard: u.hard })),
      Mounts: spec.mounts.map((m) => ({ Type: 'bind' as const, Source: m.hostPath, Target: m.containerPath, ReadOnly: m.readOnly })),
    };
    if (spec.gpuUuids.length > 0) {
      hostConfig.DeviceRequests = [{ Driver: 'nvidia', DeviceIDs: [...spec.gpuUuids], Capabilities: [['gpu']] }];
    }
    if (spec.cpus > 0) hostConfig.NanoCpus = Math.round(spec.cpus * 1e9);
    if (spec.memoryBytes > 0) hostConfig.Memory = spec.memoryBytes;
    if (spec.shmBytes > 0) hostConfig.ShmSize = spec.shmBytes;
    if (spec.hostIpc) hostConfig.IpcMode = 'host';
    if (spec.hostNetwork) hostConfig.NetworkMode = 'host';
    else if (spec.networkMode !== undefined && spec.networkMode !== '') hostConfig.NetworkMode = spec.networkMode;

    const options: Docker.ContainerCreateOptions = {
      name: spec.name,
      Image: spec.image,
      Env: Object.entries(spec.env).map(([key, value]) => `${key}=${value}`),
      Labels: { ...spec.labels },
      StopSignal: spec.stopSignal,
      Tty: false,
      OpenStdin: false,
      AttachStdin: false,
      HostConfig: hostConfig,
    };
    if (spec.command.length > 0) options.Cmd = [...spec.command];
    if (spec.workingDir !== '') options.WorkingDir = spec.workingDir;
    if (spec.user !== undefined && spec.user !== '') options.User = spec.user;

    try {
      const container = await this.docker.createContainer(options);
      return container.id;
    } catch (err) {
      if (statusOf(err) === 409) {
        const existing = await this.inspect(spec.name);
        if (existing) return existing.id;
      }
      const message = engineMessage(err);
      const advice = statusOf(err) === 404
        ? `the image ${spec.image} is not on this node: pull it first`
        : 'check the job spec (mounts, resources, ulimits) against the engine\'s message';
      throw this.failure(err, 'CONTAINER_CREATE_FAILED', `creating container ${spec.name} failed: ${message}; ${advice}`);
    }
  }

  async start(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).start();
    } catch (err) {
      if (statusOf(err) === 304) return;
      const message = engineMessage(err);
      let advice = 'check the job spec against the engine\'s message';
      if (statusOf(err) === 404) advice = 'the container no longer exists: create it again';
      else if (/rlimit/i.test(message)) advice = 'a ulimit in the job spec is above what this node allows (its hard limit): lower it or raise the node\'s limit';
      else if (/executable file not found|no such file or directory/i.test(message)) advice = 'the command does not exist in the image: fix the command or the image';
      throw this.failure(err, 'CONTAINER_START_FAILED', `starting container ${id} failed: ${message}; ${advice}`);
    }
  }

  async inspect(id: string): Promise<ContainerInfo | undefined> {
    try {
      return toInfo(await this.docker.getContainer(id).inspect());
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.failure(err, 'INTERNAL', `inspecting container ${id} failed: ${engineMessage(err)}`);
    }
  }

  async list(labels: Record<string, string>): Promise<ContainerInfo[]> {
    let summaries: Docker.ContainerInfo[];
    try {
      summaries = await this.docker.listContainers({
        all: true,
        filters: { label: Object.entries(labels).map(([key, value]) => `${key}=${value}`) },
      });
    } catch (err) {
      throw this.failure(err, 'INTERNAL', `listing containers failed: ${engineMessage(err)}`);
    }
    const infos = await Promise.all(summaries.map((summary) => this.inspect(summary.Id)));
    return infos.filter((info): info is ContainerInfo => info !== undefined);
  }

  async wait(id: string, signal?: AbortSignal): Promise<ExitStatus> {
    signal?.throwIfAborted();
    // The engine's wait call, raced with a poll: a wait whose connection dies with a
    // restarting engine may never settle, the poll then sees the exit or the engine gone.
    const settled = new AbortController();
    const abort = signal ? AbortSignal.any([signal, settled.signal]) : settled.signal;
    let statusCode: number | undefined;
    try {
      statusCode = await Promise.race([this.engineWait(id, abort, signal), this.pollUntilExited(id, abort, signal)]);
    } finally {
      settled.abort();
    }
    const info = await this.inspect(id);
    return { exitCode: info?.exitCode ?? statusCode ?? -1, oomKilled: info?.oomKilled ?? false };
  }

  private async engineWait(id: string, abort: AbortSignal, signal: AbortSignal | undefined): Promise<number | undefined> {
    try {
      const result = (await this.docker.getContainer(id).wait({ condition: 'not-running', abortSignal: abort })) as { StatusCode?: number };
      return result.StatusCode;
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (statusOf(err) === 404) {
        throw new StevedoreError('CONTAINER_VANISHED', `container ${id} does not exist (removed outside Stevedore?): its exit status is lost`, { cause: err });
      }
      throw this.failure(err, 'INTERNAL', `waiting for container ${id} failed: ${engineMessage(err)}`);
    }
  }

  /** Inspects every waitPollMs until the container is no longer running; ENGINE_UNREACHABLE when the engine is gone. */
  private async pollUntilExited(id: string, abort: AbortSignal, signal: AbortSignal | undefined): Promise<undefined> {
    for (;;) {
      try {
        await this.clock.sleep(this.waitPollMs, abort);
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        throw err;
      }
      const info = await this.inspect(id);
      if (!info) throw new StevedoreError('CONTAINER_VANISHED', `container ${id} does not exist (removed outside Stevedore?): its exit status is lost`);
      if (!info.running && info.state !== 'created' && info.state !== 'restarting') return undefined;
    }
  }

  /** Sends a signal to the container's main process; false when it is not running (or gone). */
  async signal(id: string, sig: string): Promise<boolean> {
    try {
      await this.docker.getContainer(id).kill({ signal: sig });
      return true;
    } catch (err) {
      // 404: gone; 409: not running. Both mean there is nothing to signal.
      if (statusOf(err) === 404 || statusOf(err) === 409) return false;
      throw this.failure(err, 'INTERNAL', `sending ${sig} to container ${id} failed: ${engineMessage(err)}`);
    }
  }

  async stop(id: string, signal: string, graceSeconds: number): Promise<void> {
    const kill = (sig: string): Promise<boolean> => this.signal(id, sig);
    const exited = async (waitSignal?: AbortSignal): Promise<void> => {
      try {
        await this.wait(id, waitSignal);
      } catch (err) {
        if (err instanceof StevedoreError && err.code === 'CONTAINER_VANISHED') return;
        throw err;
      }
    };
    const info = await this.inspect(id);
    if (!info || !info.running) return;
    if (!(await kill(signal))) return;
    if (signal !== 'SIGKILL' && signal !== 'KILL' && graceSeconds > 0) {
      const grace = new AbortController();
      const timer = this.clock.setTimeout(() => grace.abort(new Error('grace period over')), graceSeconds * 1000);
      try {
        await exited(grace.signal);
        return;
      } catch (err) {
        if (!grace.signal.aborted) throw err;
      } finally {
        timer.cancel();
      }
    }
    if (await kill('SIGKILL')) await exited();
  }

  async remove(id: string): Promise<void> {
    try {
      await this.docker.getContainer(id).remove({ force: true, v: true });
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return;
      if (status === 409 && /already in progress/i.test(engineMessage(err))) return;
      throw this.failure(err, 'INTERNAL', `removing container ${id} failed: ${engineMessage(err)}`);
    }
  }

  async followLogs(id: string, opts: FollowLogsOptions, onLine: (line: LogLine) => void): Promise<void> {
    const { signal, since } = opts;
    if (signal?.aborted) return;
    const splitter = new LogLineSplitter(onLine, since);
    const request: Docker.ContainerLogsOptions & { follow: true } = {
      follow: true,
      stdout: true,
      stderr: true,
      timestamps: true,
    };
    if (since !== undefined) request.since = sinceParameter(since);
    if (signal) request.abortSignal = signal;
    let stream: NodeJS.ReadableStream;
    try {
      stream = await this.docker.getContainer(id).logs(request);
    } catch (err) {
      if (signal?.aborted) return;
      if (statusOf(err) === 404) {
        throw new StevedoreError('CONTAINER_VANISHED', `container ${id} does not exist (removed outside Stevedore?): its logs are lost`, { cause: err });
      }
      throw this.failure(err, 'INTERNAL', `reading the logs of container ${id} failed: ${engineMessage(err)}`);
    }
    try {
      for await (const chunk of stream) splitter.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
    } catch (err) {
      if (signal?.aborted) return;
      throw this.failure(err, 'INTERNAL', `the log stream of container ${id} broke off: ${engineMessage(err)}`);
    }
    if (signal?.aborted) return;
    splitter.flush();
  }
}
