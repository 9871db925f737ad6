// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface Heartbeat {
  'sentAtMs'?: (number | string | Long);
  'runningAttempts'?: (number);
}

export interface Heartbeat__Output {
  'sentAtMs': (number);
  'runningAttempts': (number);
}
