// The agent's logs on its secret-bearing paths: an S3 endpoint that refuses the
// agent's credentials, and a registry that refuses its password. The logs must
// say what failed and where, and hold no trace of the secret (the canaries of
// test/helpers/secrets.ts, in any of the forms scripts/check-secrets.ts looks for).
import t from 'tap';
import Docker from 'dockerode';
import { findSecrets, formatHit } from '../../scripts/check-secrets.ts';
import { setupAgent, trainerSpec } from '../helpers/agent-harness.ts';
import { testEngineEnv } from '../helpers/engine.ts';
import { startS3Server } from '../helpers/s3-server.ts';
import { CANARIES, CANARY_REGISTRY_PASSWORD, CANARY_S3_SECRET } from '../helpers/secrets.ts';
import { startFakeRegistry, TEST_REGISTRY_AUTH } from '../fixtures/engine/registry.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = testEngineEnv();

/** The canaries found in one log text (written to a scratch directory for the scan). */
function canariesIn(text: string): string[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stevedore-log-scan-'));
  try {
    writeFileSync(path.join(dir, 'log'), text);
    return findSecrets(dir, CANARIES).map(formatHit);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

void t.test('an S3 endpoint that denies access: the log names the failure and the endpoint, never the secret key', async (t) => {
  const s3 = await startS3Server({ buckets: ['ckpt'] });
  t.teardown(() => s3.close());
  t.equal(s3.config.secretAccessKey, CANARY_S3_SECRET, 'the endpoint is configured with the canary secret');
  // An access key the server does not know: every request is refused (403 InvalidAccessKeyId).
  const endpoint = { ...s3.config, accessKeyId: 'NOBODY' };
  const s = await setupAgent(t, 1, { s3: { endpoints: { default: endpoint } } });
  await s.coordinator.command({
    startJob: {
      jobId: 'denied',
      attempt: 1,
      spec: trainerSpec('denied', { checkpoint: { path: '/ckpt', destination: 's3://ckpt/jobs/denied', rule: 'dcp', keep: 2 }, mounts: [] }),
    },
  });
  const end = await s.coordinator.waitFor((m) => m.event?.jobId === 'denied' && m.event.body === 'exited', 30000);
  t.match(end.event?.exited?.error?.message ?? '', /access denied/, 'the attempt fails on the refused credentials');

  const log = s.log.text();
  t.match(log, /access denied/, 'the log says access was denied');
  t.match(log, s3.endpoint, 'and names the endpoint');
  t.match(log, /NOBODY|InvalidAccessKeyId/, 'and which key the server refused');
  t.same(canariesIn(log), [], 'the secret key is nowhere in the log');
});

void t.test('a registry that refuses the password: the log names the failure and the registry, never the password', async (t) => {
  // The registry wants another password than the one the agent has (the canary).
  const registry = await startFakeRegistry({ auth: { username: TEST_REGISTRY_AUTH.username, password: 'the-registry-wants-this-one' } });
  t.teardown(() => registry.close());
  const image = registry.addImage('team/private', 'v1', 4096);
  t.teardown(() => new Docker({ socketPath: env.socketPath }).getImage(image).remove({ force: true }).catch(() => undefined));
  t.equal(TEST_REGISTRY_AUTH.password, CANARY_REGISTRY_PASSWORD, 'the agent has the canary password');
  const s = await setupAgent(t, 1, { registries: [{ server: registry.address, ...TEST_REGISTRY_AUTH }] });
  await s.coordinator.command({ startJob: { jobId: 'refused', attempt: 1, spec: trainerSpec('refused', { image, pullPolicy: 'always' }) } });
  const end = await s.coordinator.waitFor((m) => m.event?.jobId === 'refused' && m.event.body === 'exited', 30000);
  t.equal(end.event?.exited?.error?.code, 'IMAGE_PULL_FAILED');
  t.ok(registry.requests.length > 0, 'the engine asked the registry');

  const log = s.log.text();
  t.match(log, /IMAGE_PULL_FAILED|pulling .* failed/, 'the log says the pull failed');
  t.match(log, registry.address, 'and names the registry');
  t.match(log, /credentials/, 'and points at the credentials');
  t.same(canariesIn(log), [], 'the password is nowhere in the log');
});
