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

function runCli(args: string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { stdio: 'inherit' });
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
  try {
    say('Docker Engine ready on a private socket; building the training stand-in image');
    const image = await buildTrainerImage(engine.dockerHost, (m) => process.stdout.write(`    ${m}\n`));

    say(`S3-compatible server (s3rver) on ${s3.endpoint}, bucket stevedore-demo`);
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    coordinator = start(['coordinator', '--listen', address, '--db', path.join(dir, 'coordinator.db'), '--heartbeat-seconds', '2'], path.join(dir, 'coordinator.log'));
    const control = new ControlClient({ address });
    await waitUntil(async () => control.listNodes().then(() => true, () => false), 20000, () => readFileSync(path.join(dir, 'coordinator.log'), 'utf8'));
    say(`Coordinator listening on ${address} (state in ${path.join(dir, 'coordinator.db')})`);

    const socket = path.join(dir, 'agent.sock');
    const config = {
      coordinator: { address },
      nodeName: 'demo-node',
      stateDir: path.join(dir, 'agent-state'),
      workRoot: path.join(dir, 'jobs'),
      socketPath: socket,
      dockerHost: engine.dockerHost,
      nvidiaSmiPath: writeFakeNvidiaSmi(path.join(dir, 'gpu'), 4),
      labels: { zone: 'demo-zone-a', spot: 'true', 'instance-type': 'p4d.24xlarge' },
      s3: { endpoints: { default: s3.config } },
      checkpoints: { partSizeMiB: 5, maxInFlightMiB: 64, rescanSeconds: 1 },
      preemption: { cloud: 'none' },
    };
    writeFileSync(path.join(dir, 'agent.yaml'), stringify(config));
    agent = start(['agent', '--config', path.join(dir, 'agent.yaml')], path.join(dir, 'agent.log'));
    await waitUntil(async () => (await control.listNodes()).some((n) => n.state === 'online'), 30000, () => readFileSync(path.join(dir, 'agent.log'), 'utf8'));
    const node = (await control.listNodes())[0];
    say(`Agent ${node?.nodeId} registered: ${node?.inventory?.gpus.length} GPUs (${node?.inventory?.gpus[0]?.name}, stand-in nvidia-smi), labels ${Object.entries(node?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')}`);

    say(`Submitting examples/train.yaml (image ${image}, 2 GPUs) and following its logs`);
    const code = await runCli(['submit', path.join(root, 'examples', 'train.yaml'), '--follow', '--wait', '--coordinator', address]);

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
    say(code === 0 ? 'Demo finished: the job ran to completion on its GPUs.' : `Demo finished: the job did not succeed (exit ${code}); logs in ${dir}`);
    control.close();
    return code;
  } finally {
    await stop(agent);
    await stop(coordinator);
    await s3.close();
    await engine.stop();
  }
}

process.exitCode = await main();
