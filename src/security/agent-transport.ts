// How `stevedore agent` reaches its coordinator: TLS with its node certificate
// and join token (its node id is the certificate's), or plaintext only when
// the configuration says insecure, with a warning at every start.
import fs from 'node:fs';
import type { AgentConfig } from '../agent/agent-config.ts';
import { adoptNodeId } from '../agent/node-identity.ts';
import { StevedoreError } from '../util/errors.ts';
import type { Logger } from '../util/logger.ts';
import { nodeIdFromCertificateFile } from './identity.ts';
import { INSECURE_WARNING } from './tls.ts';

/**
 * Checks the agent's transport before it starts. With TLS: the certificate must
 * be a node certificate, a join token must be set, and the state directory's
 * node id must be the certificate's (written on a first start). Returns that
 * node id, or undefined on plaintext (which needs coordinator.insecure).
 */
export function prepareAgentTransport(config: Pick<AgentConfig, 'coordinator' | 'stateDir'>, logger: Logger): string | undefined {
  const tls = config.coordinator.tls;
  if (!tls) {
    if (!config.coordinator.insecure) {
      throw new StevedoreError(
        'INSECURE_NOT_ALLOWED',
        'the agent needs TLS to reach its coordinator: set coordinator.tls {ca, cert, key} and coordinator.joinTokenFile in agent.yaml (make them with `stevedore certs node NODE_ID` and `stevedore certs token NODE_ID`), or set coordinator.insecure: true (or --insecure) for plaintext on a trusted loopback',
      );
    }
    logger.warn({ coordinator: config.coordinator.address }, INSECURE_WARNING);
    return undefined;
  }
  const nodeId = nodeIdFromCertificateFile(tls.cert, (file) => fs.readFileSync(file));
  if (!tls.joinToken) {
    throw new StevedoreError(
      'JOIN_TOKEN_INVALID',
      `the agent has a certificate but no join token: set coordinator.joinTokenFile (or coordinator.joinToken, or STEVEDORE_JOIN_TOKEN) to the token of ${nodeId}, made with \`stevedore certs token ${nodeId} --ca CA_DIR\``,
    );
  }
  adoptNodeId(config.stateDir, nodeId, tls.cert);
  return nodeId;
}
