import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { agentSecrets } from '../../src/cli/commands/agent.ts';
import { buildProgram } from '../../src/cli/main.ts';
import { S3ObjectStore } from '../../src/storage/s3-object-store.ts';
import { StevedoreError } from '../../src/util/errors.ts';
import {
  createLogger, isSecretName, logFormatFrom, MIN_SECRET_LENGTH, parseLogFormat, parseLogLevel, redactText, REDACTED, type LoggerOptions,
} from '../../src/util/logger.ts';
import { findSecrets } from '../../scripts/check-secrets.ts';
import { freePort, waitUntil } from '../helpers/cluster.ts';
import { testEngineEnv } from '../helpers/engine.ts';
import { writeFakeNvidiaSmi } from '../helpers/fake-gpus.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { CANARIES, CANARY_JOIN_TOKEN, CANARY_REGISTRY_PASSWORD, CANARY_S3_SECRET } from '../helpers/secrets.ts';
import { testLogFile } from '../helpers/test-log.ts';

type Line = Record<string, unknown>;

function capture(opts: LoggerOptions = {}): { logger: ReturnType<typeof createLogger>; raw: string[]; lines: () => Line[] } {
  const raw: string[] = [];
  const logger = createLogger({ level: 'debug', ...opts, destination: { write: (s: string) => void raw.push(s) } });
  return { logger, raw, lines: () => raw.map((s) => JSON.parse(s) as Line) };
}

const text = (raw: string[]): string => raw.join('');

