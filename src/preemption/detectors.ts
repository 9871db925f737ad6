// Which cloud's metadata service the agent watches: the configured one, or,
// with `auto`, the one that answers a single probe the way its cloud does.
// A probe that is refused, fails, answers something else or takes too long
// says "not this cloud"; nothing here throws for a missing cloud.
import type { PreemptionConfig } from '../agent/agent-config.ts';
import type { Clock } from '../util/clock.ts';
import { messageOf } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import { AwsDetector } from './aws-detector.ts';
import { AzureDetector } from './azure-detector.ts';
import { GcpDetector } from './gcp-detector.ts';
import { metadataRequest, type DetectorOptions } from './metadata-http.ts';
import type { PreemptionDetector } from './notice.ts';

/** Every cloud's metadata service (GCP's metadata.google.internal included) is at this address. */
export const DEFAULT_METADATA_URL = 'http://169.254.169.254';
/** How long `auto` waits for each probe's answer. */
export const DEFAULT_PROBE_TIMEOUT_MS = 1000;

export type Cloud = PreemptionDetector['cloud'];

export interface DetectorDeps {
  clock: Clock;
  logger: Logger;
  /** Timeout of each `auto` probe; default 1 s. */
  probeTimeoutMs?: number;
  /** This VM's name, for Azure (events name the VMs they concern). */
  vmName?: string;
}

/** The part of the agent configuration that chooses the detector. */
export type DetectorConfig = Pick<PreemptionConfig, 'cloud' | 'metadataUrl' | 'pollSeconds'>;

/**
 * The detector for the configured cloud; for `auto` the cloud whose metadata
 * service answers faithfully (asked once, in parallel, with a short timeout);
 * undefined for `none` or when no metadata service answers.
 */
export async function createDetector(config: DetectorConfig, deps: DetectorDeps): Promise<PreemptionDetector | undefined> {
  const baseUrl = (config.metadataUrl ?? DEFAULT_METADATA_URL).replace(/\/+$/, '');
  const logger = deps.logger;
  let cloud: Cloud | undefined;
  if (config.cloud === 'none') {
    logger.info('preemption.cloud is none: preemption notices come only from SIGTERM and the coordinator');
    return undefined;
  } else if (config.cloud === 'auto') {
    cloud = await detectCloud(baseUrl, deps);
    if (cloud === undefined) {
      logger.info({ metadataUrl: baseUrl }, 'no cloud metadata service: preemption notices come only from SIGTERM and the coordinator');
      return undefined;
    }
    logger.info({ cloud, metadataUrl: baseUrl }, `cloud detected: ${cloud}`);
  } else {
    cloud = config.cloud;
  }
  const opts: DetectorOptions = { baseUrl, clock: deps.clock, logger: deps.logger };
  // GCP waits on hanging GETs rather than polling: the poll interval is AWS's and Azure's.
  const pollMs = config.pollSeconds === undefined ? undefined : Math.max(1, Math.round(config.pollSeconds * 1000));
  switch (cloud) {
    case 'aws':
      return new AwsDetector({ ...opts, ...(pollMs !== undefined && { pollMs }) });
    case 'gcp':
      return new GcpDetector(opts);
    case 'azure':
      return new AzureDetector({ ...opts, ...(pollMs !== undefined && { pollMs }), ...(deps.vmName !== undefined && { vmName: deps.vmName }) });
  }
}

type Probe = (baseUrl: string, timeoutMs: number, clock: Clock) => Promise<boolean>;

/** An IMDSv2 token: 200, a token, the granted TTL echoed. */
async function probeAws(baseUrl: string, timeoutMs: number, clock: Clock): Promise<boolean> {
  const reply = await metadataRequest({
    method: 'PUT',
    url: `${baseUrl}/latest/api/token`,
    headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '60' },
    timeoutMs,
    clock,
  });
  return reply.status === 200 && /^[\x21-\x7e]{16,1024}$/.test(reply.body.trim()) && /^\d+$/.test(reply.headers['x-aws-ec2-metadata-token-ttl-seconds'] ?? '');
}

/** instance/preempted: 200, Metadata-Flavor: Google echoed, TRUE or FALSE. */
async function probeGcp(baseUrl: string, timeoutMs: number, clock: Clock): Promise<boolean> {
  const reply = await metadataRequest({
    method: 'GET',
    url: `${baseUrl}/computeMetadata/v1/instance/preempted`,
    headers: { 'Metadata-Flavor': 'Google' },
    timeoutMs,
    clock,
  });
  return reply.status === 200 && reply.headers['metadata-flavor'] === 'Google' && /^(TRUE|FALSE)$/.test(reply.body.trim());
}

/** Scheduled Events: 200, a document with a DocumentIncarnation and a list of Events. */
async function probeAzure(baseUrl: string, timeoutMs: number, clock: Clock): Promise<boolean> {
  const reply = await metadataRequest({
    method: 'GET',
    url: `${baseUrl}/metadata/scheduledevents?api-version=2020-07-01`,
    headers: { Metadata: 'true' },
    timeoutMs,
    clock,
  });
  if (reply.status !== 200) return false;
  try {
    const doc = JSON.parse(reply.body) as unknown;
    return typeof doc === 'object' && doc !== null && typeof (doc as Record<string, unknown>).DocumentIncarnation === 'number' && Array.isArray((doc as Record<string, unknown>).Events);
  } catch {
    return false;
  }
}

const PROBES: [Cloud, Probe][] = [
  ['aws', probeAws],
  ['gcp', probeGcp],
  ['azure', probeAzure],
];

/** The cloud whose metadata service answers as it should, or undefined. Never throws. */
export async function detectCloud(baseUrl: string, deps: DetectorDeps): Promise<Cloud | undefined> {
  const timeoutMs = deps.probeTimeoutMs ?? DEFAULT_PROBE_TIMEOUT_MS;
  const results = await Promise.all(
    PROBES.map(async ([cloud, probe]) => {
      try {
        const answered = await probe(baseUrl, timeoutMs, deps.clock);
        deps.logger.debug({ cloud, answered }, `metadata probe for ${cloud}: ${answered ? 'answered' : 'not this cloud'}`);
        return answered;
      } catch (err) {
        deps.logger.debug({ cloud }, `metadata probe for ${cloud}: ${messageOf(err)}`);
        return false;
      }
    }),
  );
  const found = PROBES.filter((_, i) => results[i]).map(([cloud]) => cloud);
  if (found.length > 1) {
    deps.logger.warn({ clouds: found }, `more than one cloud's metadata service answered (${found.join(', ')}); using ${found[0]}: set preemption.cloud to choose`);
  }
  return found[0];
}
