// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface CheckpointRestored {
  'checkpointId'?: (string);
  'step'?: (number | string | Long);
  'bytes'?: (number | string | Long);
  'durationMs'?: (number | string | Long);
  'skipped'?: (string)[];
}

export interface CheckpointRestored__Output {
  'checkpointId': (string);
  'step': (number);
  'bytes': (number);
  'durationMs': (number);
  'skipped': (string)[];
}
