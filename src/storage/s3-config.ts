// How the agent reaches one S3 endpoint (AWS or an S3-compatible server).
// The agent configuration names endpoints (`s3.endpoints.<name>`); a job's
// checkpoint section picks one by name. docs/configuration.md describes the
// fields.
import { z } from 'zod';

export type ChecksumMode = 'WHEN_SUPPORTED' | 'WHEN_REQUIRED';

export const CHECKSUM_MODES = ['WHEN_SUPPORTED', 'WHEN_REQUIRED'] as const satisfies readonly ChecksumMode[];

export interface S3EndpointConfig {
  /** The endpoint URL (http:// or https://); undefined means AWS S3 itself, from the region. */
  endpoint: string | undefined;
  /** Default us-east-1. */
  region: string;
  /** Path-style addressing (http://host/bucket/key) instead of virtual hosts; most S3-compatible servers need it. */
  forcePathStyle: boolean;
  /** Both or neither; neither means the SDK's default credential chain (environment, profile, instance role). */
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  /**
   * WHEN_SUPPORTED (the default) sends a flexible checksum with every upload (the part's SHA-256 where the
   * caller computed one, else the SDK's CRC32) and checks them on downloads; WHEN_REQUIRED only where S3
   * requires one, for servers that reject them (R2, Ceph RGW, older MinIO).
   */
  checksumMode: ChecksumMode;
  /** Attempts per request, the first included (the SDK's standard retry mode); default 5. */
  maxAttempts: number;
}

export const S3_ENDPOINT_DEFAULTS = {
  region: 'us-east-1',
  forcePathStyle: false,
  checksumMode: 'WHEN_SUPPORTED',
  maxAttempts: 5,
} as const satisfies Partial<S3EndpointConfig>;

/** The name of the endpoint a job uses when its spec names none. */
export const DEFAULT_ENDPOINT_NAME = 'default';

const REGION_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const ENDPOINT_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

const typeError = (what: string) => (issue: { input?: unknown }): string => (issue.input === undefined ? 'is required' : what);
const text = z.string({ error: typeError('must be a text value') });

function checkEndpointUrl(value: string, ctx: z.RefinementCtx): void {
  const example = 'write the URL of the server, such as http://127.0.0.1:9000 or https://s3.example.com';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not a URL; ${example}` });
    return;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not an http:// or https:// URL; ${example}` });
  } else if (url.username !== '' || url.password !== '') {
    // Never quote the value: it holds a secret.
    ctx.addIssue({ code: 'custom', message: 'must not carry credentials in the URL; use accessKeyId and secretAccessKey' });
  } else if (url.search !== '' || url.hash !== '') {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} must not have a query or fragment; ${example}` });
  }
}

/** The schema of one endpoint as written in the agent's YAML file; every field optional, defaults applied on compile. */
export const s3EndpointSchema = z
  .object({
    endpoint: text.superRefine(checkEndpointUrl).optional(),
    region: text
      .refine((r) => REGION_RE.test(r), { error: (iss) => `${JSON.stringify(iss.input)} is not a region name; write for example us-east-1 or eu-west-3` })
      .optional(),
    forcePathStyle: z.boolean({ error: 'must be true or false' }).optional(),
    accessKeyId: text.min(1, 'must not be empty; leave both keys out to use the default credential chain').optional(),
    // The value is never quoted in a message.
    secretAccessKey: z.string({ error: 'must be a text value' }).min(1, 'must not be empty; leave both keys out to use the default credential chain').optional(),
    checksumMode: z.enum(CHECKSUM_MODES, { error: `must be ${CHECKSUM_MODES.join(' or ')}` }).optional(),
    maxAttempts: z
      .number({ error: typeError('must be a whole number of attempts') })
      .int('must be a whole number of attempts')
      .min(1, 'must be at least 1 (the first attempt counts)')
      .max(20, 'must be at most 20')
      .optional(),
  })
  .strict()
  .superRefine((e, ctx) => {
    if ((e.accessKeyId === undefined) !== (e.secretAccessKey === undefined)) {
      const missing = e.accessKeyId === undefined ? 'accessKeyId' : 'secretAccessKey';
      ctx.addIssue({ code: 'custom', message: `needs both accessKeyId and secretAccessKey, or neither (for the default credential chain); ${missing} is missing`, path: [missing] });
    }
  });

export type S3EndpointInput = z.infer<typeof s3EndpointSchema>;

/** Applies the defaults to a validated endpoint. */
export function compileS3Endpoint(e: S3EndpointInput): S3EndpointConfig {
  return {
    endpoint: e.endpoint,
    region: e.region ?? S3_ENDPOINT_DEFAULTS.region,
    forcePathStyle: e.forcePathStyle ?? S3_ENDPOINT_DEFAULTS.forcePathStyle,
    accessKeyId: e.accessKeyId,
    secretAccessKey: e.secretAccessKey,
    checksumMode: e.checksumMode ?? S3_ENDPOINT_DEFAULTS.checksumMode,
    maxAttempts: e.maxAttempts ?? S3_ENDPOINT_DEFAULTS.maxAttempts,
  };
}

/** Whether a name may name an endpoint in `s3.endpoints`. */
export function isValidEndpointName(name: string): boolean {
  return ENDPOINT_NAME_RE.test(name);
}

/** The endpoint for people: its URL, or "AWS S3 (region)". Never the credentials. */
export function describeEndpoint(config: Pick<S3EndpointConfig, 'endpoint' | 'region'>): string {
  return config.endpoint ?? `AWS S3 (${config.region})`;
}
