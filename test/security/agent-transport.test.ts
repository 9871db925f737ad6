import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { prepareAgentTransport } from '../../src/security/agent-transport.ts';
import { createCa, issueCertificate } from '../../src/security/certs.ts';
import { testLog } from '../helpers/test-log.ts';

void t.test('the agent needs TLS or insecure; with TLS its node id is its certificate\'s', async (t) => {
  const dir = t.testdir();
  const caDir = path.join(dir, 'ca');
  await createCa(caDir);
  const node = await issueCertificate({ caDir, kind: 'node', name: 'node-aaaaaaaaaaaa', outDir: path.join(dir, 'tls') });
  const operator = await issueCertificate({ caDir, kind: 'operator', name: 'alice', outDir: path.join(dir, 'op') });
  const log = testLog('agent-transport');
  const address = '127.0.0.1:7443';
  const tls = { ca: node.ca, cert: node.cert, key: node.key, joinToken: 'sdj1.node-aaaaaaaaaaaa.x' };

  t.throws(() => prepareAgentTransport({ coordinator: { address, tls: undefined }, stateDir: path.join(dir, 's0') }, log.logger), {
    code: 'INSECURE_NOT_ALLOWED',
    message: /needs TLS to reach its coordinator: set coordinator\.tls \{ca, cert, key\} and coordinator\.joinTokenFile.*or set coordinator\.insecure: true \(or --insecure\)/,
  });
  t.equal(prepareAgentTransport({ coordinator: { address, tls: undefined, insecure: true }, stateDir: path.join(dir, 's0') }, log.logger), undefined);
  t.ok(log.lines().some((l) => l.level === 40 && /plaintext session without TLS/.test(String(l.msg))), 'insecure warns');

  const stateDir = path.join(dir, 'state');
  t.equal(prepareAgentTransport({ coordinator: { address, tls }, stateDir }, log.logger), 'node-aaaaaaaaaaaa');
  t.equal(readFileSync(path.join(stateDir, 'node-id'), 'utf8').trim(), 'node-aaaaaaaaaaaa', 'a first start takes the certificate\'s node id');
  t.equal(prepareAgentTransport({ coordinator: { address, tls }, stateDir }, log.logger), 'node-aaaaaaaaaaaa', 'and the next start agrees');

  const other = path.join(dir, 'other-state');
  t.equal(prepareAgentTransport({ coordinator: { address, tls: undefined, insecure: true }, stateDir: other }, log.logger), undefined);
  const { loadOrCreateNodeId } = await import('../../src/agent/node-identity.ts');
  const stored = loadOrCreateNodeId(other);
  t.throws(() => prepareAgentTransport({ coordinator: { address, tls }, stateDir: other }, log.logger), {
    code: 'NODE_ID_MISMATCH',
    message: new RegExp(`belongs to node ${stored}, but its certificate .* is node node-aaaaaaaaaaaa's. Give the agent the certificate of ${stored}`),
  });
  t.throws(() => prepareAgentTransport({ coordinator: { address, tls: { ...tls, cert: operator.cert, key: operator.key } }, stateDir }, log.logger), {
    code: 'TLS_INVALID',
    message: /is an operator certificate \(stevedore:operator:alice\), not a node certificate/,
  });
  t.throws(() => prepareAgentTransport({ coordinator: { address, tls: { ...tls, joinToken: undefined } }, stateDir }, log.logger), {
    code: 'JOIN_TOKEN_INVALID',
    message: /has a certificate but no join token: set coordinator\.joinTokenFile/,
  });
});
