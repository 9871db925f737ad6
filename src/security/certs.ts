// A development certificate authority and the certificates Stevedore's
// processes present to each other (`stevedore certs`): ECDSA P-256 keys,
// SHA-256 signatures, the CA valid 10 years, every other certificate 1 year.
// Each leaf names its holder in a URI SAN (src/security/identity.ts):
// coordinators get serverAuth and their host names and addresses as DNS and IP
// SANs; nodes and operators get clientAuth only, so that neither can serve as a
// coordinator and a node certificate cannot act as an operator's.
// X.509 encoding is @peculiar/x509's over Node.js webcrypto; it needs the
// reflect-metadata polyfill, loaded here only (the agent and the coordinator
// never load this module).
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto, X509Certificate, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { StevedoreError, messageOf } from '../util/errors.ts';
import { createFileAtomic, writeFileAtomic } from '../util/atomic-file.ts';
import { checkIdentityName, identityUri, type IdentityKind } from './identity.ts';
import { newJoinSecret } from './join-token.ts';

type WebCryptoKey = webcrypto.CryptoKey;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
export const CA_VALIDITY_DAYS = 3650;
export const LEAF_VALIDITY_DAYS = 365;

/** File names in a CA directory (`certs ca --out DIR`). */
export const CA_FILES = { cert: 'ca.pem', key: 'ca-key.pem', joinSecret: 'join-secret' } as const;

/** File names of an issued certificate in its output directory: <kind>.pem, <kind>-key.pem, and ca.pem beside them. */
export function leafFiles(outDir: string, kind: IdentityKind): { cert: string; key: string; ca: string } {
  return { cert: path.join(outDir, `${kind}.pem`), key: path.join(outDir, `${kind}-key.pem`), ca: path.join(outDir, CA_FILES.cert) };
}

export interface WriteOptions {
  /** Replace files that exist; default false (an existing file is an error). */
  force?: boolean;
  /** The start of validity; default now. */
  now?: Date;
  /** Days of validity; default 3650 for a CA, 365 for the rest. */
  validityDays?: number;
}

export interface CaResult {
  cert: string;
  key: string;
  /** The join secret file: created with the CA unless one is there (kept, even with force). */
  joinSecret: string;
  /** False when an existing join secret was kept. */
  joinSecretCreated: boolean;
}

export interface IssueOptions extends WriteOptions {
  /** The directory of `certs ca`. */
  caDir: string;
  kind: IdentityKind;
  /** Node id, operator name, or (coordinator) the first host. */
  name: string;
  /** Coordinator only: every host name and IP address agents and operators dial it by. */
  hosts?: string[];
  outDir: string;
}

export interface IssuedCertificate {
  cert: string;
  key: string;
  ca: string;
  uri: string;
  notAfter: Date;
}

function pemKey(pkcs8: ArrayBuffer): string {
  return x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
}

function serial(): string {
  // Positive, 16 bytes: unique without bookkeeping.
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f | 0x01;
  return bytes.toString('hex');
}

function validity(opts: WriteOptions, defaultDays: number): { notBefore: Date; notAfter: Date } {
  const days = opts.validityDays ?? defaultDays;
  if (!Number.isInteger(days) || days < 1 || days > 36_500) throw new StevedoreError('CONFIG_INVALID', `validity must be a whole number of days from 1 to 36500, not ${days}`);
  const now = opts.now ?? new Date();
  // A minute of slack for clocks that run a little behind.
  return { notBefore: new Date(now.getTime() - 60_000), notAfter: new Date(now.getTime() + days * DAY_MS) };
}

function ensureDir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new StevedoreError('CONFIG_INVALID', `cannot create the directory ${dir}: ${messageOf(err)}`, { cause: err });
  }
}

function refuseExisting(files: string[], force: boolean | undefined): void {
  if (force) return;
  const existing = files.filter((f) => fs.existsSync(f));
  if (existing.length > 0) {
    throw new StevedoreError('CERTS_EXIST', `${existing.join(' and ')} already exist${existing.length === 1 ? 's' : ''}: choose another --out directory, or add --force to replace ${existing.length === 1 ? 'it' : 'them'} (what was signed with a replaced CA stops working)`);
  }
}

