// The container engine as the agent sees it: one interface, one implementation
// (DockerEngine, over the Docker Engine API). Every failure is a StevedoreError
// with one of the codes named on each method.

/** What the agent asks the engine to run. */
export interface ContainerSpec {
  /** Deterministic, e.g. stevedore-<node>-<job>-<attempt>: create is idempotent by name. */
  name: string;
  image: string;
  /** Empty: the image's default command. */
  command: string[];
  env: Record<string, string>;
  labels: Record<string, string>;
  /** GPU UUIDs; non-empty -> HostConfig.DeviceRequests [{Driver: 'nvidia', DeviceIDs, Capabilities: [['gpu']]}]. */
  gpuUuids: string[];
  /** CPUs (fractions allowed); 0 = unlimited. */
  cpus: number;
  /** 0 = unlimited. */
  memoryBytes: number;
  /** Size of /dev/shm; 0 = the engine's default (64 MiB for Docker). */
  shmBytes: number;
  ulimits: { name: string; soft: number; hard: number }[];
  hostIpc: boolean;
  /** true -> NetworkMode 'host'; wins over networkMode. */
  hostNetwork: boolean;
  /** NetworkMode when not hostNetwork, e.g. 'none'; default: the engine's default network. */
  networkMode?: string;
  mounts: { hostPath: string; containerPath: string; readOnly: boolean }[];
  /** Default false. Only when the agent's security policy allows it. */
  privileged?: boolean;
  /** Capabilities added to the engine's defaults (SYS_PTRACE); default none. */
  capAdd?: string[];
  /** Host devices (besides GPUs, which come through gpuUuids); default none. */
  devices?: { hostPath: string; containerPath: string }[];
  /** The signal the engine's own stop sends, e.g. 'SIGTERM'. */
  stopSignal: string;
  /** '' = the image's default. */
  workingDir: string;
  /** 'uid[:gid]' or a user name of the image; default: the image's user. */
  user?: string;
}

export interface ContainerInfo {
  id: string;
  /** Without the leading slash. */
  name: string;
  image: string;
  labels: Record<string, string>;
  /** The engine's state: created, running, paused, restarting, removing, exited, dead. */
  state: string;
  running: boolean;
  /** Set once the container has exited. */
  exitCode: number | undefined;
  oomKilled: boolean;
  startedAtMs: number | undefined;
  finishedAtMs: number | undefined;
}

export interface ExitStatus {
  exitCode: number;
  oomKilled: boolean;
}

export interface LogLine {
  timeMs: number;
  /** The engine's RFC 3339 timestamp with nanoseconds: pass the last one as `since` to resume. */
  timestamp: string;
  stream: 'stdout' | 'stderr';
  /** The line without its newline. */
  text: string;
}

/** One progress message of a pull, as the engine sends it. */
export interface PullProgress {
  status: string;
  id?: string;
  current?: number;
  total?: number;
}

export interface RegistryAuth {
  username: string;
  password: string;
  serveraddress: string;
}

export interface PullOptions {
  auth?: RegistryAuth;
  /** The pull fails with IMAGE_PULL_STALLED when no progress message arrives for this long; each message restarts it. */
  inactivityTimeoutMs: number;
  onProgress?: (progress: PullProgress) => void;
  signal?: AbortSignal;
}

export interface FollowLogsOptions {
  /** The timestamp of the last line already captured: no line at or before it is delivered. */
  since?: string;
  /** Stops following; followLogs then resolves. */
  signal?: AbortSignal;
}

export interface ContainerEngine {
  /** ENGINE_UNREACHABLE, naming the engine's address and how to fix it. */
  ping(): Promise<void>;
  hasImage(image: string): Promise<boolean>;
  /**
   * IMAGE_NOT_FOUND (repository or tag unknown), IMAGE_PULL_FAILED (registry unreachable,
   * authentication refused, any other failure), IMAGE_PULL_STALLED (no progress within
   * inactivityTimeoutMs).
   */
  pullImage(image: string, opts: PullOptions): Promise<void>;
  /** CONTAINER_CREATE_FAILED. Returns the existing container's id when one with this name exists. */
  create(spec: ContainerSpec): Promise<string>;
  /** CONTAINER_START_FAILED with the engine's message (e.g. rlimit errors); already running is fine. */
  start(id: string): Promise<void>;
  /** undefined when the container does not exist. */
  inspect(id: string): Promise<ContainerInfo | undefined>;
  /** All containers, in any state, that carry all these labels. */
  list(labels: Record<string, string>): Promise<ContainerInfo[]>;
  /** Resolves once the container has exited (at once if it already had). CONTAINER_VANISHED if it does not exist. */
  wait(id: string, signal?: AbortSignal): Promise<ExitStatus>;
  /** Sends the signal, waits up to graceSeconds, then kills. Idempotent; a container that is gone is fine. */
  stop(id: string, signal: string, graceSeconds: number): Promise<void>;
  /** Sends one signal (e.g. the job's checkpoint signal); false when the container is not running. */
  signal(id: string, signal: string): Promise<boolean>;
  /** Forced removal. Idempotent; a container that is gone is fine. */
  remove(id: string): Promise<void>;
  /**
   * Demultiplexed stdout and stderr, one call per line. Resolves when the stream ends
   * (the container exited) or the signal aborts.
   */
  followLogs(id: string, opts: FollowLogsOptions, onLine: (line: LogLine) => void): Promise<void>;
}
