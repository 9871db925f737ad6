import t from 'tap';
import { GpuAllocator } from '../../src/agent/gpu-allocator.ts';
import { throwsCode } from '../helpers/assert.ts';

void t.test('never hands one GPU to two attempts', (t) => {
  const gpus = new GpuAllocator(['GPU-0', 'GPU-1', 'GPU-2', 'GPU-3']);
  const a = gpus.allocate('a.1', 2);
  const b = gpus.allocate('b.1', 2);
  t.same(a, ['GPU-0', 'GPU-1']);
  t.same(b, ['GPU-2', 'GPU-3']);
  throwsCode(t, () => gpus.allocate('c.1', 1), 'GPUS_UNAVAILABLE', /asks for 1 GPUs; 0 of 4 are free/);
  gpus.release('a.1');
  t.same(gpus.allocate('c.1', 1), ['GPU-0']);
  t.equal(gpus.ownerOf('GPU-0'), 'c.1');
  t.end();
});

void t.test('more GPUs than the node has is a different, permanent refusal', (t) => {
  const gpus = new GpuAllocator(['GPU-0']);
  throwsCode(t, () => gpus.allocate('a.1', 2), 'GPUS_UNSATISFIABLE', /this node has 1/);
  t.same(gpus.allocate('cpu.1', 0), []);
  t.same(gpus.free(), ['GPU-0']);
  t.end();
});

void t.test('adopting after a restart restores ownership and detects conflicts', (t) => {
  const gpus = new GpuAllocator(['GPU-0', 'GPU-1']);
  gpus.adopt('a.1', ['GPU-1']);
  t.same(gpus.free(), ['GPU-0']);
  throwsCode(t, () => gpus.adopt('b.1', ['GPU-1']), 'GPUS_UNAVAILABLE');
  t.end();
});
