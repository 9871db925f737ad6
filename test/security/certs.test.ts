import t from 'tap';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { CA_FILES, createCa, issueCertificate, signedBy } from '../../src/security/certs.ts';
import { identityFromPem, identityFromSubjectAltName, nodeIdFromCertificateFile } from '../../src/security/identity.ts';

const mode = (file: string): number => statSync(file).mode & 0o777;

void t.test('a CA, then coordinator, node and operator certificates, each naming its holder', async (t) => {
  const dir = t.testdir();
  const caDir = path.join(dir, 'ca');
  const ca = await createCa(caDir);
  t.equal(mode(ca.key), 0o600, 'the CA key is 0600');
  t.equal(mode(ca.joinSecret), 0o600, 'the join secret is 0600');
  t.ok(ca.joinSecretCreated);
  const caCert = new X509Certificate(readFileSync(ca.cert));
  t.ok(caCert.ca, 'a CA certificate');
  const years = (new Date(caCert.validTo).getTime() - new Date(caCert.validFrom).getTime()) / (365 * 86_400_000);
  t.ok(years > 9.9 && years < 10.1, `the CA is valid 10 years (${years.toFixed(2)})`);
  t.equal(caCert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1', 'ECDSA P-256');

  const coordinator = await issueCertificate({ caDir, kind: 'coordinator', name: 'coord.example.com', hosts: ['coord.example.com', '10.0.0.5'], outDir: path.join(dir, 'coordinator') });
  const node = await issueCertificate({ caDir, kind: 'node', name: 'node-0123456789ab', outDir: path.join(dir, 'node') });
  const operator = await issueCertificate({ caDir, kind: 'operator', name: 'alice', outDir: path.join(dir, 'operator') });
  for (const issued of [coordinator, node, operator]) {
    const pem = readFileSync(issued.cert, 'utf8');
    t.ok(signedBy(pem, readFileSync(ca.cert, 'utf8')), `${issued.uri}: signed by the CA`);
    t.equal(mode(issued.key), 0o600, `${issued.uri}: key 0600`);
    t.equal(readFileSync(issued.ca, 'utf8'), readFileSync(ca.cert, 'utf8'), `${issued.uri}: ca.pem beside it`);
    const x = new X509Certificate(pem);
    const days = (new Date(x.validTo).getTime() - new Date(x.validFrom).getTime()) / 86_400_000;
    t.ok(days > 364 && days < 366.1, `${issued.uri}: valid a year`);
    t.notOk(x.ca, `${issued.uri}: not a CA`);
  }
  t.same(identityFromPem(readFileSync(coordinator.cert)), { kind: 'coordinator', name: 'coord.example.com' });
  t.same(identityFromPem(readFileSync(node.cert)), { kind: 'node', name: 'node-0123456789ab' });
  t.same(identityFromPem(readFileSync(operator.cert)), { kind: 'operator', name: 'alice' });
  const coordX = new X509Certificate(readFileSync(coordinator.cert));
  t.match(coordX.subjectAltName, /DNS:coord\.example\.com/);
  t.match(coordX.subjectAltName, /IP Address:10\.0\.0\.5/);
  t.ok(coordX.checkHost('coord.example.com'), 'the coordinator certificate matches its host');
  t.equal(coordX.checkIP('10.0.0.5'), '10.0.0.5', 'and its address');
  t.equal(new X509Certificate(readFileSync(node.cert)).checkHost('coord.example.com'), undefined, 'a node certificate names no host');
  t.equal(nodeIdFromCertificateFile(node.cert, readFileSync), 'node-0123456789ab');
  t.throws(() => nodeIdFromCertificateFile(operator.cert, readFileSync), { code: 'TLS_INVALID', message: /an operator certificate \(stevedore:operator:alice\), not a node certificate: make one for this node with `stevedore certs node/ });
});

void t.test('existing files are kept unless forced; bad names and missing CAs are clear errors', async (t) => {
  const dir = t.testdir();
  const caDir = path.join(dir, 'ca');
  await createCa(caDir);
  const secretBefore = readFileSync(path.join(caDir, CA_FILES.joinSecret), 'utf8');
  await t.rejects(createCa(caDir), { code: 'CERTS_EXIST', message: /already exist: choose another --out directory, or add --force/ });
  const again = await createCa(caDir, { force: true });
  t.notOk(again.joinSecretCreated, 'a forced new CA keeps the join secret');
  t.equal(readFileSync(again.joinSecret, 'utf8'), secretBefore);
  await t.rejects(issueCertificate({ caDir, kind: 'node', name: 'gpu-17', outDir: dir }), { code: 'CONFIG_INVALID', message: /"gpu-17" is not a node id: node ids are "node-" and 12 hex digits/ });
  await t.rejects(issueCertificate({ caDir, kind: 'operator', name: '../x', outDir: dir }), { code: 'CONFIG_INVALID', message: /not an operator name/ });
  await t.rejects(issueCertificate({ caDir, kind: 'coordinator', name: 'a', hosts: ['bad host'], outDir: dir }), { message: /--host: "bad host" is not a host name/ });
  await t.rejects(issueCertificate({ caDir: path.join(dir, 'none'), kind: 'operator', name: 'bob', outDir: dir }), { code: 'TLS_INVALID', message: /cannot read the CA in .*none \(ENOENT\): it must hold ca.pem and ca-key.pem/ });
  const node = await issueCertificate({ caDir, kind: 'node', name: 'node-0123456789ab', outDir: path.join(dir, 'n') });
  await t.rejects(issueCertificate({ caDir, kind: 'node', name: 'node-0123456789ab', outDir: path.join(dir, 'n') }), { code: 'CERTS_EXIST' });
  t.ok(node.notAfter.getTime() > Date.now());
});

void t.test('identities come from exactly one stevedore URI', (t) => {
  t.same(identityFromSubjectAltName('URI:stevedore:node:node-0123456789ab'), { kind: 'node', name: 'node-0123456789ab' });
  t.same(identityFromSubjectAltName('DNS:x, URI:stevedore:operator:alice'), { kind: 'operator', name: 'alice' });
  t.equal(identityFromSubjectAltName(undefined), undefined);
  t.equal(identityFromSubjectAltName('DNS:node-0123456789ab'), undefined, 'a DNS name is no identity');
  t.equal(identityFromSubjectAltName('URI:stevedore:node:node-0123456789ab, URI:stevedore:operator:alice'), undefined, 'two identities: none');
  t.equal(identityFromSubjectAltName('URI:stevedore:admin:root'), undefined, 'an unknown kind');
  t.equal(identityFromSubjectAltName('URI:stevedore:node:not-a-node-id'), undefined, 'a malformed node id');
  t.end();
});
