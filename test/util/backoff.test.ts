import t from 'tap';
import { status } from '@grpc/grpc-js';
import { Backoff, isRetryable } from '../../src/util/backoff.ts';

void t.test('delays grow exponentially up to the cap, with full jitter', (t) => {
  const top = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 1);
  t.same([top.next(), top.next(), top.next(), top.next(), top.next(), top.next()], [100, 200, 400, 800, 1000, 1000]);
  top.reset();
  t.equal(top.next(), 100);
  const bottom = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0);
  t.equal(bottom.next(), 0);
  const mid = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0.5);
  mid.next();
  t.equal(mid.next(), 100);
  t.end();
});

void t.test('only transient status codes are retried', (t) => {
  t.ok(isRetryable(status.UNAVAILABLE));
  t.ok(isRetryable(status.DEADLINE_EXCEEDED));
  t.notOk(isRetryable(status.INVALID_ARGUMENT));
  t.notOk(isRetryable(status.UNAUTHENTICATED));
  t.notOk(isRetryable(status.PERMISSION_DENIED));
  t.notOk(isRetryable(undefined));
  t.end();
});