void t.test('JSON lines by default: level, ISO time, name, pid, fields and message', (t) => {
  const { logger, raw, lines } = capture({ name: 'stevedore-agent' });
  logger.info({ jobId: 'j1', attempt: 2 }, 'job accepted');
  logger.debug('details');
  t.equal(raw.length, 2);
  t.ok(raw.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n')), 'one line each');
  const [first] = lines();
  t.match(first, { level: 30, name: 'stevedore-agent', pid: process.pid, jobId: 'j1', attempt: 2, msg: 'job accepted' });
  t.match(String(first?.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  t.end();
});

void t.test('the level drops what is below it', (t) => {
  const { logger, raw } = capture({ level: 'warn' });
  logger.info('not this');
  logger.warn('this');
  t.equal(raw.length, 1);
  t.match(raw[0], /"msg":"this"/);
  t.end();
});

void t.test('secret fields are redacted at any depth; the rest stays, and the logged object is not changed', (t) => {
  const { logger, lines, raw } = capture();
  const config = {
    s3: { endpoints: { default: { endpoint: 'http://127.0.0.1:9000', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: CANARY_S3_SECRET, sessionToken: 'session-token-value-1234' } } },
    registries: [{ server: 'registry.example.com', username: 'trainer', password: CANARY_REGISTRY_PASSWORD }],
    coordinator: { address: 'c:7443', joinToken: CANARY_JOIN_TOKEN, tls: { key: '/etc/stevedore/agent.key', cert: '/etc/stevedore/agent.crt' } },
    deep: { a: { b: { c: { d: { password: 'a-deep-password-1234' } } } } },
  };
  logger.info({ config }, 'effective configuration');
  logger.info({ headers: { Authorization: 'AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=abc', 'x-amz-security-token': 'tok-1234567890', 'content-type': 'text/plain' } }, 'request');
  logger.info({ authconfig: { username: 'u', password: 'pw-1234567', identitytoken: 'idt-1234567', auth: 'dTpwdw==' } }, 'pull');
  logger.info({ spec: { env: { HF_TOKEN: 'hf_secret_123456', WANDB_API_KEY: 'wandb-123456', DB_PASSWORD: 'db-pw-123456', EPOCHS: '3' } } }, 'job spec');
  logger.info({ privateKey: '/k.pem', token: 'tok-abcdefgh' }, 'top-level');

  const [cfg, req, pull, spec, top] = lines() as [Line, Line, Line, Line, Line];
  t.same(cfg.config, {
    s3: { endpoints: { default: { endpoint: 'http://127.0.0.1:9000', accessKeyId: 'AKIAEXAMPLE', secretAccessKey: REDACTED, sessionToken: REDACTED } } },
    registries: [{ server: 'registry.example.com', username: 'trainer', password: REDACTED }],
    coordinator: { address: 'c:7443', joinToken: REDACTED, tls: { key: REDACTED, cert: '/etc/stevedore/agent.crt' } },
    deep: { a: { b: { c: { d: { password: REDACTED } } } } },
  }, 'S3 secret and session token, registry password, join token, TLS key, and a password five levels down');
  t.same(req.headers, { Authorization: REDACTED, 'x-amz-security-token': REDACTED, 'content-type': 'text/plain' }, 'request headers');
  t.same(pull.authconfig, REDACTED, 'registry auth as a whole');
  t.same(spec.spec, { env: { HF_TOKEN: REDACTED, WANDB_API_KEY: REDACTED, DB_PASSWORD: REDACTED, EPOCHS: '3' } }, 'secret-looking environment variables of a job');
  t.match(top, { privateKey: REDACTED, token: REDACTED });
  t.equal(config.s3.endpoints.default.secretAccessKey, CANARY_S3_SECRET, 'the configuration itself keeps its secret');
  t.equal(config.registries[0]?.password, CANARY_REGISTRY_PASSWORD, 'and its password');
  t.notMatch(text(raw), /session-token-value|a-deep-password|tok-1234567890|pw-1234567|idt-1234567|hf_secret|wandb-123456|db-pw-123456|tok-abcdefgh/);
  t.same(findSecretsIn(text(raw)), []);
  t.end();
});

void t.test('what counts as a secret name', (t) => {
  for (const name of ['password', 'secretAccessKey', 'sessionToken', 'joinToken', 'token', 'auth', 'Authorization', 'x-amz-security-token', 'X-Registry-Auth', 'identitytoken', 'privateKey', 'HF_TOKEN', 'OPENAI_API_KEY', 'client_secret', 'StringToSign', 'CanonicalRequest']) {
    t.ok(isSecretName(name), name);
  }
  for (const name of ['accessKeyId', 'username', 'endpoint', 'objectKey', 'jobId', 'author', 'tokensPerSecond', 'bucket', 'region']) {
    t.notOk(isSecretName(name), name);
  }
  t.end();
});

void t.test('child bindings are redacted too', (t) => {
  const { logger, lines } = capture();
  logger.child({ component: 'session', credentials: { accessKeyId: 'AK', secretAccessKey: CANARY_S3_SECRET } }).info('bound');
  t.same(lines()[0]?.credentials, { accessKeyId: 'AK', secretAccessKey: REDACTED });
  t.end();
});

void t.test('an S3 access-denied error logged as { err }: message, cause, code and the SDK fields, no secret', async (t) => {
  const s3 = await startS3Server({ buckets: ['bkt'] });
  t.teardown(() => s3.close());
  const store = new S3ObjectStore({ bucket: 'bkt', config: { ...s3.config, accessKeyId: 'NOBODY', maxAttempts: 1 }, rounds: 1, conditionalWrites: 'off' });
  t.teardown(() => store.destroy());
  const err = await store.putObject('k', 'x').then(() => undefined, (e: unknown) => e as StevedoreError);
  t.equal(err?.code, 'OBJECT_STORE_ACCESS_DENIED');
  const { logger, lines, raw } = capture({ secrets: [] });
  logger.error({ err }, 'upload failed');
  const logged = lines()[0]?.err as Line;
  t.equal(logged.type, 'StevedoreError');
  t.equal(logged.code, 'OBJECT_STORE_ACCESS_DENIED');
  t.match(logged.message, /access denied.*InvalidAccessKeyId/);
  t.match(logged.stack, /caused by: InvalidAccessKeyId/, 'the cause is in the stack');
  t.match(logged.message, s3.endpoint, 'the endpoint is named');
  t.same(findSecretsIn(text(raw)), [], 'the secret key is not');
});

void t.test('errors: secret fields, request signing details and the raw response are left out, at any key', (t) => {
  const { logger, lines, raw } = capture();
  const sdk = Object.assign(new Error('The request signature we calculated does not match the signature you provided.'), {
    name: 'SignatureDoesNotMatch',
    $metadata: { httpStatusCode: 403, requestId: 'req-1' },
    CanonicalRequest: `PUT /bkt/k\nx-amz-security-token:${CANARY_JOIN_TOKEN}`,
    StringToSign: 'AWS4-HMAC-SHA256\n20260101T000000Z',
    config: { password: CANARY_REGISTRY_PASSWORD },
  });
  Object.defineProperty(sdk, '$response', { value: { headers: { 'x-amz-security-token': CANARY_JOIN_TOKEN }, body: CANARY_S3_SECRET }, enumerable: true });
  const err = new StevedoreError('OBJECT_STORE_ACCESS_DENIED', 'put failed', { cause: sdk });
  logger.error({ err }, 'under err');
  logger.error({ failure: sdk }, 'under another key');
  logger.error(sdk, 'as the object');
  const [a, b, c] = lines() as [Line, Line, Line];
  t.match(a.err, { type: 'StevedoreError', code: 'OBJECT_STORE_ACCESS_DENIED', message: /put failed: The request signature/ });
  t.match(b.failure, { name: 'SignatureDoesNotMatch', $metadata: { httpStatusCode: 403, requestId: 'req-1' }, CanonicalRequest: REDACTED, StringToSign: REDACTED, config: { password: REDACTED } });
  t.notOk('$response' in (b.failure as Line), 'the raw response is dropped');
  t.match(c.err, { name: 'SignatureDoesNotMatch', message: /signature/ });
  t.same(findSecretsIn(text(raw)), []);
  t.end();
});

void t.test('text: credentials in URLs, secret query parameters, Basic/Bearer, PEM private keys, in messages and stacks', (t) => {
  const { logger, raw } = capture();
  const pem = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----';
  logger.info(`fetching https://alice:${CANARY_REGISTRY_PASSWORD}@inputs.example.com/data.tar`);
  logger.info({ url: `https://bucket.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F20260101&X-Amz-Security-Token=${encodeURIComponent(CANARY_JOIN_TOKEN)}&X-Amz-Signature=abcdef0123456789&x-id=GetObject` }, 'presigned');
  logger.info({ err: new Error(`connect to http://bob:${CANARY_S3_SECRET}@10.0.0.1:9000 failed`) }, 'in an error');
  logger.info({ header: 'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig' }, 'bearer');
  logger.info({ tls: pem }, 'pem');
  const out = text(raw);
  t.match(out, `https://${REDACTED}@inputs.example.com/data.tar`, 'the URL is kept, its credentials not');
  t.match(out, `X-Amz-Security-Token=${REDACTED}`);
  t.match(out, `X-Amz-Signature=${REDACTED}`);
  t.match(out, 'x-id=GetObject', 'ordinary parameters stay');
  t.match(out, `http://${REDACTED}@10.0.0.1:9000`);
  t.match(out, `Bearer ${REDACTED}`);
  t.notMatch(out, /eyJhbGci|MIIEvQIBADAN|abcdef0123456789/);
  t.match(out, /-----BEGIN PRIVATE KEY-----\[redacted\]-----END PRIVATE KEY-----/);
  t.same(findSecretsIn(out), []);
  t.ok(raw.every((l) => JSON.parse(l) !== undefined), 'every line is still JSON');
  t.end();
});

void t.test('the secret values a process holds are removed from any text, plain or URL-encoded', (t) => {
  const { logger, raw } = capture({ secrets: [CANARY_S3_SECRET, CANARY_REGISTRY_PASSWORD, 'short'] });
  logger.info({ note: `the key ${CANARY_S3_SECRET} leaked into a note` }, `and into a message ${encodeURIComponent(CANARY_REGISTRY_PASSWORD)}`);
  logger.info('a short word stays: short');
  const out = text(raw);
  t.same(findSecretsIn(out), []);
  t.match(out, `the key ${REDACTED} leaked into a note`);
  t.match(out, 'a short word stays: short', `values under ${MIN_SECRET_LENGTH} characters are not searched for`);
  t.equal(redactText('plain text, nothing secret'), 'plain text, nothing secret');
  t.end();
});

void t.test('pretty: one readable line per entry, no colour off a terminal, redaction kept', (t) => {
  const { logger, raw } = capture({ format: 'pretty', name: 'stevedore-agent' });
  logger.warn({ jobId: 'j1', password: CANARY_REGISTRY_PASSWORD }, 'draining');
  const out = text(raw);
  t.match(out, /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}\] WARN \(stevedore-agent\): draining\n/);
  t.match(out, /jobId: "j1"/);
  t.match(out, `password: "${REDACTED}"`);
  t.notOk(out.includes('\u001b['), 'no terminal colour codes');
  t.throws(() => {
    JSON.parse(out);
  }, 'not JSON');
  t.same(findSecretsIn(out), []);
  t.end();
});

void t.test('log format and level from flags and the environment', (t) => {
  t.equal(logFormatFrom(undefined, {}), 'json', 'json by default');
  t.equal(logFormatFrom(undefined, { STEVEDORE_LOG_FORMAT: 'pretty' }), 'pretty');
  t.equal(logFormatFrom('json', { STEVEDORE_LOG_FORMAT: 'pretty' }), 'json', 'the flag wins');
  t.equal(parseLogFormat(' Pretty ', '--log-format'), 'pretty');
  t.throws(() => logFormatFrom(undefined, { STEVEDORE_LOG_FORMAT: 'text' }), { code: 'CONFIG_INVALID', message: /STEVEDORE_LOG_FORMAT: "text" is not a log format; use json .* or pretty/ });
  t.throws(() => parseLogFormat('xml', '--log-format'), { code: 'CONFIG_INVALID', message: /--log-format/ });
  t.equal(parseLogLevel('DEBUG', '--log-level'), 'debug');
  t.throws(() => parseLogLevel('verbose', '--log-level'), { code: 'CONFIG_INVALID', message: /--log-level: "verbose" is not a log level; use one of fatal, error, warn, info, debug, trace, silent/ });
  t.end();
});

void t.test("the agent's secrets: S3 secret keys, registry passwords, AWS credentials from the environment", (t) => {
  const endpoint = { endpoint: undefined, region: 'us-east-1', forcePathStyle: false, accessKeyId: 'AK', secretAccessKey: CANARY_S3_SECRET, checksumMode: 'WHEN_SUPPORTED' as const, maxAttempts: 5 };
  const chain = { ...endpoint, accessKeyId: undefined, secretAccessKey: undefined };
  t.same(
    agentSecrets({ s3: { endpoints: { default: endpoint, aws: chain } }, registries: [{ server: 'r', username: 'u', password: CANARY_REGISTRY_PASSWORD }] }, { AWS_SECRET_ACCESS_KEY: 'aws-env-secret', AWS_SESSION_TOKEN: '' }),
    [CANARY_S3_SECRET, CANARY_REGISTRY_PASSWORD, 'aws-env-secret'],
  );
  t.end();
});

const bin = path.resolve(import.meta.dirname, '..', '..', 'bin', 'stevedore.js');

/** Runs `stevedore args...` with stderr to a file of the run's logs, until `until` matches it; then SIGTERM. */
async function runUntil(t: Test, name: string, args: string[], until: RegExp, env: NodeJS.ProcessEnv = {}): Promise<string> {
  const file = testLogFile(name);
  const fd = openSync(file, 'a');
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'ignore', fd], env: { ...process.env, ...env } });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  const read = (): string => readFileSync(file, 'utf8');
  await waitUntil(() => until.test(read()) || child.exitCode !== null, 20000, () => `no ${until} in:\n${read()}`);
  if (!until.test(read())) throw new Error(`stevedore ${args[0]} exited (${child.exitCode}) before logging ${until}:\n${read()}`);
  child.kill('SIGTERM');
  await exited;
  return read();
}

