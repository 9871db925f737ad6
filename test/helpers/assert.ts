// Assertions on Stevedore's errors: the stable code, and a message that says what to do.
import type { Test } from 'tap';
import { isStevedoreError, type ErrorCode } from '../../src/util/errors.ts';

function check(t: Test, err: unknown, code: ErrorCode, message: RegExp | undefined, name: string): void {
  if (!isStevedoreError(err)) {
    t.fail(`${name}: expected a StevedoreError ${code}, got ${String(err)}`);
    return;
  }
  t.equal(err.code, code, `${name}: code`);
  if (message) t.match(err.message, message, `${name}: message`);
}

export function throwsCode(t: Test, fn: () => unknown, code: ErrorCode, message?: RegExp, name = 'throws'): void {
  try {
    fn();
  } catch (err) {
    check(t, err, code, message, name);
    return;
  }
  t.fail(`${name}: expected ${code}, nothing was thrown`);
}

export async function rejectsCode(t: Test, promise: Promise<unknown>, code: ErrorCode, message?: RegExp, name = 'rejects'): Promise<void> {
  try {
    await promise;
  } catch (err) {
    check(t, err, code, message, name);
    return;
  }
  t.fail(`${name}: expected ${code}, it resolved`);
}
