import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { checkSecrets, findSecrets, secretForms } from '../../scripts/check-secrets.ts';
import { CANARIES, CANARY_JOIN_TOKEN, CANARY_REGISTRY_PASSWORD, CANARY_S3_SECRET } from '../helpers/secrets.ts';

const script = path.resolve(import.meta.dirname, '..', '..', 'scripts', 'check-secrets.ts');

void t.test('the canaries are long, distinct, and have a URL-encoded form of their own', (t) => {
  // Assertion messages name the canaries, never show them: the test output is scanned too.
  const values = Object.values(CANARIES);
  t.ok(values.includes(CANARY_S3_SECRET) && values.includes(CANARY_REGISTRY_PASSWORD) && values.includes(CANARY_JOIN_TOKEN), 'all three are scanned for');
  t.equal(new Set(values).size, values.length, 'distinct');
  for (const [name, v] of Object.entries(CANARIES)) {
    t.ok(v.length >= 40, `the ${name} is long`);
    t.ok(encodeURIComponent(v) !== v, `URL-encoding changes the ${name}, so that form is searched too`);
  }
  t.end();
});

void t.test('a clean directory passes', (t) => {
  const dir = t.testdir({
    'agent.log': '{"level":30,"msg":"agent starting","secretAccessKey":"[redacted]"}\n',
    nested: { 'job.1.log': 'step 1\nstep 2\n' },
  });
  t.same(findSecrets(dir), []);
  const out: string[] = [];
  t.equal(checkSecrets([dir], (l) => out.push(l)), 0);
  t.match(out.join('\n'), /no canary secret in 2 log file\(s\)/);
  t.end();
});

void t.test('a planted leak is found, in every form, with its file and line, and fails the check', (t) => {
  const basic = Buffer.from(`trainer:${CANARY_REGISTRY_PASSWORD}`).toString('base64');
  const registryAuth = Buffer.from(JSON.stringify({ username: 'trainer', password: CANARY_REGISTRY_PASSWORD, serveraddress: 'r.example.com' })).toString('base64url');
  const dir = t.testdir({
    'plain.log': `line one\n{"msg":"config","secretAccessKey":"${CANARY_S3_SECRET}"}\n`,
    'encoded.log': `a\nb\nGET /x?token=${encodeURIComponent(CANARY_JOIN_TOKEN)}\n`,
    deep: { 'headers.log': `authorization: Basic ${basic}\nx-registry-auth: ${registryAuth}\n` },
  });
  const hits = findSecrets(dir);
  const where = hits.map((h) => `${path.relative(dir, h.file)}:${h.line} ${h.secret} ${h.form}`);
  t.ok(where.includes('plain.log:2 s3 secret plain'), 'plain, on its line');
  t.ok(where.includes('encoded.log:3 join token url-encoded'), 'URL-encoded');
  t.ok(where.includes('deep/headers.log:1 registry password base64'), 'base64 inside a Basic credential, at an offset');
  t.ok(where.some((w) => /^deep\/headers\.log:2 registry password base64(url)?$/.test(w)), 'base64url inside an encoded auth header');
  for (const hit of hits) t.notMatch(hit.excerpt, CANARY_S3_SECRET, 'the report does not repeat the secret');
  t.match(hits.find((h) => h.form === 'plain')?.excerpt, '"secretAccessKey":"<canary s3 secret>"');

  const out: string[] = [];
  t.equal(checkSecrets([dir], (l) => out.push(l)), 1);
  t.match(out.join('\n'), /plain\.log:2: the s3 secret \(plain\) is in a log/);
  t.match(out.at(-1), /canary secret\(s\) found in the logs/);
  t.end();
});

void t.test('base64 forms cover every byte offset', (t) => {
  const forms = secretForms(CANARY_S3_SECRET).filter((f) => f.form === 'base64');
  t.equal(forms.length, 3);
  for (let pad = 0; pad < 3; pad++) {
    const encoded = Buffer.from(`${'x'.repeat(pad)}${CANARY_S3_SECRET}tail`).toString('base64');
    t.ok(forms.some((f) => encoded.includes(f.text)), `secret after ${pad} byte(s)`);
  }
  t.end();
});

void t.test('the command: exit 1 on a leak, 0 when clean, 2 without a directory', (t) => {
  const dir = t.testdir();
  mkdirSync(path.join(dir, 'clean'));
  mkdirSync(path.join(dir, 'leaky'));
  writeFileSync(path.join(dir, 'clean', 'a.log'), 'nothing here\n');
  writeFileSync(path.join(dir, 'leaky', 'b.log'), `password=${CANARY_REGISTRY_PASSWORD}\n`);
  const run = (args: string[], env: NodeJS.ProcessEnv = {}) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', env: { ...process.env, STEVEDORE_TEST_LOG_DIR: '', ...env } });
  t.equal(run([path.join(dir, 'clean')]).status, 0);
  const leaky = run([], { STEVEDORE_TEST_LOG_DIR: path.join(dir, 'leaky') });
  t.equal(leaky.status, 1, 'STEVEDORE_TEST_LOG_DIR is the default directory');
  t.match(leaky.stderr, /b\.log:1: the registry password \(plain\) is in a log: password=<canary registry password>/);
  t.notMatch(leaky.stderr, CANARY_REGISTRY_PASSWORD);
  t.equal(run([]).status, 2);
  t.equal(run([path.join(dir, 'missing')]).status, 2);
  t.end();
});
