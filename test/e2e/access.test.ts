// Access control end to end, over real gRPC with TLS on loopback: who may open
// an agent session, who may call the Control API, and whom an agent accepts
// as its coordinator. Certificates come from Stevedore's own `certs` code.
import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Coordinator } from '../../src/coordinator/coordinator.ts';
import { ControlClient } from '../../src/client/control-client.ts';
import { CoordinatorSession } from '../../src/agent/coordinator-session.ts';
import { EventJournal } from '../../src/agent/event-journal.ts';
import { v1, PROTOCOL_VERSION, type AgentMessage, type CoordinatorMessage__Output } from '../../src/proto/load.ts';
import { JOIN_TOKEN_METADATA_KEY } from '../../src/security/join-token.ts';
import { serverCredentials, type TlsFiles } from '../../src/security/tls.ts';
import { systemClock } from '../../src/util/clock.ts';
import { FakeCoordinator } from '../helpers/fake-coordinator.ts';
import { testLog } from '../helpers/test-log.ts';
import { runCli } from '../client/run-cli.ts';
import { makePki, type Pki } from '../security/pki-fixture.ts';

interface Outcome {
  registered: boolean;
  code?: grpc.status;
  details?: string;
}

/** Opens an agent session as the given identity and registers as `nodeId`; what the coordinator answered. */
async function trySession(address: string, opts: { tls?: Partial<TlsFiles> & { ca: string }; plaintext?: boolean; token?: string; nodeId: string }): Promise<Outcome> {
  const read = (f: string | undefined): Buffer | null => (f ? readFileSync(f) : null);
  const creds = opts.plaintext || !opts.tls ? grpc.credentials.createInsecure() : grpc.credentials.createSsl(readFileSync(opts.tls.ca), read(opts.tls.key), read(opts.tls.cert));
  const client = new v1.AgentSession(address, creds);
  const metadata = new grpc.Metadata();
  if (opts.token !== undefined) metadata.set(JOIN_TOKEN_METADATA_KEY, opts.token);
  const call = client.connect(metadata);
  try {
    return await new Promise<Outcome>((resolve) => {
      const timer = setTimeout(() => resolve({ registered: false, details: 'no answer in 5 s' }), 5000);
      call.on('data', (m: CoordinatorMessage__Output) => {
        if (m.msg === 'registered') {
          clearTimeout(timer);
          resolve({ registered: true });
        }
      });
      call.on('error', (err: grpc.ServiceError) => {
        clearTimeout(timer);
        resolve({ registered: false, code: err.code, details: err.details });
      });
      const register: AgentMessage = { register: { nodeId: opts.nodeId, agentVersion: 'test', protocolVersion: PROTOCOL_VERSION, labels: {}, attempts: [], lastEventId: 0 } };
      call.write(register);
    });
  } finally {
    call.cancel();
    client.close();
  }
}

const dir = t.testdir();
let pki: Pki;
let coordinator: Coordinator;
let address = '';
const coordLog = testLog('access-coordinator', { level: 'debug', loggerName: 'stevedore-coordinator' });

t.before(async () => {
  pki = await makePki(dir);
  coordinator = new Coordinator({
    listen: '127.0.0.1:0',
    dbPath: path.join(dir, 'coordinator.db'),
    logger: coordLog.logger,
    tls: { ...pki.coordinator, joinSecret: pki.joinSecretFile },
  });
  address = (await coordinator.start()).address;
});
t.teardown(() => coordinator.close());

/** Counts for docs/RELIABILITY.md: every refused attempt of each kind. */
const tally = new Map<string, { tried: number; refused: number }>();
function count(kind: string, refused: boolean): void {
  const row = tally.get(kind) ?? { tried: 0, refused: 0 };
  row.tried++;
  if (refused) row.refused++;
  tally.set(kind, row);
}

