// Who is at the other end of a TLS connection. Every certificate that
// `stevedore certs` issues carries its holder's identity as one URI in its
// subject alternative names: stevedore:<kind>:<name>, where kind is node (name:
// the node id), operator (name: a person or a tool) or coordinator (name: its
// first host name). The common name repeats the name for people reading the
// certificate; only the URI counts. A certificate without exactly one such URI
// has no identity and is refused wherever an identity is required.
import { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { NODE_ID_RE } from '../agent/node-identity.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';

export const IDENTITY_KINDS = ['node', 'operator', 'coordinator'] as const;
export type IdentityKind = (typeof IDENTITY_KINDS)[number];

export interface PeerIdentity {
  kind: IdentityKind;
  /** The node id (node), the operator's name (operator) or the coordinator's first host name. */
  name: string;
}

/** Operator names: a person's or a tool's, such as alice or ci-deploy. */
export const OPERATOR_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;
/** Host names and IP addresses as they appear in a coordinator's certificate. */
const HOST_NAME_RE = /^[A-Za-z0-9*][A-Za-z0-9.:*-]{0,252}$/;

/** The URI that names `identity` in a certificate: stevedore:<kind>:<name>. */
export function identityUri(identity: PeerIdentity): string {
  return `stevedore:${identity.kind}:${identity.name}`;
}

/** "a node certificate (stevedore:node:...)", "an operator certificate (...)": for messages. */
export function describeIdentity(identity: PeerIdentity): string {
  return `${identity.kind === 'operator' ? 'an' : 'a'} ${identity.kind} certificate (${identityUri(identity)})`;
}

/** Checks a name for its kind of identity; the message says what a valid one looks like. */
export function checkIdentityName(kind: IdentityKind, name: string): string | undefined {
  switch (kind) {
    case 'node':
      return NODE_ID_RE.test(name) ? undefined : `${JSON.stringify(name)} is not a node id: node ids are "node-" and 12 hex digits, such as node-3f9a1c7e2b4d (leave the id out and one is made for you)`;
    case 'operator':
      return OPERATOR_NAME_RE.test(name) ? undefined : `${JSON.stringify(name)} is not an operator name: use 1-64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit`;
    case 'coordinator':
      return HOST_NAME_RE.test(name) ? undefined : `${JSON.stringify(name)} is not a host name or IP address`;
  }
}

const URI_RE = /(?:^|,\s*)URI:stevedore:([a-z]+):([^,\s]*)/g;

/**
 * The identity in a subject-alternative-name text as Node.js writes it
 * ("URI:stevedore:node:node-3f9a1c7e2b4d, DNS:example.com"); undefined when
 * there is none, more than one, or one of an unknown kind or malformed name.
 */
export function identityFromSubjectAltName(san: string | undefined): PeerIdentity | undefined {
  if (!san) return undefined;
  const found = [...san.matchAll(URI_RE)];
  if (found.length !== 1) return undefined;
  const [, kind, name] = found[0]!;
  if (!(IDENTITY_KINDS as readonly string[]).includes(kind!)) return undefined;
  const identity = { kind: kind as IdentityKind, name: name! };
  return checkIdentityName(identity.kind, identity.name) === undefined ? identity : undefined;
}

/** The identity in a PEM certificate (the first of a chain); undefined when it has none. */
export function identityFromPem(pem: string | Buffer): PeerIdentity | undefined {
  return identityFromSubjectAltName(new X509Certificate(pem).subjectAltName);
}

/** The identity of the peer certificate a TLS connection presented; undefined without one. */
export function identityFromPeerCertificate(cert: PeerCertificate | undefined | null): PeerIdentity | undefined {
  if (!cert || Object.keys(cert).length === 0) return undefined;
  return identityFromSubjectAltName(cert.subjectaltname);
}

/** What a gRPC server call tells about its peer's certificate (grpc-js getAuthContext). */
export interface CallWithAuth {
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } | null;
}

/** The identity of the client of a server call; undefined on plaintext or without a Stevedore identity. */
export function callerIdentity(call: CallWithAuth): PeerIdentity | undefined {
  return identityFromPeerCertificate(call.getAuthContext()?.sslPeerCertificate);
}

/**
 * The node id in a node certificate file (`stevedore certs node`). With TLS the
 * agent's node id is its certificate's: anything else is an error that names the fix.
 */
export function nodeIdFromCertificateFile(file: string, read: (file: string) => Buffer): string {
  let identity: PeerIdentity | undefined;
  try {
    identity = identityFromPem(read(file));
  } catch (err) {
    throw new StevedoreError('TLS_INVALID', `cannot read the node certificate ${file}: ${messageOf(err)}. Name the PEM file made by \`stevedore certs node\` in coordinator.tls.cert`, { cause: err });
  }
  if (identity?.kind !== 'node') {
    const what = identity ? describeIdentity(identity) : 'a certificate without a Stevedore identity';
    throw new StevedoreError('TLS_INVALID', `${file} is ${what}, not a node certificate: make one for this node with \`stevedore certs node NODE_ID --ca CA_DIR --out DIR\``);
  }
  return identity.name;
}
