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

void t.test('a GPU that is not healthy is not given to a new attempt; the refusal names it and why', (t) => {
  const sick = new Map([['GPU-b', '3 uncorrected ECC errors since the driver loaded']]);
  const alloc = new GpuAllocator(['GPU-a', 'GPU-b', 'GPU-c'], (uuid) => sick.get(uuid));
  t.same(alloc.allocate('job-1#1', 2), ['GPU-a', 'GPU-c'], 'the healthy ones, skipping the sick one');
  alloc.release('job-1#1');
  t.throws(() => alloc.allocate('job-2#1', 3), {
    code: 'GPUS_UNAVAILABLE',
    message: 'job asks for 3 GPUs; 3 of 3 are free on this node but only 2 healthy (GPU-b: 3 uncorrected ECC errors since the driver loaded)',
  });
  sick.clear();
  t.same(alloc.allocate('job-2#1', 3), ['GPU-a', 'GPU-b', 'GPU-c'], 'healthy again: used again');
  t.end();
});
