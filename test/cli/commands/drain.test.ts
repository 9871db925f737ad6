import t from 'tap';
import { runCli, startTestCoordinator } from '../../client/run-cli.ts';
import { FakeAgent } from '../../coordinator/fake-agent.ts';

void t.test('drain tells the node to drain with a deadline and prints the node', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const agent = new FakeAgent(address, 'node-a');
  t.teardown(() => agent.kill());
  await agent.register({ gpus: 2 });

  const before = Date.now();
  const r = await runCli(['drain', 'node-a', '--deadline-seconds', '60', '--reason', 'kernel upgrade'], env);
  const after = Date.now();
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, 'node-a: draining; it takes no new job, and its running jobs get 60 s to make a final checkpoint durable, then stop and resume on other nodes\n');
  const drain = (await agent.next((m) => m.command?.body === 'drain')).command?.drain;
  t.equal(drain?.reason, 'kernel upgrade');
  t.ok(Number(drain?.deadlineMs) >= before + 60_000 && Number(drain?.deadlineMs) <= after + 60_000, 'deadline 60 s from now');

  const json = await runCli(['drain', 'node-a', '--json'], env);
  t.equal(json.code, 0, json.stderr);
  t.match(JSON.parse(json.stdout), { nodeId: 'node-a', state: 'draining', labels: { zone: 'test-a' } });
  const second = (await agent.next((m) => m.command?.body === 'drain')).command?.drain;
  t.equal(second?.reason, 'drained by the operator');
  t.ok(Number(second?.deadlineMs) >= after + 120_000 - 1000, 'default deadline: 120 s');
});

void t.test('drain: an unknown node, a node that is not connected, a bad deadline', async (t) => {
  const { address, env } = await startTestCoordinator(t);
  const unknown = await runCli(['drain', 'nope'], env);
  t.equal(unknown.code, 1);
  t.equal(unknown.stderr, 'stevedore: no node nope; `stevedore status` lists nodes [NODE_NOT_FOUND]\n');

  const agent = new FakeAgent(address, 'node-a');
  await agent.register();
  await agent.close();
  const offline = await runCli(['drain', 'node-a'], env);
  t.equal(offline.code, 1);
  t.match(offline.stderr, /^stevedore: node node-a is not connected \(offline\), so it cannot be told to drain; .* \[NODE_NOT_CONNECTED\]\n$/);

  const bad = await runCli(['drain', 'node-a', '--deadline-seconds', '2m'], env);
  t.not(bad.code, 0);
  t.match(bad.stderr, /--deadline-seconds.*must be a whole number of seconds from 1 to 86400/);
});
