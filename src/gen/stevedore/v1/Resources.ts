// Original file: proto/stevedore/v1/common.proto

import type { Long } from '@grpc/proto-loader';

export interface Resources {
  'gpus'?: (number);
  'cpus'?: (number | string);
  'memoryBytes'?: (number | string | Long);
  'shmBytes'?: (number | string | Long);
}

export interface Resources__Output {
  'gpus': (number);
  'cpus': (number);
  'memoryBytes': (number);
  'shmBytes': (number);
}
