// Original file: proto/stevedore/v1/common.proto

import type { Long } from '@grpc/proto-loader';

export interface LogLine {
  'timeMs'?: (number | string | Long);
  'stream'?: (string);
  'text'?: (string);
}

export interface LogLine__Output {
  'timeMs': (number);
  'stream': (string);
  'text': (string);
}
