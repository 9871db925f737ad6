// Join tokens: a second proof, besides its certificate, that a node may join.
// A token is `sdj1.<nodeId>.<mac>`, mac = base64url(HMAC-SHA256(join secret,
// "stevedore-join-v1:" + nodeId)). The coordinator holds only the secret (a
// file, --join-secret) and recomputes the mac, so it stores no token; the
// comparison takes constant time. Rotating the secret revokes every token at
// once (docs/operations.md, "Certificates and join tokens").
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import { NODE_ID_RE } from '../agent/node-identity.ts';
import { StevedoreError, messageOf } from '../util/errors.ts';

/** The gRPC call metadata key that carries the token on the session stream. */
export const JOIN_TOKEN_METADATA_KEY = 'stevedore-join-token';
/** The environment variable an agent may take its token from. */
export const JOIN_TOKEN_ENV = 'STEVEDORE_JOIN_TOKEN';
/** A join secret shorter than this (in bytes) is refused: it could be guessed. */
export const MIN_JOIN_SECRET_BYTES = 32;

const PREFIX = 'sdj1';
const TOKEN_RE = /^sdj1\.([^.]+)\.([A-Za-z0-9_-]{43})$/;

/** A new join secret as the text of its file: 32 random bytes, base64url. */
export function newJoinSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** Checks a join secret's text; the secret is the text itself, trimmed. */
export function parseJoinSecret(text: string, source: string): Buffer {
  const secret = Buffer.from(text.trim(), 'utf8');
  if (secret.length < MIN_JOIN_SECRET_BYTES) {
    throw new StevedoreError('JOIN_TOKEN_INVALID', `the join secret in ${source} is ${secret.length} bytes long; it must be at least ${MIN_JOIN_SECRET_BYTES}: make one with \`stevedore certs ca\` (or \`stevedore certs token --new-secret\`)`);
  }
  return secret;
}

/** Reads the join secret file (--join-secret). Its value never reaches a message. */
export function readJoinSecret(file: string): Buffer {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? messageOf(err);
    throw new StevedoreError('CONFIG_UNREADABLE', `cannot read the join secret ${file} (${code}): check the path given to --join-secret, or make one with \`stevedore certs ca --out DIR\``, { cause: err });
  }
  return parseJoinSecret(text, file);
}

function mac(secret: Buffer, nodeId: string): Buffer {
  return createHmac('sha256', secret).update(`stevedore-join-v1:${nodeId}`).digest();
}

/** The join token of `nodeId` under `secret`. */
export function issueJoinToken(secret: Buffer, nodeId: string): string {
  if (!NODE_ID_RE.test(nodeId)) {
    throw new StevedoreError('JOIN_TOKEN_INVALID', `${JSON.stringify(nodeId)} is not a node id: node ids are "node-" and 12 hex digits, as in the node's certificate`);
  }
  return `${PREFIX}.${nodeId}.${mac(secret, nodeId).toString('base64url')}`;
}

export type JoinTokenCheck = { ok: true; nodeId: string } | { ok: false; reason: string };

/**
 * Checks a token against the secret. The reason of a refusal names the node id
 * the token claims, never the token. The mac is compared in constant time.
 */
export function verifyJoinToken(secret: Buffer, token: string | undefined): JoinTokenCheck {
  if (token === undefined || token === '') {
    return { ok: false, reason: 'no join token was sent: give the agent its token (coordinator.joinToken or coordinator.joinTokenFile in agent.yaml, or STEVEDORE_JOIN_TOKEN), made with `stevedore certs token NODE_ID`' };
  }
  const m = TOKEN_RE.exec(token);
  if (!m || !NODE_ID_RE.test(m[1]!)) {
    return { ok: false, reason: 'the join token is malformed (expected sdj1.<node id>.<43 characters>): copy it again from `stevedore certs token NODE_ID`' };
  }
  const nodeId = m[1]!;
  const given = Buffer.from(m[2]!, 'base64url');
  const expected = mac(secret, nodeId);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, reason: `the join token for node ${nodeId} is not valid for this coordinator (made with another join secret, or revoked by a new one): make a new one with \`stevedore certs token ${nodeId}\`` };
  }
  return { ok: true, nodeId };
}
