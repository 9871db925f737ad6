// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface DrainReport {
  'noticeId'?: (string);
  'finalCheckpointId'?: (string);
  'finalStep'?: (number | string | Long);
  'finalCheckpointIsNew'?: (boolean);
  'committedMs'?: (number | string | Long);
  'deadlineMs'?: (number | string | Long);
  'marginMs'?: (number | string | Long);
}

export interface DrainReport__Output {
  'noticeId': (string);
  'finalCheckpointId': (string);
  'finalStep': (number);
  'finalCheckpointIsNew': (boolean);
  'committedMs': (number);
  'deadlineMs': (number);
  'marginMs': (number);
}
