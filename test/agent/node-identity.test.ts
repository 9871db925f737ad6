import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { loadOrCreateNodeId } from '../../src/agent/node-identity.ts';

const moduleUrl = pathToFileURL(path.resolve(import.meta.dirname, '../../src/agent/node-identity.ts')).href;

void t.test('creates a node id once and reads the same id back on later starts', (t) => {
  const stateDir = path.join(t.testdir(), 'state');
  const id = loadOrCreateNodeId(stateDir);
  t.match(id, /^node-[0-9a-f]{12}$/);
  t.equal(fs.readFileSync(path.join(stateDir, 'node-id'), 'utf8'), `${id}\n`);
  t.equal(fs.statSync(stateDir).mode & 0o777, 0o700, 'state directory is private to the agent');
  t.equal(loadOrCreateNodeId(stateDir), id);
  t.equal(loadOrCreateNodeId(stateDir), id);
  t.same(fs.readdirSync(stateDir), ['node-id'], 'no temporary files are left behind');
  t.end();
});

void t.test('two state directories get different ids', (t) => {
  const dir = t.testdir();
  t.not(loadOrCreateNodeId(path.join(dir, 'a')), loadOrCreateNodeId(path.join(dir, 'b')));
  t.end();
});

void t.test('accepts a node-id file written by hand without a trailing newline', (t) => {
  const stateDir = t.testdir({ 'node-id': 'node-0123456789ab' });
  t.equal(loadOrCreateNodeId(stateDir), 'node-0123456789ab');
  t.end();
});

void t.test('a garbled node-id file is an error that says what to do, and is left as it was', (t) => {
  const stateDir = t.testdir({ 'node-id': 'node-xyz\0\0\0' });
  t.throws(() => loadOrCreateNodeId(stateDir), {
    code: 'NODE_ID_INVALID',
    message: /node-id does not hold a node id.*Restore the file from a backup.*or delete it/,
  });
  t.equal(fs.readFileSync(path.join(stateDir, 'node-id'), 'utf8'), 'node-xyz\0\0\0');
  t.end();
});

void t.test('an empty node-id file is an error too', (t) => {
  const stateDir = t.testdir({ 'node-id': '' });
  t.throws(() => loadOrCreateNodeId(stateDir), { code: 'NODE_ID_INVALID' });
  t.end();
});

void t.test('a node-id that is a directory cannot be read: error naming the file', (t) => {
  const stateDir = t.testdir({ 'node-id': {} });
  t.throws(() => loadOrCreateNodeId(stateDir), { code: 'NODE_ID_INVALID', message: /cannot read the node id in .*node-id \(EISDIR\)/ });
  t.end();
});

void t.test('a state directory that cannot be created is STATE_DIR_UNWRITABLE naming it and the fix', (t) => {
  const dir = t.testdir({ file: 'not a directory' });
  const stateDir = path.join(dir, 'file', 'state');
  t.throws(() => loadOrCreateNodeId(stateDir), {
    code: 'STATE_DIR_UNWRITABLE',
    message: new RegExp(`state directory ${stateDir} is not writable .*--state-dir`),
  });
  t.end();
});

// The test machine runs as root (docs/test-harness.md), so it can start the agent as "nobody".
void t.test('an unprivileged agent in a directory it may not write to gets STATE_DIR_UNWRITABLE', (t) => {
  const stateDir = t.testdir();
  fs.chmodSync(stateDir, 0o755);
  const script = `import { loadOrCreateNodeId } from ${JSON.stringify(moduleUrl)};
try { loadOrCreateNodeId(${JSON.stringify(stateDir)}); console.log('created'); } catch (err) { console.log(err.code + ' ' + err.message); }`;
  // `env -u NODE_OPTIONS`: the test runner preloads its own hooks into every child, and those
  // would try to write into the runner's (root-owned) directory as "nobody".
  const result = spawnSync('env', ['-u', 'NODE_OPTIONS', process.execPath, '--input-type=module', '-e', script], {
    uid: 65534,
    gid: 65534,
    encoding: 'utf8',
  });
  t.equal(result.stderr, '');
  t.match(result.stdout, /^STATE_DIR_UNWRITABLE state directory .* is not writable \((EACCES|EPERM)\)/);
  t.same(fs.readdirSync(stateDir), []);
  t.end();
});

void t.test('agents starting at the same moment agree on one id', async (t) => {
  const stateDir = t.testdir();
  const script = `import { loadOrCreateNodeId } from ${JSON.stringify(moduleUrl)};
console.log(loadOrCreateNodeId(${JSON.stringify(stateDir)}));`;
  const runs = Array.from({ length: 6 }, () =>
    new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit']});
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`exit ${code}`))));
    }),
  );
  const ids = await Promise.all(runs);
  t.equal(new Set(ids).size, 1, `all agents read the same id: ${ids.join(' ')}`);
  t.equal(fs.readFileSync(path.join(stateDir, 'node-id'), 'utf8'), `${ids[0]}\n`);
  t.same(fs.readdirSync(stateDir), ['node-id']);
});