void t.test('the coordinator logs JSON lines by default, pretty lines when asked (--log-format, STEVEDORE_LOG_FORMAT)', async (t) => {
  const dir = t.testdir();
  // Three coordinators at once: each its own metrics port, where the command has that server.
  const hasMetrics = (await buildProgram()).commands.find((c) => c.name() === 'coordinator')?.options.some((o) => o.long === '--metrics-listen') ?? false;
  const metrics = hasMetrics ? ['--metrics-listen', '127.0.0.1:0'] : [];
  const coordinator = async (db: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> =>
    runUntil(t, `coordinator-${db}`, ['coordinator', '--listen', `127.0.0.1:${await freePort()}`, '--db', path.join(dir, `${db}.db`), ...metrics, ...args], /coordinator started/, env);
  const [json, pretty, fromEnv] = await Promise.all([
    coordinator('json', []),
    coordinator('pretty', ['--log-format', 'pretty', '--log-level', 'debug']),
    coordinator('env', [], { STEVEDORE_LOG_FORMAT: 'pretty' }),
  ]);
  const jsonLines = json.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);
  t.ok(jsonLines.some((l) => l.name === 'stevedore-coordinator' && l.msg === 'coordinator started'), 'JSON lines by default');
  t.match(pretty, /^\[[^\]]+\] INFO \(stevedore-coordinator\): coordinator started$/m, '--log-format pretty');
  t.match(fromEnv, /^\[[^\]]+\] INFO \(stevedore-coordinator\): coordinator started$/m, 'STEVEDORE_LOG_FORMAT=pretty');
});

