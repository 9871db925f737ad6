// Original file: proto/stevedore/v1/session.proto

import type { Long } from '@grpc/proto-loader';

export interface PreemptionNotice {
  'noticeId'?: (string);
  'source'?: (string);
  'kind'?: (string);
  'deadlineMs'?: (number | string | Long);
  'receivedMs'?: (number | string | Long);
}

export interface PreemptionNotice__Output {
  'noticeId': (string);
  'source': (string);
  'kind': (string);
  'deadlineMs': (number);
  'receivedMs': (number);
}
