// Structured logs (pino). JSON lines on stderr by default, synchronously (journald
// reads stderr); `pretty` for a person at a terminal (pino-pretty).
//
// No secret reaches a log line. Three layers, each enough on its own for what it covers:
// 1. Every logged object and every child binding is copied with the values of
//    secret-named fields (password, secretAccessKey, sessionToken, token, auth,
//    authorization, privateKey, *_API_KEY, ...) replaced, at any depth, and
//    errors serialized here (message, stack, causes, fields) with the same rule;
//    the request-signing details an S3 error may carry (CanonicalRequest,
//    StringToSign) and the SDK's raw $response are dropped.
// 2. pino's path redaction (REDACT_PATHS) on top, for the names that are too
//    ordinary to censor at any depth (`key`: a TLS key here, an object key there).
// 3. The finished line is scrubbed of what can hide inside any text, messages
//    and stacks included: credentials in URLs (user:password@), secret query
//    parameters (X-Amz-Security-Token, X-Amz-Signature, sig, token, ...),
//    Basic and Bearer credentials, PEM private keys, and the secret values the
//    process was given (LoggerOptions.secrets) in their plain, JSON and URL forms.
// docs/operations.md ("Logs") lists what is redacted.
import { createRequire } from 'node:module';
import pino from 'pino';
import type { prettyFactory as PrettyFactory } from 'pino-pretty';
import { StevedoreError } from './errors.ts';

export type Logger = pino.Logger;

/** What a redacted value is replaced with. */
export const REDACTED = '[redacted]';

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** pino paths redacted besides the secret-named fields (layer 2); broad on purpose. */
export const REDACT_PATHS = [
  'password', '*.password', '*.*.password',
  'token', '*.token', '*.*.token',
  'joinToken', '*.joinToken', '*.*.joinToken',
  'secretAccessKey', '*.secretAccessKey', '*.*.secretAccessKey',
  'endpoints.*.secretAccessKey', '*.endpoints.*.secretAccessKey', '*.*.endpoints.*.secretAccessKey',
  'sessionToken', '*.sessionToken', '*.*.sessionToken',
  'authconfig', '*.authconfig',
  'auth', '*.auth',
  'identitytoken', '*.identitytoken',
  'key', '*.key', 'tls.key', '*.tls.key', '*.*.tls.key',
  'privateKey', '*.privateKey',
  'headers.authorization', '*.headers.authorization',
  'headers["x-amz-security-token"]', '*.headers["x-amz-security-token"]',
  'headers["x-registry-auth"]', '*.headers["x-registry-auth"]',
];

// Field names (lower case, without "-", "_" and ".") whose values are secret wherever they appear.
const SECRET_NAMES = new Set([
  'auth', 'authorization', 'proxyauthorization', 'authconfig', 'xregistryauth', 'identitytoken', 'registrytoken',
  'xamzsecuritytoken', 'cookie', 'setcookie', 'sig', 'pass', 'pwd',
  // What an S3 signature error carries: the signed request and string, with its headers.
  'canonicalrequest', 'canonicalrequestbytes', 'stringtosign', 'stringtosignbytes', 'signatureprovided',
]);
const SECRET_NAME_PARTS = ['password', 'passwd', 'passphrase', 'secret', 'privatekey', 'apikey', 'credential'];
const SECRET_NAME_ENDINGS = ['token', 'signature', 'secretkey'];
// Dropped from errors: the SDK's raw HTTP exchange.
const DROPPED_ERROR_FIELDS = new Set(['$response', '$request', 'raw']);
const MAX_DEPTH = 12;

/** Whether a field of this name holds a secret wherever it appears (layer 1). */
export function isSecretName(name: string): boolean {
  const n = name.toLowerCase().replace(/[-_.\s]/g, '');
  if (SECRET_NAMES.has(n)) return true;
  return SECRET_NAME_PARTS.some((p) => n.includes(p)) || SECRET_NAME_ENDINGS.some((e) => n.endsWith(e));
}

/** An error as a plain object for a log line: type, message and stack (with causes), code and fields, secrets redacted. */
export function serializeError(err: Error): Record<string, unknown> {
  return redactValue(err) as Record<string, unknown>;
}

