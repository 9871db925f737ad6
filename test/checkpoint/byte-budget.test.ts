import t from 'tap';
import { setImmediate as tick } from 'node:timers/promises';
import { ByteBudget } from '../../src/checkpoint/byte-budget.ts';
import { throwsCode } from '../helpers/assert.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

void t.test('grants while the bytes fit and makes later requests wait for a release', async (t) => {
  const budget = new ByteBudget(100);
  t.equal(budget.limit, 100);
  const a = await budget.acquire(60);
  const b = await budget.acquire(40);
  t.equal(budget.inUse, 100);
  let granted = false;
  const pending = budget.acquire(30).then((release) => {
    granted = true;
    return release;
  });
  await tick();
  t.notOk(granted, 'a request over the limit waits');
  a();
  const c = await pending;
  t.ok(granted);
  t.equal(budget.inUse, 70);
  b();
  c();
  t.equal(budget.inUse, 0);
});

void t.test('release is idempotent', async (t) => {
  const budget = new ByteBudget(10);
  const release = await budget.acquire(10);
  release();
  release();
  t.equal(budget.inUse, 0);
  const again = await budget.acquire(10);
  t.equal(budget.inUse, 10, 'a second release of the first grant did not free the second');
  release();
  t.equal(budget.inUse, 10);
  again();
});

void t.test('waiters are served in arrival order: a large request is not starved by small ones', async (t) => {
  const budget = new ByteBudget(100);
  const first = await budget.acquire(90);
  const order: string[] = [];
  const big = budget.acquire(80).then((r) => {
    order.push('big');
    return r;
  });
  const small = budget.acquire(5).then((r) => {
    order.push('small');
    return r;
  });
  await tick();
  t.same(order, [], 'the small request does not overtake the waiting large one even though it would fit');
  first();
  const releaseBig = await big;
  const releaseSmall = await small;
  t.same(order, ['big', 'small']);
  t.equal(budget.inUse, 85);
  releaseBig();
  releaseSmall();
});

void t.test('a request larger than the limit is granted alone', async (t) => {
  const budget = new ByteBudget(10);
  const held = await budget.acquire(4);
  let granted = false;
  const huge = budget.acquire(25).then((r) => {
    granted = true;
    return r;
  });
  await tick();
  t.notOk(granted, 'waits while anything else is held');
  held();
  const release = await huge;
  t.equal(budget.inUse, 25);
  let next = false;
  const after = budget.acquire(1).then((r) => {
    next = true;
    return r;
  });
  await tick();
  t.notOk(next, 'nothing else is granted beside it');
  release();
  (await after)();
  t.equal(budget.inUse, 0);
});

void t.test('an aborted wait rejects, takes nothing and unblocks the requests behind it', async (t) => {
  const budget = new ByteBudget(100);
  const held = await budget.acquire(50);
  const controller = new AbortController();
  const blocked = budget.acquire(80, controller.signal);
  const behind = budget.acquire(40);
  controller.abort(new Error('job stopped'));
  await t.rejects(blocked, { message: 'job stopped' });
  const release = await behind;
  t.equal(budget.inUse, 90);
  release();
  held();
  await t.rejects(budget.acquire(1, AbortSignal.abort(new Error('already'))), { message: 'already' });
  t.equal(budget.inUse, 0);
});

void t.test('never more than the limit in use under many concurrent holders', async (t) => {
  const budget = new ByteBudget(1000);
  let peak = 0;
  const work = Array.from({ length: 200 }, async (_, i) => {
    const bytes = 50 + ((i * 37) % 300);
    const release = await budget.acquire(bytes);
    peak = Math.max(peak, budget.inUse);
    await new Promise((r) => setTimeout(r, i % 3));
    release();
  });
  await Promise.all(work);
  t.ok(peak <= 1000, `peak ${peak} within the limit`);
  t.ok(peak > 500, 'the budget was actually shared by several holders');
  t.equal(budget.inUse, 0);
});

void t.test('invalid limits and requests are refused', async (t) => {
  throwsCode(t, () => new ByteBudget(0), 'CONFIG_INVALID', /positive whole number/);
  throwsCode(t, () => new ByteBudget(1.5), 'CONFIG_INVALID');
  const budget = new ByteBudget(10);
  await t.rejects(budget.acquire(-1), { code: 'INTERNAL' });
  const none = await budget.acquire(0);
  t.equal(budget.inUse, 0);
  none();
});

void t.test('part buffers are reused while the budget is busy and dropped once it has been idle a while', async (t) => {
  const clock = new FakeClock();
  const budget = new ByteBudget(100, { clock, keepIdleMs: 1000 });
  const keepBusy = await budget.acquire(10);
  const a = await budget.acquireBuffer(30);
  t.equal(a.buffer.length, 30);
  t.equal(budget.inUse, 40);
  a.buffer.fill(7);
  a.release();
  a.release();
  t.equal(budget.inUse, 10, 'the bytes are given back once');
  t.equal(budget.pooledBytes, 30, 'the buffer is kept for the next part');
  const b = await budget.acquireBuffer(30);
  t.equal(b.buffer, a.buffer, 'the same memory serves the next part of that length');
  t.equal(budget.pooledBytes, 0);
  const c = await budget.acquireBuffer(20);
  t.not(c.buffer, b.buffer, 'a part of another length gets its own buffer');
  b.release();
  c.release();
  t.equal(budget.pooledBytes, 50);
  keepBusy();
  t.equal(budget.inUse, 0);
  t.equal(budget.pooledBytes, 50, 'kept through a moment with nothing in use');
  clock.advance(900);
  const d = await budget.acquireBuffer(30);
  t.equal(d.buffer, b.buffer, 'a part that comes within the idle delay reuses a kept buffer');
  t.equal(clock.pendingTimers(), 0, 'and stops the countdown');
  d.release();
  clock.advance(999);
  t.equal(budget.pooledBytes, 50, 'the countdown starts again at the last release');
  clock.advance(1);
  t.equal(budget.pooledBytes, 0, 'nothing is kept once nothing has been in use for the idle delay');
  const e = await budget.acquireBuffer(30);
  t.not(e.buffer, b.buffer, 'a dropped buffer is never handed out again');
  e.release();
});

void t.test('in-use and kept buffers together never exceed the limit', async (t) => {
  const budget = new ByteBudget(100);
  const keepBusy = await budget.acquire(10);
  const parts = await Promise.all([budget.acquireBuffer(40), budget.acquireBuffer(40)]);
  for (const p of parts) p.release();
  t.equal(budget.pooledBytes, 80);
  const other = await budget.acquireBuffer(50);
  t.ok(budget.inUse + budget.pooledBytes <= budget.limit, `kept buffers of another length make room (${budget.inUse} in use, ${budget.pooledBytes} kept)`);
  other.release();
  t.ok(budget.inUse + budget.pooledBytes <= budget.limit);
  const big = budget.acquireBuffer(200);
  keepBusy();
  const granted = await big;
  t.equal(granted.buffer.length, 200, 'a request over the limit still gets its buffer, alone');
  t.equal(budget.pooledBytes, 0);
  granted.release();
  t.equal(budget.pooledBytes, 0, 'a buffer over the limit is not kept');
  t.equal(budget.inUse, 0);
});
