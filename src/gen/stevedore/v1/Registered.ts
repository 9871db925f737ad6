// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface Registered {
  'sessionId'?: (string);
  'heartbeatIntervalMs'?: (number);
  'leaseMs'?: (number);
  'ackedEventId'?: (number | string | Long);
}

export interface Registered__Output {
  'sessionId': (string);
  'heartbeatIntervalMs': (number);
  'leaseMs': (number);
  'ackedEventId': (number);
}
