// Original file: proto/stevedore/v1/common.proto

import type { Long } from '@grpc/proto-loader';

export interface Ulimit {
  'name'?: (string);
  'soft'?: (number | string | Long);
  'hard'?: (number | string | Long);
}

export interface Ulimit__Output {
  'name': (string);
  'soft': (number);
  'hard': (number);
}