function errorFields(err: Error, seen: WeakSet<object>, depth: number): Record<string, unknown> {
  const std = pino.stdSerializers.err(err) as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const field of Object.keys(std)) {
    if (DROPPED_ERROR_FIELDS.has(field)) continue;
    const value = std[field];
    if (value === undefined) continue;
    out[field] = isSecretName(field) ? REDACTED : walk(value, seen, depth + 1);
  }
  return out;
}

function walk(value: unknown, seen: WeakSet<object>, depth: number): unknown {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object') return value;
  if (depth > MAX_DEPTH) return '[too deep]';
  if (seen.has(value)) return '[circular]';
  if (value instanceof Error) {
    seen.add(value);
    const out = errorFields(value, seen, depth);
    seen.delete(value);
    return out;
  }
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return value;
  const withJson = value as { toJSON?: () => unknown };
  if (typeof withJson.toJSON === 'function') {
    seen.add(value);
    const out = walk(withJson.toJSON(), seen, depth + 1);
    seen.delete(value);
    return out;
  }
  seen.add(value);
  let out: unknown;
  if (Array.isArray(value)) {
    out = value.map((v) => walk(v, seen, depth + 1));
  } else if (value instanceof Map) {
    out = Object.fromEntries([...value].map(([k, v]) => [String(k), isSecretName(String(k)) ? REDACTED : walk(v, seen, depth + 1)]));
  } else if (value instanceof Set) {
    out = [...value].map((v) => walk(v, seen, depth + 1));
  } else {
    const copy: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) copy[k] = isSecretName(k) && v !== undefined && v !== null ? REDACTED : walk(v, seen, depth + 1);
    out = copy;
  }
  seen.delete(value);
  return out;
}

/** A copy of `value` with secret-named fields redacted at any depth and errors serialized; the original is left as it is. */
export function redactValue(value: unknown): unknown {
  return walk(value, new WeakSet(), 0);
}

