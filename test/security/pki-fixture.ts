// Certificates for access tests, made by Stevedore's own `certs` code in a temp
// directory: a CA with its coordinator, two nodes and an operator, and a second,
// foreign CA with a node, an operator and a coordinator of its own. The join
// secret is the canary, so that the run's log scan catches it anywhere.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { createCa, issueCertificate } from '../../src/security/certs.ts';
import { issueJoinToken } from '../../src/security/join-token.ts';
import type { TlsFiles } from '../../src/security/tls.ts';
import { CANARY_JOIN_TOKEN } from '../helpers/secrets.ts';

export interface Pki {
  caDir: string;
  joinSecretFile: string;
  coordinator: TlsFiles;
  nodeA: TlsFiles & { nodeId: string; token: string };
  nodeB: TlsFiles & { nodeId: string; token: string };
  operator: TlsFiles;
  foreign: { coordinator: TlsFiles; node: TlsFiles & { nodeId: string; token: string }; operator: TlsFiles; tokenFromOtherSecret: string };
}

const newNodeId = (): string => `node-${randomBytes(6).toString('hex')}`;

export async function makePki(dir: string): Promise<Pki> {
  const caDir = path.join(dir, 'ca');
  const ca = await createCa(caDir);
  writeFileSync(ca.joinSecret, `${CANARY_JOIN_TOKEN}\n`, { mode: 0o600 });
  const secret = Buffer.from(CANARY_JOIN_TOKEN);
  const leaf = async (kind: 'coordinator' | 'node' | 'operator', name: string, from: string, out: string): Promise<TlsFiles> => {
    const issued = await issueCertificate({ caDir: from, kind, name, outDir: path.join(dir, out), ...(kind === 'coordinator' && { hosts: ['localhost', '127.0.0.1'] }) });
    return { ca: issued.ca, cert: issued.cert, key: issued.key };
  };
  const node = async (from: string, out: string, tokenSecret: Buffer): Promise<TlsFiles & { nodeId: string; token: string }> => {
    const nodeId = newNodeId();
    return { ...(await leaf('node', nodeId, from, out)), nodeId, token: issueJoinToken(tokenSecret, nodeId) };
  };
  const foreignDir = path.join(dir, 'foreign-ca');
  await createCa(foreignDir, { name: 'Someone else CA' });
  const otherSecret = randomBytes(32);
  const nodeA = await node(caDir, 'node-a', secret);
  return {
    caDir,
    joinSecretFile: ca.joinSecret,
    coordinator: await leaf('coordinator', 'localhost', caDir, 'coordinator'),
    nodeA,
    nodeB: await node(caDir, 'node-b', secret),
    operator: await leaf('operator', 'alice', caDir, 'operator'),
    foreign: {
      coordinator: await leaf('coordinator', 'localhost', foreignDir, 'foreign-coordinator'),
      node: await node(foreignDir, 'foreign-node', secret),
      operator: await leaf('operator', 'mallory', foreignDir, 'foreign-operator'),
      tokenFromOtherSecret: issueJoinToken(otherSecret, nodeA.nodeId),
    },
  };
}
