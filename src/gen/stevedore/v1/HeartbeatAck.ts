// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface HeartbeatAck {
  'receivedAtMs'?: (number | string | Long);
}

export interface HeartbeatAck__Output {
  'receivedAtMs': (number);
}