void t.test('the agent started with S3 and registry secrets: pretty on request, the secrets nowhere in its log', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stevedore-agent-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = {
    coordinator: { address: `127.0.0.1:${await freePort()}` },
    stateDir: path.join(dir, 'state'),
    workRoot: path.join(dir, 'work'),
    socketPath: path.join(dir, 'agent.sock'),
    dockerHost: testEngineEnv().dockerHost,
    nvidiaSmiPath: writeFakeNvidiaSmi(path.join(dir, 'gpu'), 1),
    reconnect: { initialMs: 50, maxMs: 100 },
    logLevel: 'trace',
    registries: [{ server: 'registry.example.com', username: 'trainer', password: CANARY_REGISTRY_PASSWORD }],
    s3: { endpoints: { default: { endpoint: 'http://127.0.0.1:9', accessKeyId: 'AK', secretAccessKey: CANARY_S3_SECRET } } },
    preemption: { cloud: 'none' },
  };
  writeFileSync(path.join(dir, 'agent.yaml'), stringify(config));
  // No coordinator answers: the agent keeps dialing and says so.
  const log = await runUntil(t, 'agent-pretty', ['agent', '--config', path.join(dir, 'agent.yaml'), '--log-format', 'pretty'], /agent running[\s\S]*(dial|connect)/i, { STEVEDORE_METRICS_LISTEN: '127.0.0.1:0' });
  t.match(log, /INFO \(stevedore-agent\): agent running/);
  t.same(findSecretsIn(log), [], 'neither the S3 secret nor the registry password');
});

/** Canary hits in a text (the same scan as after the test run). */
function findSecretsIn(content: string): string[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stevedore-scan-'));
  try {
    writeFileSync(path.join(dir, 'log'), content);
    return findSecrets(dir, CANARIES).map((h) => `${h.secret} (${h.form}) line ${h.line}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
