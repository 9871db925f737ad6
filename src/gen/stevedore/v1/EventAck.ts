// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface EventAck {
  'upToEventId'?: (number | string | Long);
}

export interface EventAck__Output {
  'upToEventId': (number);
}