void t.test('an agent session needs a node certificate from the CA, its own join token, and its own node id', async (t) => {
  const { nodeA, nodeB, operator, foreign } = pki;
  const cases: { name: string; kind: string; attempt: Parameters<typeof trySession>[1]; code?: grpc.status; details?: RegExp }[] = [
    { name: 'plaintext', kind: 'no certificate', attempt: { plaintext: true, token: nodeA.token, nodeId: nodeA.nodeId } },
    { name: 'TLS without a client certificate', kind: 'no certificate', attempt: { tls: { ca: nodeA.ca }, token: nodeA.token, nodeId: nodeA.nodeId } },
    { name: 'a certificate from another CA', kind: 'certificate from another CA', attempt: { tls: { ...foreign.node, ca: nodeA.ca }, token: foreign.node.token, nodeId: foreign.node.nodeId } },
    { name: 'no join token', kind: 'wrong or missing join token', attempt: { tls: nodeA, nodeId: nodeA.nodeId }, code: grpc.status.UNAUTHENTICATED, details: /no join token was sent/ },
    { name: 'a token made with another secret', kind: 'wrong or missing join token', attempt: { tls: nodeA, token: foreign.tokenFromOtherSecret, nodeId: nodeA.nodeId }, code: grpc.status.UNAUTHENTICATED, details: /not valid for this coordinator/ },
    { name: 'a malformed token', kind: 'wrong or missing join token', attempt: { tls: nodeA, token: 'sdj1.garbage', nodeId: nodeA.nodeId }, code: grpc.status.UNAUTHENTICATED, details: /malformed/ },
    { name: 'a forged token (last character changed)', kind: 'wrong or missing join token', attempt: { tls: nodeA, token: `${nodeA.token.slice(0, -1)}${nodeA.token.endsWith('A') ? 'B' : 'A'}`, nodeId: nodeA.nodeId }, code: grpc.status.UNAUTHENTICATED },
    { name: "node A's certificate registering as node B", kind: 'impersonation', attempt: { tls: nodeA, token: nodeA.token, nodeId: nodeB.nodeId }, code: grpc.status.PERMISSION_DENIED, details: new RegExp(`certificate is node ${nodeA.nodeId}'s, but it registered as node ${nodeB.nodeId}`) },
    { name: "node B's certificate with node A's token", kind: 'impersonation', attempt: { tls: nodeB, token: nodeA.token, nodeId: nodeA.nodeId }, code: grpc.status.PERMISSION_DENIED, details: /join token is node .*'s but the certificate is node/ },
    { name: "node B's certificate and token registering as node A", kind: 'impersonation', attempt: { tls: nodeB, token: nodeB.token, nodeId: nodeA.nodeId }, code: grpc.status.PERMISSION_DENIED },
    { name: 'an operator certificate', kind: 'impersonation', attempt: { tls: operator, token: nodeA.token, nodeId: nodeA.nodeId }, code: grpc.status.PERMISSION_DENIED, details: /only node certificates may open an agent session/ },
  ];
  for (const c of cases) {
    const out = await trySession(address, c.attempt);
    count(c.kind, !out.registered);
    t.notOk(out.registered, `${c.name}: not registered`);
    if (c.code !== undefined) t.equal(out.code, c.code, `${c.name}: ${grpc.status[c.code]}`);
    else t.ok(out.code === grpc.status.UNAVAILABLE || out.code === grpc.status.UNAUTHENTICATED, `${c.name}: refused at the TLS handshake (${out.code === undefined ? 'none' : grpc.status[out.code]}: ${out.details})`);
    if (c.details) t.match(out.details, c.details, `${c.name}: the message says why`);
  }
  const nodes = await withOperator((client) => client.listNodes());
  t.same(nodes.map((n) => n.nodeId), [], 'no node got in');

  const ok = await trySession(address, { tls: nodeA, token: nodeA.token, nodeId: nodeA.nodeId });
  t.ok(ok.registered, 'the right certificate, token and node id register');
  const refusals = coordLog.lines().filter((l) => typeof l.msg === 'string' && /refused/.test(l.msg));
  t.ok(refusals.some((l) => l.claimedNodeId === nodeB.nodeId && l.certificateNodeId === nodeA.nodeId), 'the impersonation attempt is logged with both ids');
  t.ok(refusals.some((l) => l.certificate === `stevedore:operator:alice`), 'a refusal names the certificate presented');
});

/** Runs fn with a Control client holding `tls` (default: the operator's; null: plaintext). */
async function withOperator<T>(fn: (client: ControlClient) => Promise<T>, tls: TlsFiles | null = pki.operator): Promise<T> {
  const client = new ControlClient({ address, retries: 0, deadlineMs: 5000, ...(tls && { tls }) });
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

void t.test('the Control API takes operator certificates from the CA only', async (t) => {
  const attempts: { name: string; tls: TlsFiles | null; code: RegExp }[] = [
    { name: 'no certificate (plaintext)', tls: null, code: /COORDINATOR_UNREACHABLE/ },
    { name: 'a node certificate', tls: pki.nodeA, code: /PERMISSION_DENIED/ },
    { name: 'an operator certificate from another CA', tls: { ...pki.foreign.operator, ca: pki.operator.ca }, code: /COORDINATOR_UNREACHABLE/ },
  ];
  for (const a of attempts) {
    const err = await withOperator((c) => c.listJobs(), a.tls).then(() => undefined, (e: unknown) => e as { code?: string; message?: string });
    count(a.name === 'a node certificate' ? 'node certificate on the Control API' : 'operator without a valid certificate', err !== undefined);
    t.ok(err, `${a.name}: refused`);
    t.match(String(err?.code), a.code, `${a.name}: ${String(err?.code)}`);
  }
  const denied = await withOperator((c) => c.cancelJob('job-1'), pki.nodeA).then(() => undefined, (e: unknown) => e as Error);
  count('node certificate on the Control API', denied !== undefined);
  t.match(denied?.message, /operator certificates only, and this one is a node certificate \(stevedore:node:node-/, 'a node cannot cancel jobs, and is told why');
  t.same(await withOperator((c) => c.listJobs()), [], 'an operator certificate works');
});

void t.test('an agent refuses a coordinator that its CA did not sign, or that is not a coordinator', async (t) => {
  const rogues: { name: string; server: TlsFiles }[] = [
    { name: 'a coordinator certificate from another CA', server: pki.foreign.coordinator },
    { name: "a node's certificate from the right CA", server: { ...pki.nodeB, ca: pki.coordinator.ca } },
  ];
  for (const rogue of rogues) {
    const fake = new FakeCoordinator();
    await fake.start(0, serverCredentials(rogue.server));
    const journal = EventJournal.open(t.testdir());
    const session = new CoordinatorSession({
      address: fake.address,
      tls: { ...pki.nodeA, joinToken: pki.nodeA.token },
      journal,
      clock: systemClock,
      logger: testLog(`access-agent-${rogue.name}`).logger,
      reconnect: { initialMs: 50, maxMs: 200 },
      buildRegister: () => Promise.resolve({ nodeId: pki.nodeA.nodeId, agentVersion: 'test', protocolVersion: PROTOCOL_VERSION, labels: {}, attempts: [], lastEventId: 0 }),
      onCommand: () => {
        t.fail('a command reached the agent');
        return Promise.resolve({ accepted: false });
      },
      onEventsAcked: () => undefined,
      runningAttempts: () => 0,
    });
    session.start();
    await new Promise((r) => setTimeout(r, 1500));
    count('coordinator the agent must not trust', fake.registrations === 0 && session.state !== 'connected');
    t.equal(fake.registrations, 0, `${rogue.name}: the agent never registered, so no command can reach it`);
    t.equal(fake.received.length, 0, `${rogue.name}: the agent sent nothing at all`);
    t.not(session.state, 'connected', `${rogue.name}: the session is not connected (${session.lastError})`);
    session.close();
    await fake.close();
  }
});

void t.test('plaintext needs --insecure, which warns', async (t) => {
  const coord = await runCli(['coordinator', '--listen', '127.0.0.1:0', '--db', path.join(t.testdir(), 'c.db'), '--metrics-listen', 'off']);
  count('plaintext start without --insecure', coord.code !== 0);
  t.equal(coord.code, 1, 'the coordinator refuses to start without TLS');
  t.match(coord.stderr, /needs TLS: give --tls-ca, --tls-cert, --tls-key and --join-secret .*stevedore certs ca.*or add --insecure.*\[INSECURE_NOT_ALLOWED\]/);
  const noSecret = await runCli(['coordinator', '--listen', '127.0.0.1:0', '--db', path.join(t.testdir(), 'd.db'), '--metrics-listen', 'off', '--tls-ca', pki.coordinator.ca, '--tls-cert', pki.coordinator.cert, '--tls-key', pki.coordinator.key]);
  t.match(noSecret.stderr, /needs --join-secret FILE/, 'TLS without a join secret is refused too');

  const agentDir = t.testdir({ 'agent.yaml': 'preemption: { cloud: none }\n' });
  const agent = await runCli(['agent', '--config', path.join(agentDir, 'agent.yaml'), '--state-dir', path.join(agentDir, 'state'), '--metrics-listen', 'off'], { STEVEDORE_COORDINATOR: address });
  count('plaintext start without --insecure', agent.code !== 0);
  t.equal(agent.code, 1, 'the agent refuses to start without TLS');
  t.match(agent.stderr, /needs TLS to reach its coordinator.*coordinator\.insecure: true \(or --insecure\).*\[INSECURE_NOT_ALLOWED\]/);

  const log = testLog('access-insecure-coordinator');
  const insecure = await runCliUntil(['coordinator', '--insecure', '--listen', '127.0.0.1:0', '--db', path.join(t.testdir(), 'e.db'), '--metrics-listen', 'off'], /coordinator started/, log.file);
  t.match(insecure, /"level":40.*plaintext session without TLS \(--insecure\)/, 'with --insecure it starts, and warns');
});

/** Runs the CLI until its output matches, then stops it; its output is kept in `logFile` for the secret scan. */
async function runCliUntil(args: string[], until: RegExp, logFile: string): Promise<string> {
  const { startCli } = await import('../client/run-cli.ts');
  const cli = startCli(args);
  let err = '';
  cli.child.stderr?.on('data', (d: Buffer) => { err += d.toString(); });
  const deadline = Date.now() + 10_000;
  while (!until.test(err) && Date.now() < deadline && cli.child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
  cli.child.kill('SIGTERM');
  await cli.result;
  const { writeFileSync } = await import('node:fs');
  writeFileSync(logFile, err);
  return err;
}

void t.test('no join secret or token reaches a log', (t) => {
  const text = coordLog.text();
  for (const [name, value] of [['node A token', pki.nodeA.token], ['node B token', pki.nodeB.token], ['join secret', readFileSync(pki.joinSecretFile, 'utf8').trim()]] as const) {
    t.notOk(text.includes(value), `${name} is not in the coordinator's log`);
  }
  t.ok(text.length > 0, 'the coordinator did log');
  t.end();
});

void t.test('figures', (t) => {
  for (const [kind, row] of tally) t.comment(`${kind}: tried ${row.tried}, refused ${row.refused}`);
  t.ok([...tally.values()].every((r) => r.tried === r.refused), 'every attempt that should fail was refused');
  t.end();
});