function write(file: string, text: string, mode: number): void {
  try {
    writeFileAtomic(file, text, mode);
    fs.chmodSync(file, mode);
  } catch (err) {
    throw new StevedoreError('CONFIG_INVALID', `cannot write ${file}: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * A development CA in `outDir`: ca.pem (0644), ca-key.pem (0600) and, unless
 * one is there, a new join secret (0600) for the coordinator's --join-secret.
 */
export async function createCa(outDir: string, opts: WriteOptions & { name?: string } = {}): Promise<CaResult> {
  const files = { cert: path.join(outDir, CA_FILES.cert), key: path.join(outDir, CA_FILES.key), joinSecret: path.join(outDir, CA_FILES.joinSecret) };
  refuseExisting([files.cert, files.key], opts.force);
  ensureDir(outDir);
  const name = opts.name ?? 'Stevedore development CA';
  if (!/^[\w .@-]{1,64}$/.test(name)) throw new StevedoreError('CONFIG_INVALID', `CA name ${JSON.stringify(name)}: use up to 64 letters, digits, spaces, ".", "@" or "-"`);
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: `CN=${name}, O=Stevedore`,
    keys,
    signingAlgorithm: ALGORITHM,
    ...validity(opts, CA_VALIDITY_DAYS),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  write(files.key, pemKey(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 0o600);
  write(files.cert, cert.toString('pem'), 0o644);
  let joinSecretCreated: boolean;
  try {
    joinSecretCreated = createFileAtomic(files.joinSecret, `${newJoinSecret()}\n`, 0o600);
  } catch (err) {
    throw new StevedoreError('CONFIG_INVALID', `cannot write ${files.joinSecret}: ${messageOf(err)}`, { cause: err });
  }
  return { ...files, joinSecretCreated };
}

interface LoadedCa {
  cert: x509.X509Certificate;
  pem: string;
  key: WebCryptoKey;
}

async function loadCa(caDir: string): Promise<LoadedCa> {
  const certFile = path.join(caDir, CA_FILES.cert);
  const keyFile = path.join(caDir, CA_FILES.key);
  let pem: string;
  let keyPem: string;
  try {
    pem = fs.readFileSync(certFile, 'utf8');
    keyPem = fs.readFileSync(keyFile, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? messageOf(err);
    throw new StevedoreError('TLS_INVALID', `cannot read the CA in ${caDir} (${code}): it must hold ${CA_FILES.cert} and ${CA_FILES.key}, as \`stevedore certs ca --out ${caDir}\` makes them`, { cause: err });
  }
  try {
    const cert = new x509.X509Certificate(pem);
    const key = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), ALGORITHM, false, ['sign']);
    return { cert, pem, key };
  } catch (err) {
    throw new StevedoreError('TLS_INVALID', `the CA in ${caDir} is not usable (${messageOf(err)}): ${CA_FILES.cert} and ${CA_FILES.key} must be the ECDSA P-256 pair that \`stevedore certs ca\` makes`, { cause: err });
  }
}

/** Splits coordinator hosts into DNS names and IP addresses, each checked. */
function hostNames(hosts: string[]): x509.JsonGeneralName[] {
  if (hosts.length === 0) throw new StevedoreError('CONFIG_INVALID', 'a coordinator certificate needs at least one host name or IP address (--host), the ones agents and operators dial');
  return hosts.map((host) => {
    const problem = checkIdentityName('coordinator', host);
    if (problem) throw new StevedoreError('CONFIG_INVALID', `--host: ${problem}; write for example --host coordinator.example.com,10.0.0.5`);
    return net.isIP(host) ? { type: 'ip' as const, value: host } : { type: 'dns' as const, value: host };
  });
}

/** Issues a coordinator, node or operator certificate signed by the CA in `caDir`; the key is written 0600. */
export async function issueCertificate(opts: IssueOptions): Promise<IssuedCertificate> {
  const problem = checkIdentityName(opts.kind, opts.name);
  if (problem) throw new StevedoreError('CONFIG_INVALID', problem);
  const sanHosts = opts.kind === 'coordinator' ? hostNames(opts.hosts ?? [opts.name]) : [];
  const files = leafFiles(opts.outDir, opts.kind);
  refuseExisting([files.cert, files.key], opts.force);
  const ca = await loadCa(opts.caDir);
  ensureDir(opts.outDir);
  const uri = identityUri({ kind: opts.kind, name: opts.name });
  const keys = await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const { notBefore, notAfter: wanted } = validity(opts, LEAF_VALIDITY_DAYS);
  // A certificate cannot outlive its CA.
  const notAfter = wanted > ca.cert.notAfter ? ca.cert.notAfter : wanted;
  const server = opts.kind === 'coordinator';
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${opts.name}, O=Stevedore, OU=${opts.kind}`,
    issuer: ca.cert.subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    signingAlgorithm: ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([server ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
      new x509.SubjectAlternativeNameExtension([...sanHosts, { type: 'url', value: uri }], false),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false),
    ],
  });
  write(files.key, pemKey(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)), 0o600);
  write(files.cert, cert.toString('pem'), 0o644);
  if (path.resolve(files.ca) !== path.resolve(opts.caDir, CA_FILES.cert)) write(files.ca, ca.pem, 0o644);
  return { ...files, uri, notAfter };
}

/** Whether `certPem` was signed by the CA in `caPem` (Node.js's own check). */
export function signedBy(certPem: string, caPem: string): boolean {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  return cert.checkIssued(ca) && cert.verify(ca.publicKey);
}