// Text patterns (layer 3). Each stops at a quote or a backslash, so a JSON line stays JSON.
const TEXT_PATTERNS: [RegExp, string][] = [
  // scheme://user:password@host (the password may hold a raw "/"), and scheme://token@host
  [/\b([a-z][a-z0-9+.-]*:\/\/)(?:[^\s/?#@"\\:]*:[^\s@"\\]*|[^\s/?#@"\\:]+)@/gi, `$1${REDACTED}@`],
  // ?X-Amz-Security-Token=...&X-Amz-Signature=...&sig=...&token=...
  [/([?&;](?:[a-z0-9_.-]*(?:token|signature|secret|password|passwd|credential|apikey|api_key|api-key)|sig|key|code))=[^&\s"\\#]+/gi, `$1=${REDACTED}`],
  // Authorization: Basic ..., Bearer ..., AWS4-HMAC-SHA256 Credential=..., Signature=...
  [/\b(Basic|Bearer)\s+[A-Za-z0-9._~+/=-]{8,}/g, `$1 ${REDACTED}`],
  [/\b(Signature|Credential)=[A-Za-z0-9/+=._-]{8,}/g, `$1=${REDACTED}`],
  // x-amz-security-token: ..., x-registry-auth: ...
  [/\b(x-amz-security-token|x-registry-auth|authorization)(\s*[:=]\s*)(?!\[redacted\]|Basic |Bearer )[^\s"\\,;]+/gi, `$1$2${REDACTED}`],
  // PEM private keys, whole or cut off.
  [/-----BEGIN ([A-Z ]*)PRIVATE KEY-----(?:[^"\\]|\\.)*?(?:-----END [A-Z ]*PRIVATE KEY-----|(?="|$))/g, `-----BEGIN $1PRIVATE KEY-----${REDACTED}-----END $1PRIVATE KEY-----`],
];

/** Secret values shorter than this are not searched for in text: they would censor ordinary words. */
export const MIN_SECRET_LENGTH = 6;

/** The forms a secret value takes in a log line: as it is, JSON-escaped, URL-encoded. */
function valueForms(secret: string): string[] {
  const forms = new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]);
  forms.add(JSON.stringify(encodeURIComponent(secret)).slice(1, -1));
  return [...forms];
}

/**
 * `text` with secrets removed: credentials in URLs, secret query parameters,
 * Basic/Bearer credentials, PEM private keys, and each of `secrets` (at least
 * MIN_SECRET_LENGTH characters) wherever it appears.
 */
export function redactText(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length < MIN_SECRET_LENGTH) continue;
    for (const form of valueForms(secret)) if (out.includes(form)) out = out.split(form).join(REDACTED);
  }
  for (const [re, replacement] of TEXT_PATTERNS) out = out.replace(re, replacement);
  return out;
}

/** Checks a log format given by a flag or the environment; `source` names it in the error. */
export function parseLogFormat(value: string, source: string): LogFormat {
  const v = value.trim().toLowerCase();
  if ((LOG_FORMATS as readonly string[]).includes(v)) return v as LogFormat;
  throw new StevedoreError('CONFIG_INVALID', `${source}: ${JSON.stringify(value)} is not a log format; use json (for journald and log shippers) or pretty (for a terminal)`);
}

/** Checks a log level given by a flag or the environment; `source` names it in the error. */
export function parseLogLevel(value: string, source: string): LogLevel {
  const v = value.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw new StevedoreError('CONFIG_INVALID', `${source}: ${JSON.stringify(value)} is not a log level; use one of ${LOG_LEVELS.join(', ')}`);
}

/** The log format: the flag, else STEVEDORE_LOG_FORMAT, else json. */
export function logFormatFrom(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): LogFormat {
  if (flag !== undefined) return parseLogFormat(flag, '--log-format');
  const fromEnv = env.STEVEDORE_LOG_FORMAT;
  if (fromEnv !== undefined && fromEnv !== '') return parseLogFormat(fromEnv, 'STEVEDORE_LOG_FORMAT');
  return 'json';
}

export interface LoggerOptions {
  /** Default STEVEDORE_LOG_LEVEL, else info. */
  level?: string;
  name?: string;
  /** json (default): one JSON object per line. pretty: pino-pretty's lines, in colour on a terminal. */
  format?: LogFormat;
  /** Default: stderr (fd 2), written synchronously. */
  destination?: pino.DestinationStream;
  /** Secret values this process holds (S3 secret keys, registry passwords, tokens): never written, whatever field or text they turn up in. */
  secrets?: Iterable<string>;
}

// pino-pretty (and its dependencies) only for a pretty log: a JSON log, the
// agent's under systemd, does not carry its memory.
const requireModule = createRequire(import.meta.url);

function prettyDestination(target: pino.DestinationStream, colorize: boolean): pino.DestinationStream {
  const { prettyFactory } = requireModule('pino-pretty') as { prettyFactory: typeof PrettyFactory };
  const pretty = prettyFactory({ colorize, translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l o', ignore: 'pid,hostname' });
  return { write: (line: string) => target.write(pretty(line)) };
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const secrets = [...new Set(options.secrets ?? [])].filter((s) => s.length >= MIN_SECRET_LENGTH).sort((a, b) => b.length - a.length);
  const format = options.format ?? 'json';
  const target = options.destination ?? pino.destination({ fd: 2, sync: true });
  // Colour only for a terminal; a pretty log asked for in a file or a pipe stays plain text.
  const destination = format === 'pretty' ? prettyDestination(target, options.destination === undefined && process.stderr.isTTY) : target;
  return pino(
    {
      name: options.name ?? 'stevedore',
      level: options.level ?? process.env.STEVEDORE_LOG_LEVEL ?? 'info',
      redact: { paths: REDACT_PATHS, censor: REDACTED },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        log: (object) => redactValue(object) as Record<string, unknown>,
        bindings: (bindings) => redactValue(bindings) as pino.Bindings,
      },
      // Errors were serialized (and redacted) by the log formatter above.
      serializers: { err: (value: unknown) => value },
      hooks: { streamWrite: (line) => redactText(line, secrets) },
    },
    destination,
  );
}

/** A logger that drops everything, for library code under test. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
