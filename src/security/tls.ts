// TLS material at run time: the coordinator's server credentials (client
// certificates required), the agent's and the operator CLI's channel
// credentials, and the rule that plaintext needs an explicit --insecure.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { StevedoreError, messageOf } from '../util/errors.ts';
import { identityFromPeerCertificate, describeIdentity } from './identity.ts';

export interface TlsFiles {
  /** CA bundle (PEM) the peer's certificate must chain to. */
  ca: string;
  /** This process's certificate (PEM). */
  cert: string;
  /** Its private key (PEM). */
  key: string;
}

export interface TlsMaterial {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

/** Reads the three PEM files; `fix` says where they are set, for the error. */
export function readTlsFiles(files: TlsFiles, fix: string): TlsMaterial {
  const read = (what: string, file: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? messageOf(err);
      throw new StevedoreError('TLS_INVALID', `cannot read the TLS ${what} ${file} (${code}): ${fix}; \`stevedore certs\` makes these files`, { cause: err });
    }
  };
  return { ca: read('CA bundle', files.ca), cert: read('certificate', files.cert), key: read('key', files.key) };
}

/** The coordinator's credentials: TLS, client certificates required and checked against the CA. */
export function serverCredentials(files: TlsFiles): grpc.ServerCredentials {
  const m = readTlsFiles(files, 'check --tls-ca, --tls-cert and --tls-key');
  try {
    return grpc.ServerCredentials.createSsl(m.ca, [{ cert_chain: m.cert, private_key: m.key }], true);
  } catch (err) {
    throw new StevedoreError('TLS_INVALID', `the coordinator's TLS files are not usable (${messageOf(err)}): --tls-cert and --tls-key must be a matching PEM certificate and key, --tls-ca a PEM CA bundle`, { cause: err });
  }
}

/**
 * Checks the coordinator's certificate beyond the CA (which TLS checks): its
 * names must match the address dialed, and it must be a coordinator's, so that
 * a node or an operator certificate from the same CA cannot pose as one.
 */
export function checkCoordinatorIdentity(host: string, cert: PeerCertificate): Error | undefined {
  const byName = checkServerIdentity(host, cert);
  if (byName) return byName;
  const identity = identityFromPeerCertificate(cert);
  if (identity?.kind !== 'coordinator') {
    return new Error(`the server's certificate is ${identity ? describeIdentity(identity) : 'not a Stevedore coordinator certificate'}: it must be made with \`stevedore certs coordinator\``);
  }
  return undefined;
}

export interface ClientTls extends TlsFiles {
  /** The name to expect in the coordinator's certificate when it differs from the host dialed. */
  serverName?: string | undefined;
}

/** Channel credentials and options for a client (agent or operator) of a TLS coordinator. */
export function clientCredentials(tls: ClientTls, fix: string): { credentials: grpc.ChannelCredentials; options: grpc.ChannelOptions } {
  const m = readTlsFiles(tls, fix);
  let credentials: grpc.ChannelCredentials;
  try {
    credentials = grpc.credentials.createSsl(m.ca, m.key, m.cert, { checkServerIdentity: checkCoordinatorIdentity });
  } catch (err) {
    throw new StevedoreError('TLS_INVALID', `the TLS files are not usable (${messageOf(err)}): ${fix}`, { cause: err });
  }
  const options: grpc.ChannelOptions = tls.serverName ? { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName } : {};
  return { credentials, options };
}

/** Environment variable naming the operator's TLS directory (operator.pem, operator-key.pem, ca.pem). */
export const OPERATOR_TLS_DIR_ENV = 'STEVEDORE_TLS_DIR';
/** Environment variable that lets the CLI dial a plaintext coordinator on purpose. */
export const INSECURE_ENV = 'STEVEDORE_INSECURE';

/** Where `stevedore certs operator` puts the operator's files by default: $XDG_CONFIG_HOME/stevedore/tls or ~/.config/stevedore/tls. */
export function defaultOperatorTlsDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'stevedore', 'tls');
}

/**
 * The operator's TLS files: those in $STEVEDORE_TLS_DIR (which must hold them),
 * else those in the default directory when it holds them; undefined when
 * neither applies or STEVEDORE_INSECURE=1 asks for plaintext.
 */
export function operatorTlsFiles(env: NodeJS.ProcessEnv = process.env): TlsFiles | undefined {
  if (env[INSECURE_ENV] === '1' || env[INSECURE_ENV] === 'true') return undefined;
  const named = env[OPERATOR_TLS_DIR_ENV];
  const dir = named || defaultOperatorTlsDir(env);
  const files = { ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'operator.pem'), key: path.join(dir, 'operator-key.pem') };
  if (!named && !fs.existsSync(files.cert)) return undefined;
  return files;
}

/** The warning every plaintext start logs. */
export const INSECURE_WARNING = 'plaintext session without TLS (--insecure): anyone on the network can read and forge commands and events; use it on a trusted loopback only, and `stevedore certs` for anything else';
