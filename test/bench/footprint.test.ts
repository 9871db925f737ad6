// The smoke version of the footprint benchmark: a short idle window and a small upload; sane figures (never speed).
import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { cpuSeconds, memoryBreakdown, rssBytes } from '../../bench/footprint-proc.ts';
import { agentEnvironment, agentNodeFlags, footprint } from '../../bench/footprint.ts';

void t.test('/proc readings of this process', (t) => {
  t.ok((rssBytes(process.pid) ?? 0) > 10e6, 'resident memory above 10 MB');
  t.ok((cpuSeconds(process.pid) ?? -1) > 0, 'some CPU used');
  t.equal(rssBytes(2 ** 22 + 12345), undefined, 'no such process');
  const parts = memoryBreakdown(process.pid);
  t.ok(parts && parts.anonymous > 0 && parts.fileBacked > 0 && parts.anonymous + parts.fileBacked === parts.rss, 'resident memory split into anonymous and file-backed');
  t.equal(memoryBreakdown(2 ** 22 + 12345), undefined);
  t.end();
});

void t.test("the agent is measured with its unit's node flags", (t) => {
  const unit = readFileSync(path.resolve(import.meta.dirname, '../../systemd/stevedore-agent.service'), 'utf8');
  const flags = agentNodeFlags(unit);
  t.ok(flags.length > 0 && flags.every((f) => f.startsWith('--')), flags.join(' '));
  t.same(agentNodeFlags('[Service]\nExecStart=/usr/bin/node --a=1 --b /opt/x/bin/stevedore.js agent --config c\n'), ['--a=1', '--b'], 'the words between node and the entry point');
  t.same(agentNodeFlags('[Service]\nExecStart=/usr/bin/node /opt/x/bin/stevedore.js agent\n'), []);
  t.end();
});

void t.test("the agent is measured with its unit's environment", (t) => {
  const unit = readFileSync(path.resolve(import.meta.dirname, '../../systemd/stevedore-agent.service'), 'utf8');
  t.match(agentEnvironment(unit), { GLIBC_TUNABLES: /^glibc\.malloc\.mmap_threshold=\d+$/ }, 'the allocator setting of the unit');
  t.same(agentEnvironment('[Service]\n# Environment=NOT=this\nEnvironment=A=1 B="two words"\nEnvironment=C=x=y\nExecStart=/usr/bin/node x\n'), { A: '1', B: 'two words', C: 'x=y' }, 'several lines, several words, quotes, = in values; comments ignored');
  t.same(agentEnvironment('[Service]\nExecStart=/usr/bin/node x\n'), {});
  t.end();
});

void t.test("the agent's memory and CPU, idle and while uploading, with rclone beside it", async (t) => {
  const dir = t.testdir({});
  const result = await footprint({ smoke: true, workDir: path.join(dir, 'work'), plotDir: path.join(dir, 'bench'), log: (line) => t.comment(line) });
  const ours = new Map((result.cases[0]?.subjects[0]?.figures ?? []).map((f) => [f.name, f]));
  const idle = ours.get('RSS idle, 2 jobs running');
  t.ok(idle && idle.median > 20 && idle.runs >= 10, `idle RSS sampled (${idle?.median} MB over ${idle?.runs} samples)`);
  t.ok((ours.get('peak RSS while uploading 64 MiB')?.median ?? 0) >= (idle?.min ?? Infinity), 'the peak while uploading is at least the idle floor');
  t.ok((ours.get('CPU idle, 2 jobs running')?.median ?? -1) >= 0);
  t.ok((ours.get('CPU seconds per GiB uploaded')?.median ?? 0) > 0);
  t.equal(result.cases[0]?.targets.length, 2);
});
