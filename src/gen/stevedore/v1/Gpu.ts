// Original file: proto/stevedore/v1/common.proto

import type { Long } from '@grpc/proto-loader';

export interface Gpu {
  'index'?: (number);
  'uuid'?: (string);
  'name'?: (string);
  'memoryMib'?: (number | string | Long);
  'driverVersion'?: (string);
  'pciBusId'?: (string);
}

export interface Gpu__Output {
  'index': (number);
  'uuid': (string);
  'name': (string);
  'memoryMib': (number);
  'driverVersion': (string);
  'pciBusId': (string);
}
