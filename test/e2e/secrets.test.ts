// The scan for secrets (scripts/check-secrets.ts) covers more than log lines:
// a cluster writes what it stored (the coordinator's events, log lines and
// messages; each agent's journal) and the CLI's error output as text into the
// run's log directory. This test proves those files are there, hold what the
// test caused, and are scanned.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LABELS } from '../../src/agent/attempt-runner.ts';
import { DockerEngine } from '../../src/engine/docker-engine.ts';
import { validateJobSpec } from '../../src/spec/job-spec.ts';
import { checkSecrets } from '../../scripts/check-secrets.ts';
import { cliStderrFile, runCli } from '../client/run-cli.ts';
import { Cluster } from '../helpers/cluster.ts';
import { testEngineEnv } from '../helpers/engine.ts';
import { testLogDir } from '../helpers/test-log.ts';

const env = testEngineEnv();
const engine = new DockerEngine({ dockerHost: env.dockerHost });

void t.test('stored events, agent journals and CLI errors are written as text where the scan looks, and scanned', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'stv-secrets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cluster = await Cluster.start(dir, { dockerHost: env.dockerHost });
  let closed = false;
  t.teardown(async () => {
    if (!closed) await cluster.close();
  });
  await cluster.addAgent('scanned', 1);
  const job = await cluster.client.submitJob(validateJobSpec({
    name: 'scanned-job',
    image: env.trainerImage,
    command: ['/stevedore/train.sh'],
    env: { TRAIN_STEPS: '2', TRAIN_STEP_SECONDS: '0.1' },
    pullPolicy: 'never',
  }));
  await cluster.waitForJob(job.jobId, ['succeeded'], 60000);
  const cli = await runCli(['status', 'no-such-job'], cluster.cliEnv);
  t.not(cli.code, 0, `the CLI fails for an unknown job: ${cli.stderr.trim()}`);

  const nodeId = (await cluster.client.listNodes()).find((n) => n.hostname === 'scanned')?.nodeId ?? '';
  await cluster.close();
  closed = true;
  for (const c of await engine.list({ [LABELS.nodeId]: nodeId })) await engine.remove(c.id);

  const events = cluster.dumps.find((f) => /-events-[\d-]+\.txt$/.test(f)) ?? '';
  const journal = cluster.dumps.find((f) => f.endsWith('-journal.txt')) ?? '';
  t.ok(existsSync(events), `the coordinator's stored events: ${events}`);
  t.ok(existsSync(journal), `the agent's journal: ${journal}`);
  const eventText = readFileSync(events, 'utf8');
  t.match(eventText, new RegExp(`^event ${nodeId} \\d+ \\d+ ${job.jobId}/1 exited `, 'm'), 'the job\'s exit event is in the dump');
  t.match(eventText, new RegExp(`^log ${job.jobId}/1 .*step 2/2`, 'm'), 'so are its log lines');
  t.match(eventText, new RegExp(`^job ${job.jobId} succeeded`, 'm'), 'and its state');
  t.match(readFileSync(journal, 'utf8'), /== ack\n\{"ackedEventId":\d+/, 'the journal as its files hold it');
  t.match(readFileSync(cliStderrFile(), 'utf8'), /--- stevedore status \(exit [1-9]\)\n[^]*?stevedore: no job no-such-job/, 'the CLI\'s error is kept');

  for (const file of [events, journal, cliStderrFile()]) t.equal(path.dirname(file), testLogDir(), `${path.basename(file)} is in the directory the scan reads`);
  const out: string[] = [];
  t.equal(checkSecrets([testLogDir()], (l) => out.push(l)), 0, out.join('\n'));
  const scanned = Number(/no canary secret in (\d+) log file/.exec(out.join('\n'))?.[1] ?? 0);
  t.ok(scanned >= 3, `the scan read them: ${out.join(' ')}`);
});
