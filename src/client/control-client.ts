// A small typed client for the coordinator's Control service, used by the CLI.
// Every unary call has a deadline; only UNAVAILABLE and DEADLINE_EXCEEDED are
// retried, a bounded number of times with jittered backoff.
import * as grpc from '@grpc/grpc-js';
import { v1 } from '../proto/load.ts';
import type { Job__Output, Node__Output } from '../proto/load.ts';
import type { ControlClient as GeneratedControlClient } from '../gen/stevedore/v1/Control.ts';
import type { JobLogLine__Output } from '../gen/stevedore/v1/JobLogLine.ts';
import type { ListJobsRequest } from '../gen/stevedore/v1/ListJobsRequest.ts';
import type { ListJobsResponse__Output } from '../gen/stevedore/v1/ListJobsResponse.ts';
import type { ListNodesRequest } from '../gen/stevedore/v1/ListNodesRequest.ts';
import type { ListNodesResponse__Output } from '../gen/stevedore/v1/ListNodesResponse.ts';
import type { ListCheckpointsRequest } from '../gen/stevedore/v1/ListCheckpointsRequest.ts';
import type { ListCheckpointsResponse__Output } from '../gen/stevedore/v1/ListCheckpointsResponse.ts';
import type { Checkpoint__Output } from '../gen/stevedore/v1/Checkpoint.ts';
import type { JobSpec } from '../spec/job-spec.ts';
import { Backoff } from '../util/backoff.ts';
import type { BackoffOptions } from '../util/backoff.ts';
import { systemClock } from '../util/clock.ts';
import type { Clock } from '../util/clock.ts';
import { StevedoreError } from '../util/errors.ts';
import type { ErrorCode } from '../util/errors.ts';
import { clientCredentials, operatorTlsFiles, OPERATOR_TLS_DIR_ENV, type ClientTls } from '../security/tls.ts';

export const DEFAULT_COORDINATOR_ADDRESS = '127.0.0.1:7443';
export const COORDINATOR_ENV = 'STEVEDORE_COORDINATOR';
/** Trailing metadata key in which the coordinator sends the Stevedore error code. */
export const ERROR_CODE_METADATA_KEY = 'stevedore-error-code';

/** The address to dial: the flag, else $STEVEDORE_COORDINATOR, else 127.0.0.1:7443. */
export function coordinatorAddress(flag?: string, env: NodeJS.ProcessEnv = process.env): string {
  return flag || env[COORDINATOR_ENV] || DEFAULT_COORDINATOR_ADDRESS;
}

export interface ControlClientOptions {
  /** host:port of the coordinator. */
  address: string;
  /** Deadline of each unary call. Default 10000. */
  deadlineMs?: number;
  /** Retries after the first try (UNAVAILABLE, DEADLINE_EXCEEDED only). Default 2. */
  retries?: number;
  /** Default: 200 ms doubling up to 2 s, full jitter. */
  backoff?: BackoffOptions;
  /** TLS with an operator certificate (`stevedore certs operator`); wins over credentials. */
  tls?: ClientTls;
  /** Default: plaintext, unless tls is given. */
  credentials?: grpc.ChannelCredentials;
  clock?: Clock;
}

export type { Job__Output as JobInfo, Node__Output as NodeInfo, JobLogLine__Output as JobLogLineInfo, Checkpoint__Output as CheckpointInfo };

const KNOWN_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'SPEC_INVALID', 'JOB_NOT_FOUND', 'JOB_NOT_CANCELLABLE', 'GPUS_UNSATISFIABLE', 'NODE_NOT_FOUND', 'NODE_NOT_CONNECTED', 'PERMISSION_DENIED', 'INTERNAL',
]);

