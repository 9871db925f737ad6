// Original file: proto/stevedore/v1/common.proto

import type { Long } from '@grpc/proto-loader';

export interface AttemptProgress {
  'phase'?: (string);
  'doneBytes'?: (number | string | Long);
  'totalBytes'?: (number | string | Long);
  'detail'?: (string);
  'updatedMs'?: (number | string | Long);
  'finished'?: (boolean);
}

export interface AttemptProgress__Output {
  'phase': (string);
  'doneBytes': (number);
  'totalBytes': (number);
  'detail': (string);
  'updatedMs': (number);
  'finished': (boolean);
}
