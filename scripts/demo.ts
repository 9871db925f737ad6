// `npm run demo`: Stevedore end to end on one machine, on embedded defaults.
// Starts a private Docker engine (as the tests do), builds the training
// stand-in image, runs a coordinator and an agent with four stand-in GPUs as
// real `stevedore` processes, submits examples/train.yaml and follows it to
// the end, then shows what the coordinator and the agent know.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { ControlClient } from '../src/client/control-client.ts';
import { writeFakeNvidiaSmi } from '../test/helpers/fake-gpus.ts';
import { startS3Server } from '../test/helpers/s3-server.ts';
import { startFakeGcpMetadata } from '../test/helpers/fake-gcp-metadata.ts';
import { freePort, waitUntil } from '../test/helpers/cluster.ts';
import { buildTrainerImage, startTestEngine } from './test-env.ts';

const root = path.resolve(import.meta.dirname, '..');
const bin = path.join(root, 'bin', 'stevedore.js');
const say = (text: string): void => {
  process.stdout.write(`\x1b[1m==> ${text}\x1b[0m\n`);
};

function start(args: string[], logFile: string): ChildProcess {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  return child;
}

/** The environment of the demo's CLI commands: the operator certificate made below. */
const cliEnv: NodeJS.ProcessEnv = { ...process.env };

function runCli(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: 'inherit', env: cliEnv });
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

