// One error type for the whole product: a stable code a script can match on,
// a message that says what went wrong and what to do, and the cause.
// The codes are listed in docs/errors.md.

export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'CONFIG_UNREADABLE'
  | 'SPEC_INVALID'
  | 'SPEC_UNREADABLE'
  | 'SPEC_FORBIDDEN'
  | 'HOST_PATH_UNAVAILABLE'
  | 'LOCAL_SOCKET_UNUSABLE'
  | 'MOUNT_OUTSIDE_JOB_DIR'
  | 'GPUS_UNAVAILABLE'
  | 'GPUS_UNSATISFIABLE'
  | 'GPU_INVENTORY_FAILED'
  | 'IMAGE_NOT_FOUND'
  | 'IMAGE_PULL_FAILED'
  | 'IMAGE_PULL_STALLED'
  | 'CONTAINER_CREATE_FAILED'
  | 'CONTAINER_START_FAILED'
  | 'CONTAINER_VANISHED'
  | 'ENGINE_UNREACHABLE'
  | 'STATE_DIR_UNWRITABLE'
  | 'JOURNAL_CORRUPT'
  | 'NODE_ID_INVALID'
  | 'SESSION_PROTOCOL'
  | 'SESSION_REJECTED'
  | 'NODE_DRAINING'
  | 'NODE_NOT_FOUND'
  | 'NODE_NOT_CONNECTED'
  | 'JOB_NOT_FOUND'
  | 'JOB_NOT_CANCELLABLE'
  | 'ATTEMPT_UNKNOWN'
  | 'ILLEGAL_TRANSITION'
  | 'COORDINATOR_UNREACHABLE'
  | 'AGENT_UNREACHABLE'
  | 'CHECKPOINT_CORRUPT'
  | 'CHECKPOINT_NOT_FOUND'
  | 'CHECKPOINT_RESTORE_FAILED'
  | 'CHECKPOINT_DIR_UNUSABLE'
  | 'OBJECT_EXISTS'
  | 'OBJECT_NOT_FOUND'
  | 'OBJECT_STORE_ACCESS_DENIED'
  | 'OBJECT_STORE_UNREACHABLE'
  | 'OBJECT_STORE_FAILED'
  | 'UPLOAD_MISMATCH'
  | 'INPUT_UNAVAILABLE'
  | 'INPUT_INVALID'
  | 'PREEMPTION_ACK_FAILED'
  | 'INTERNAL';

export class StevedoreError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StevedoreError';
    this.code = code;
  }

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

export function isStevedoreError(err: unknown, code?: ErrorCode): err is StevedoreError {
  return err instanceof StevedoreError && (code === undefined || err.code === code);
}

/** The message of any thrown value, for logs and error replies. */
export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Wraps an unknown failure so that it carries a code; a StevedoreError passes through. */
export function asStevedoreError(err: unknown, code: ErrorCode, context: string): StevedoreError {
  if (err instanceof StevedoreError) return err;
  return new StevedoreError(code, `${context}: ${messageOf(err)}`, { cause: err });
}
