// The coordinator's checks of who calls it, once TLS has proven that the
// caller's certificate chains to the CA: an agent session must come from a node
// certificate, carry that node's join token, and register as that node; a
// Control call must come from an operator certificate (a node's certificate
// must not cancel jobs or drain nodes). Refusals are logged at warn with the
// ids involved, never the token.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../util/logger.ts';
import { callerIdentity, identityUri, describeIdentity, type CallWithAuth, type PeerIdentity } from './identity.ts';
import { JOIN_TOKEN_METADATA_KEY, verifyJoinToken } from './join-token.ts';

export interface SessionAuthOptions {
  /** The join secret; undefined: the certificate alone admits a node. */
  joinSecret: Buffer | undefined;
}

export type SessionAdmission =
  | { ok: true; nodeId: string }
  | { ok: false; code: grpc.status; message: string; certificate: string; claimed?: string };

function describe(identity: PeerIdentity | undefined): string {
  return identity ? identityUri(identity) : 'none';
}

/** Checks a new session's certificate and join token; on success, the node id it may register as. */
export function admitSession(call: CallWithAuth & { metadata: grpc.Metadata }, auth: SessionAuthOptions): SessionAdmission {
  const identity = callerIdentity(call);
  if (identity?.kind !== 'node') {
    return {
      ok: false,
      code: grpc.status.PERMISSION_DENIED,
      certificate: describe(identity),
      message: `only node certificates may open an agent session, and this one is ${identity ? describeIdentity(identity) : 'without a Stevedore identity'}: give the agent its own certificate, made with \`stevedore certs node NODE_ID\``,
    };
  }
  if (auth.joinSecret) {
    const sent = call.metadata.get(JOIN_TOKEN_METADATA_KEY)[0];
    const check = verifyJoinToken(auth.joinSecret, typeof sent === 'string' ? sent : sent?.toString('utf8'));
    if (!check.ok) return { ok: false, code: grpc.status.UNAUTHENTICATED, certificate: describe(identity), message: check.reason };
    if (check.nodeId !== identity.name) {
      return {
        ok: false,
        code: grpc.status.PERMISSION_DENIED,
        certificate: describe(identity),
        claimed: check.nodeId,
        message: `the join token is node ${check.nodeId}'s but the certificate is node ${identity.name}'s: give each node its own token, \`stevedore certs token ${identity.name}\``,
      };
    }
  }
  return { ok: true, nodeId: identity.name };
}

/** The refusal of a registration under another node's id, or undefined when the ids agree. */
export function checkRegisteredNodeId(admitted: string, claimed: string): { code: grpc.status; message: string } | undefined {
  if (admitted === claimed) return undefined;
  return {
    code: grpc.status.PERMISSION_DENIED,
    message: `this agent's certificate is node ${admitted}'s, but it registered as node ${claimed}: a node may only register under the id in its certificate. Keep the agent's state directory and certificate together (its node-id file must hold ${admitted})`,
  };
}

type AnyHandler = (call: CallWithAuth & { emit?: (event: string, ...args: unknown[]) => boolean }, callback?: (err: Partial<grpc.StatusObject> | null) => void) => void;

/**
 * Wraps a service's handlers so that only callers with an operator certificate
 * reach them; any other caller gets PERMISSION_DENIED (a logged warning).
 */
export function requireOperator<T extends object>(handlers: T, logger: Logger): T {
  const out: Record<string, unknown> = {};
  for (const [method, handler] of Object.entries(handlers)) {
    if (typeof handler !== 'function') {
      out[method] = handler;
      continue;
    }
    const inner = handler as AnyHandler;
    const unary = inner.length >= 2;
    out[method] = (call: Parameters<AnyHandler>[0], callback?: Parameters<AnyHandler>[1]) => {
      const identity = callerIdentity(call);
      if (identity?.kind === 'operator') {
        inner(call, callback);
        return;
      }
      logger.warn({ method, certificate: describe(identity) }, 'Control call refused: not an operator certificate');
      const metadata = new grpc.Metadata();
      metadata.set('stevedore-error-code', 'PERMISSION_DENIED');
      const err: Partial<grpc.StatusObject> = {
        code: grpc.status.PERMISSION_DENIED,
        details: `the Control API takes operator certificates only, and this one is ${identity ? describeIdentity(identity) : 'without a Stevedore identity'}: make an operator certificate with \`stevedore certs operator NAME\``,
        metadata,
      };
      if (unary && callback) callback(err);
      else call.emit?.('error', err);
    };
  }
  return out as T;
}
