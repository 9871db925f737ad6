// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface Drain {
  'reason'?: (string);
  'deadlineMs'?: (number | string | Long);
}

export interface Drain__Output {
  'reason': (string);
  'deadlineMs': (number);
}