async function main(): Promise<number> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stevedore-demo-'));
  say(`Stevedore demo (work files in ${dir})`);
  const engine = await startTestEngine({ log: (m) => process.stdout.write(`    ${m}\n`) });
  let coordinator: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  const s3 = await startS3Server({ buckets: ['stevedore-demo'] });
  // A stand-in for the GCP metadata server of the first node, so that it can be preempted.
  const gcp = await startFakeGcpMetadata();
  let agentB: ChildProcess | undefined;
  try {
    say('Docker Engine ready on a private socket; building the training stand-in image');
    const image = await buildTrainerImage(engine.dockerHost, (m) => process.stdout.write(`    ${m}\n`));

    say(`S3-compatible server (s3rver) on ${s3.endpoint}, bucket stevedore-demo`);
    say('A development CA, and certificates for the coordinator and the operator (stevedore certs)');
    const pki = path.join(dir, 'pki');
    const certs = async (args: string[]): Promise<void> => {
      if ((await runCli(['certs', ...args])) !== 0) throw new Error(`stevedore certs ${args.join(' ')} failed`);
    };
    await certs(['ca', '--out', path.join(pki, 'ca')]);
    await certs(['coordinator', '--ca', path.join(pki, 'ca'), '--host', 'localhost,127.0.0.1', '--out', path.join(pki, 'coordinator')]);
    await certs(['operator', 'demo', '--ca', path.join(pki, 'ca'), '--out', path.join(pki, 'operator')]);
    cliEnv.STEVEDORE_TLS_DIR = path.join(pki, 'operator');
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const tls = ['--tls-ca', path.join(pki, 'coordinator', 'ca.pem'), '--tls-cert', path.join(pki, 'coordinator', 'coordinator.pem'), '--tls-key', path.join(pki, 'coordinator', 'coordinator-key.pem'), '--join-secret', path.join(pki, 'ca', 'join-secret')];
    coordinator = start(['coordinator', '--listen', address, '--db', path.join(dir, 'coordinator.db'), '--heartbeat-seconds', '2', '--metrics-listen', '127.0.0.1:0', ...tls], path.join(dir, 'coordinator.log'));
    const operatorDir = path.join(pki, 'operator');
    const control = new ControlClient({ address, tls: { ca: path.join(operatorDir, 'ca.pem'), cert: path.join(operatorDir, 'operator.pem'), key: path.join(operatorDir, 'operator-key.pem') } });
    await waitUntil(async () => control.listNodes().then(() => true, () => false), 20000, () => readFileSync(path.join(dir, 'coordinator.log'), 'utf8'));
    say(`Coordinator listening on ${address} with mutual TLS and join tokens (state in ${path.join(dir, 'coordinator.db')})`);

    const startAgent = async (name: string, zone: string, preemption: object): Promise<ChildProcess> => {
      // The node's certificate (its node id) and join token: stevedore certs node.
      const nodeDir = path.join(pki, name);
      await certs(['node', '--ca', path.join(pki, 'ca'), '--out', nodeDir]);
      const config = {
        coordinator: { address, tls: { ca: path.join(nodeDir, 'ca.pem'), cert: path.join(nodeDir, 'node.pem'), key: path.join(nodeDir, 'node-key.pem') }, joinTokenFile: path.join(nodeDir, 'join-token') },
        nodeName: name,
        stateDir: path.join(dir, name, 'state'),
        workRoot: path.join(dir, name, 'jobs'),
        socketPath: path.join(dir, `${name}.sock`),
        dockerHost: engine.dockerHost,
        nvidiaSmiPath: writeFakeNvidiaSmi(path.join(dir, name, 'gpu'), 4),
        labels: { zone, spot: 'true', 'instance-type': 'a2-highgpu-4g' },
        s3: { endpoints: { default: s3.config } },
        checkpoints: { partSizeMiB: 5, maxInFlightMiB: 64, rescanSeconds: 1 },
        preemption,
        // Two agents on one host: each serves /metrics on a free port ("metrics listening" in its log).
        metrics: { listen: '127.0.0.1:0' },
      };
      writeFileSync(path.join(dir, `${name}.yaml`), stringify(config));
      const child = start(['agent', '--config', path.join(dir, `${name}.yaml`)], path.join(dir, `${name}.log`));
      await waitUntil(async () => (await control.listNodes()).some((n) => n.hostname === name && n.state === 'online'), 30000, () => readFileSync(path.join(dir, `${name}.log`), 'utf8'));
      const node = (await control.listNodes()).find((n) => n.hostname === name);
      say(`Agent ${name} (${node?.nodeId}) registered: ${node?.inventory?.gpus.length} GPUs (${node?.inventory?.gpus[0]?.name}, stand-in nvidia-smi), zone ${zone}`);
      return child;
    };
    const socket = path.join(dir, 'demo-node-a.sock');
    agent = await startAgent('demo-node-a', 'us-central1-a', { cloud: 'gcp', metadataUrl: gcp.baseUrl });

    say(`Submitting examples/train.yaml (image ${image}, 2 GPUs) and following its logs`);
    const submit = runCli(['submit', path.join(root, 'examples', 'train.yaml'), '--follow', '--wait', '--coordinator', address]);
    await waitUntil(async () => (await control.listJobs()).length > 0, 20000, () => 'the job was not submitted');
    const jobId = (await control.listJobs())[0]?.jobId ?? '';
    await waitUntil(async () => (await control.listCheckpoints(jobId)).length >= 2, 60000, () => 'no checkpoint committed');
    agentB = await startAgent('demo-node-b', 'us-central1-b', { cloud: 'none' });
    const noticeAt = Date.now();
    say('Simulating a Spot preemption of demo-node-a: its metadata server now says instance/preempted = TRUE (30 s to power-off)');
    gcp.setPreempted(true);
    const code = await submit;

    const history = await control.getJob(jobId);
    const [first, second] = history.attempts;
    const stepOf = (n: number): string => (n >= 0 ? String(n) : '?');
    say('Timeline');
    process.stdout.write(
      [
        `  +0.0 s   preemption notice on ${first?.hostname} (${first?.preemptionSource || 'gcp'}), deadline +${(((first?.preemptionDeadlineMs ?? noticeAt) - noticeAt) / 1000).toFixed(1)} s`,
        `  +${(((first?.finalCommittedMs ?? noticeAt) - noticeAt) / 1000).toFixed(1)} s   final checkpoint ${first?.finalCheckpointId} (step ${stepOf(first?.finalStep ?? -1)}) committed, ${((first?.drainMarginMs ?? 0) / 1000).toFixed(1)} s before the deadline`,
        `  +${(((second?.startedMs ?? noticeAt) - noticeAt) / 1000).toFixed(1)} s   resumed on ${second?.hostname} (zone ${second?.zone}) from step ${stepOf(second?.restoredStep ?? -1)}`,
        `  +${(((second?.endedMs ?? noticeAt) - noticeAt) / 1000).toFixed(1)} s   ${history.state}`,
        '',
      ].join('\n'),
    );

    say('stevedore status');
    await runCli(['status', '--coordinator', address]);
    const [job] = await control.listJobs();
    if (job) {
      say(`stevedore status ${job.jobId}`);
      await runCli(['status', job.jobId, '--coordinator', address]);
      say(`stevedore checkpoints ${job.jobId} (each one committed to S3 while the job ran)`);
      await runCli(['checkpoints', job.jobId, '--coordinator', address]);
    }
    say('stevedore status --agent (the agent on this host, over its local socket)');
    await runCli(['status', '--agent', socket]);
    say('What Prometheus reads from each agent (GET /metrics, a few of the metrics)');
    for (const name of ['demo-node-a', 'demo-node-b']) {
      const listening = readFileSync(path.join(dir, `${name}.log`), 'utf8').split('\n').filter((l) => l.includes('"metrics listening"')).at(-1);
      const metricsAddress = listening ? (JSON.parse(listening) as { address?: string }).address : undefined;
      if (!metricsAddress) continue;
      const text = await fetch(`http://${metricsAddress}/metrics`).then((r) => r.text(), () => '');
      const shown = text.split('\n').filter((l) => /^stevedore_(checkpoint_uploaded_bytes_total|checkpoint_commits_total|checkpoint_time_to_commit_seconds_(count|sum)|preemption_notices_total|drain_duration_seconds_count|drain_margin_seconds_(count|sum)|session_connected)[ {]/.test(l));
      process.stdout.write(`  ${name} (http://${metricsAddress}/metrics)\n${shown.map((l) => `    ${l}`).join('\n')}\n`);
    }
    say(code === 0 ? 'Demo finished: the job survived the preemption and ran to completion, no step lost.' : `Demo finished: the job did not succeed (exit ${code}); logs in ${dir}`);
    control.close();
    return code;
  } finally {
    await stop(agent);
    await stop(agentB);
    await stop(coordinator);
    await gcp.close();
    await s3.close();
    await engine.stop();
  }
}

process.exitCode = await main();
