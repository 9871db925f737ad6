// `stevedore status --agent`: what the agent on this host says about itself.
import { fetchAgentStatus } from '../../agent/local-api.ts';
import { formatTable, printJson } from '../output.ts';

export const DEFAULT_AGENT_SOCKET = '/run/stevedore/agent.sock';

export async function printAgentStatus(socket: string | true | undefined, json: boolean): Promise<void> {
  const socketPath = typeof socket === 'string' ? socket : (process.env.STEVEDORE_SOCKET ?? DEFAULT_AGENT_SOCKET);
  const s = await fetchAgentStatus(socketPath);
  if (json) {
    printJson(s);
    return;
  }
  const gpus = s.inventory?.gpus ?? [];
  const held = new Map<string, string>();
  for (const a of s.attempts) for (const g of a.gpuUuids) held.set(g, `${a.jobId}#${a.attempt}`);
  const lines = [
    `node ${s.nodeId} (${s.inventory?.hostname ?? '?'})  agent ${s.agentVersion}${s.draining ? '  DRAINING' : ''}`,
    `coordinator ${s.coordinator}: ${s.sessionState}${s.sessionId ? ` (session ${s.sessionId})` : ''}${s.lastError ? `  last error: ${s.lastError}` : ''}`,
    `events waiting for the coordinator: ${s.unackedEvents}`,
    `labels: ${Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(' ') || '(none)'}`,
    '',
    gpus.length === 0
      ? 'GPUs: none found'
      : formatTable(['GPU', 'UUID', 'NAME', 'MEMORY', 'JOB'], gpus.map((g) => [String(g.index), g.uuid, g.name, `${g.memoryMib} MiB`, held.get(g.uuid) ?? '-'])),
    '',
    s.attempts.length === 0
      ? 'jobs: none'
      : formatTable(['JOB', 'ATTEMPT', 'STATE', 'IMAGE', 'CONTAINER', 'LOG'], s.attempts.map((a) => [a.jobId, String(a.attempt), a.state.replace('ATTEMPT_STATE_', '').toLowerCase(), a.image || '?', a.containerId.slice(0, 12) || '-', a.logPath])),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}