type Unary<Req, Res> = (req: Req, metadata: grpc.Metadata, options: grpc.CallOptions, cb: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

export class ControlClient {
  readonly address: string;
  private readonly client: GeneratedControlClient;
  private readonly deadlineMs: number;
  private readonly retries: number;
  private readonly backoff: BackoffOptions;
  private readonly clock: Clock;
  private readonly secure: boolean;

  constructor(options: ControlClientOptions) {
    this.address = options.address;
    this.deadlineMs = options.deadlineMs ?? 10_000;
    this.retries = options.retries ?? 2;
    this.backoff = options.backoff ?? { initialMs: 200, maxMs: 2000 };
    this.clock = options.clock ?? systemClock;
    this.secure = options.tls !== undefined;
    if (options.tls) {
      const { credentials, options: channelOptions } = clientCredentials(options.tls, `check the files in $${OPERATOR_TLS_DIR_ENV} (operator.pem, operator-key.pem, ca.pem)`);
      this.client = new v1.Control(options.address, credentials, channelOptions);
    } else {
      this.client = new v1.Control(options.address, options.credentials ?? grpc.credentials.createInsecure());
    }
  }

  submitJob(spec: JobSpec): Promise<Job__Output> {
    // A submit that timed out may have been stored: never retry it on a deadline.
    return this.unary('SubmitJob', this.client.submitJob.bind(this.client), { spec }, [grpc.status.UNAVAILABLE]);
  }

  getJob(jobId: string): Promise<Job__Output> {
    return this.unary('GetJob', this.client.getJob.bind(this.client), { jobId });
  }

  async listJobs(): Promise<Job__Output[]> {
    return (await this.unary<ListJobsRequest, ListJobsResponse__Output>('ListJobs', this.client.listJobs.bind(this.client), {})).jobs;
  }

  async listNodes(): Promise<Node__Output[]> {
    return (await this.unary<ListNodesRequest, ListNodesResponse__Output>('ListNodes', this.client.listNodes.bind(this.client), {})).nodes;
  }

  /** The job's committed checkpoints, newest first (by step, then commit time). */
  async listCheckpoints(jobId: string): Promise<Checkpoint__Output[]> {
    return (await this.unary<ListCheckpointsRequest, ListCheckpointsResponse__Output>('ListCheckpoints', this.client.listCheckpoints.bind(this.client), { jobId })).checkpoints;
  }

  /**
   * Tells a connected node to drain: no new jobs; its running jobs make their
   * final checkpoints durable within `deadlineSeconds` (default 120), stop, and
   * are placed elsewhere. Resolves to the node, now `draining`.
   */
  drainNode(nodeId: string, options: { reason?: string; deadlineSeconds?: number } = {}): Promise<Node__Output> {
    return this.unary('DrainNode', this.client.drainNode.bind(this.client), { nodeId, reason: options.reason ?? '', deadlineSeconds: options.deadlineSeconds ?? 0 });
  }

  cancelJob(jobId: string): Promise<Job__Output> {
    return this.unary('CancelJob', this.client.cancelJob.bind(this.client), { jobId });
  }

  /** The job's stored log lines in order; with follow, new ones until the job ends. */
  async *streamLogs(jobId: string, options: { follow?: boolean; signal?: AbortSignal } = {}): AsyncGenerator<JobLogLine__Output> {
    const call = this.client.streamLogs({ jobId, follow: options.follow ?? false });
    const onAbort = (): void => call.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const line of call as AsyncIterable<JobLogLine__Output>) yield line;
    } catch (err) {
      if (options.signal?.aborted) return;
      throw this.toError(err, 'StreamLogs');
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      call.cancel();
    }
  }

  close(): void {
    this.client.close();
  }

  private async unary<Req, Res>(
    method: string,
    fn: Unary<Req, Res>,
    req: Req,
    retryOn: readonly grpc.status[] = [grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED],
  ): Promise<Res> {
    const backoff = new Backoff(this.backoff);
    for (;;) {
      try {
        return await new Promise<Res>((resolve, reject) => {
          fn(req, new grpc.Metadata(), { deadline: Date.now() + this.deadlineMs }, (err, res) => {
            if (err) reject(err);
            else if (res === undefined) reject(new Error(`${method} returned no answer`));
            else resolve(res);
          });
        });
      } catch (err) {
        const code = (err as Partial<grpc.ServiceError>).code;
        if (code === undefined || !retryOn.includes(code) || backoff.attempts >= this.retries) throw this.toError(err, method);
        await this.clock.sleep(backoff.next());
      }
    }
  }

  private toError(err: unknown, method: string): StevedoreError {
    const e = err as Partial<grpc.ServiceError>;
    const details = e.details || (err instanceof Error ? err.message : String(err));
    if (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.DEADLINE_EXCEEDED) {
      const why = e.code === grpc.status.DEADLINE_EXCEEDED ? `no answer within ${Math.round(this.deadlineMs / 1000)} s` : details;
      return new StevedoreError(
        'COORDINATOR_UNREACHABLE',
        `cannot reach the coordinator at ${this.address}: is \`stevedore coordinator\` running? (${method}: ${why}). ` +
          (this.secure ? '' : `If it serves TLS, this CLI needs an operator certificate: \`stevedore certs operator NAME --ca CA_DIR\` (or point $${OPERATOR_TLS_DIR_ENV} at one). `) +
          `If it listens elsewhere, give its address with --coordinator HOST:PORT or $${COORDINATOR_ENV} (default ${DEFAULT_COORDINATOR_ADDRESS})`,
        { cause: err },
      );
    }
    const sent = e.metadata?.get(ERROR_CODE_METADATA_KEY)[0];
    const code = typeof sent === 'string' && KNOWN_CODES.has(sent) ? (sent as ErrorCode) : fallbackCode(e.code);
    return new StevedoreError(code, details, { cause: err });
  }
}

function fallbackCode(code: grpc.status | undefined): ErrorCode {
  switch (code) {
    case grpc.status.NOT_FOUND: return 'JOB_NOT_FOUND';
    case grpc.status.INVALID_ARGUMENT: return 'SPEC_INVALID';
    case grpc.status.PERMISSION_DENIED: return 'PERMISSION_DENIED';
    case grpc.status.UNAUTHENTICATED: return 'UNAUTHENTICATED';
    default: return 'INTERNAL';
  }
}

/** Opens a client for the address given (flag, env or default), runs fn, closes it. */
export async function withControlClient<T>(flag: string | undefined, fn: (client: ControlClient) => Promise<T>): Promise<T> {
  const tls = operatorTlsFiles();
  const client = new ControlClient({ address: coordinatorAddress(flag), ...(tls && { tls }) });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

export const COORDINATOR_OPTION_HELP = `coordinator address host:port (default: $${COORDINATOR_ENV} or ${DEFAULT_COORDINATOR_ADDRESS})`;
