import t from 'tap';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ControlClient } from '../../../src/client/control-client.ts';
import { runCli, startCli } from '../../client/run-cli.ts';
import { eventually } from '../../coordinator/fake-agent.ts';

void t.test('stevedore coordinator prints its address, serves, and stops cleanly on SIGTERM', async (t) => {
  const db = path.join(t.testdir(), 'var', 'coordinator.db');
  const cli = startCli(['coordinator', '--insecure', '--listen', '127.0.0.1:0', '--db', db, '--lease-seconds', '10', '--heartbeat-seconds', '2']);
  t.teardown(() => { if (cli.child.exitCode === null) cli.child.kill('SIGKILL'); });
  const line = await eventually(() => /listening on (127\.0\.0\.1:\d+)/.exec(cli.stdout()) ?? undefined, 15_000);
  const address = line[1] ?? '';
  const client = new ControlClient({ address });
  t.same(await client.listNodes(), []);
  client.close();
  t.ok(existsSync(db), 'the database was created with its directory');
  cli.child.kill('SIGTERM');
  const r = await cli.result;
  t.equal(r.code, 0);
  const logs = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string });
  t.match(logs.map((l) => l.msg).filter((m) => !m.startsWith('plaintext session') && m !== 'metrics listening'), ['coordinator started', 'shutting down', 'coordinator stopped']);
  t.ok(logs.some((l) => /^plaintext session without TLS \(--insecure\)/.test(l.msg)), '--insecure: a warning at start');
});

void t.test('bad options are refused with the option named', async (t) => {
  const r = await runCli(['coordinator', '--insecure', '--listen', 'nowhere', '--db', path.join(t.testdir(), 'c.db')]);
  t.equal(r.code, 1);
  t.match(r.stderr, 'listen address "nowhere" is not host:port');
  const hb = await runCli(['coordinator', '--insecure', '--listen', '127.0.0.1:0', '--db', path.join(t.testdir(), 'd.db'), '--lease-seconds', '5', '--heartbeat-seconds', '5']);
  t.equal(hb.code, 1);
  t.match(hb.stderr, 'must be shorter than the lease');
});
