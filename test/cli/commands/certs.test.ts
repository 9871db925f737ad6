import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { identityFromPem } from '../../../src/security/identity.ts';
import { readJoinSecret, verifyJoinToken } from '../../../src/security/join-token.ts';
import { runCli } from '../../client/run-cli.ts';

void t.test('stevedore certs makes a CA, the coordinator\'s, a node\'s and an operator\'s certificates, and join tokens', async (t) => {
  const dir = t.testdir();
  const ca = path.join(dir, 'ca');
  const r1 = await runCli(['certs', 'ca', '--out', ca]);
  t.equal(r1.code, 0, r1.stderr);
  t.match(r1.stdout, /CA made in .*join secret .*join-secret \(mode 0600/s);
  t.equal(statSync(path.join(ca, 'ca-key.pem')).mode & 0o777, 0o600);

  const coord = await runCli(['certs', 'coordinator', '--ca', ca, '--host', 'coord.example.com,10.0.0.5', '--out', path.join(dir, 'coord'), '--json']);
  t.equal(coord.code, 0, coord.stderr);
  const c = JSON.parse(coord.stdout) as { identity: string; cert: string; key: string };
  t.equal(c.identity, 'stevedore:coordinator:coord.example.com');

  const node = await runCli(['certs', 'node', '--ca', ca, '--out', path.join(dir, 'node'), '--json']);
  t.equal(node.code, 0, node.stderr);
  const n = JSON.parse(node.stdout) as { identity: string; cert: string; 'node id': string; 'join token': string };
  const nodeId = n['node id'];
  t.match(nodeId, /^node-[0-9a-f]{12}$/, 'a new node id when none is given');
  t.same(identityFromPem(readFileSync(n.cert)), { kind: 'node', name: nodeId });
  const tokenFile = path.join(dir, 'node', 'join-token');
  t.equal(statSync(tokenFile).mode & 0o777, 0o600, 'the token file is 0600');
  const secret = readJoinSecret(path.join(ca, 'join-secret'));
  t.same(verifyJoinToken(secret, readFileSync(tokenFile, 'utf8').trim()), { ok: true, nodeId });

  const printed = await runCli(['certs', 'token', nodeId, '--ca', ca]);
  t.equal(printed.code, 0);
  t.equal(printed.stdout.trim(), readFileSync(tokenFile, 'utf8').trim(), 'certs token prints the same token');

  const op = await runCli(['certs', 'operator', 'alice', '--ca', ca], { XDG_CONFIG_HOME: path.join(dir, 'home-config') });
  t.equal(op.code, 0, op.stderr);
  t.same(identityFromPem(readFileSync(path.join(dir, 'home-config', 'stevedore', 'tls', 'operator.pem'))), { kind: 'operator', name: 'alice' }, 'the operator certificate goes where the CLI looks');

  const again = await runCli(['certs', 'ca', '--out', ca]);
  t.equal(again.code, 1);
  t.match(again.stderr, /already exist: choose another --out directory, or add --force.*\[CERTS_EXIST\]/);
  const badId = await runCli(['certs', 'node', 'gpu-7', '--ca', ca, '--out', path.join(dir, 'x')]);
  t.equal(badId.code, 1);
  t.match(badId.stderr, /"gpu-7" is not a node id/);
  const noSecret = await runCli(['certs', 'token', nodeId, '--join-secret', path.join(dir, 'nothing')]);
  t.match(noSecret.stderr, /cannot read the join secret .*nothing \(ENOENT\)/);
  const usage = await runCli(['certs', 'coordinator', '--ca', ca, '--out', dir]);
  t.equal(usage.code, 2, 'a missing --host is a usage error');
});
